/**
 * The CI files of the sharded fuzz campaign parse, and the parts we rely on hold: a shard matrix
 * 1..N of one seed running `deno task fuzz --shard I/N`, each shard uploading JSON, JUnit,
 * artifacts and new corpus entries, a merge job with `fuzz:merge`, a nightly schedule.
 * (npm `yaml` reads the env variables LOG_TOKENS and LOG_STREAM: `deno task test` allows them.)
 */
import { assert, assertEquals, assertStringIncludes } from "@std/assert";
import { parse } from "yaml";
import { z } from "zod";

const ROOT = new URL("../../", import.meta.url);
const read = (p: string) => Deno.readTextFileSync(new URL(p, ROOT));
const TASKS = Object.keys(JSON.parse(read("deno.json")).tasks);

const Step = z.looseObject({
  name: z.string().optional(),
  uses: z.string().optional(),
  run: z.string().optional(),
  if: z.string().optional(),
  with: z.record(z.string(), z.unknown()).optional(),
});
const GithubWorkflow = z.looseObject({
  on: z.looseObject({
    schedule: z.array(z.strictObject({ cron: z.string() })).min(1),
  }),
  env: z.looseObject({ SHARDS: z.string().regex(/^\d+$/) }),
  jobs: z.looseObject({
    shard: z.looseObject({
      strategy: z.looseObject({
        "fail-fast": z.literal(false),
        matrix: z.strictObject({ shard: z.array(z.int().positive()) }),
      }),
      steps: z.array(Step),
    }),
    merge: z.looseObject({
      needs: z.literal("shard"),
      if: z.literal("always()"),
      steps: z.array(Step),
    }),
  }),
});

const GitlabJob = z.looseObject({
  stage: z.string(),
  script: z.array(z.string()).min(1),
  artifacts: z.looseObject({
    when: z.literal("always"),
    paths: z.array(z.string()).min(1),
    reports: z.looseObject({ junit: z.string() }),
  }),
});
const GitlabCi = z.looseObject({
  stages: z.array(z.string()),
  variables: z.looseObject({ SHARDS: z.string().regex(/^\d+$/), FUZZ_SECONDS: z.string() }),
  fuzz: GitlabJob.extend({
    parallel: z.strictObject({
      matrix: z.array(z.strictObject({ SHARD: z.array(z.string().regex(/^\d+$/)) })).length(1),
    }),
    rules: z.array(z.looseObject({ if: z.string() })),
    after_script: z.array(z.string()),
  }),
  "fuzz:merge": GitlabJob.extend({
    needs: z.array(z.strictObject({ job: z.literal("fuzz"), artifacts: z.literal(true) })),
  }),
});

/** Every `deno task NAME` in `text` names a task of deno.json. */
function assertTasksExist(text: string): string[] {
  const used = [...text.matchAll(/deno task ([\w:-]+)/g)].map((m) => m[1]);
  for (const t of used) assert(TASKS.includes(t), `deno task ${t} is not in deno.json`);
  return used;
}

/** The fuzz flags the shard command relies on exist in `deno task fuzz --help`. */
async function assertFuzzFlags(cmd: string): Promise<void> {
  const { HELP } = await import("../../fuzz/cli.ts");
  for (const flag of cmd.match(/--[a-z-]+/g) ?? []) {
    assertStringIncludes(HELP, `  ${flag} `, `deno task fuzz has no ${flag}`);
  }
}

Deno.test("ci: the GitHub Actions fuzz workflow runs shards 1..N of one seed and merges them", async () => {
  const text = read(".github/workflows/fuzz.yml");
  const w = GithubWorkflow.parse(parse(text));
  const n = Number(w.env.SHARDS);
  assert(n >= 2);
  assertEquals(w.jobs.shard.strategy.matrix.shard, Array.from({ length: n }, (_, i) => i + 1));
  const fuzz = w.jobs.shard.steps.find((s) => s.run?.includes("deno task fuzz "))?.run ?? "";
  assert(fuzz !== "", "a step runs deno task fuzz");
  for (
    const part of [
      "--shard ${{ matrix.shard }}/${SHARDS}",
      "--seed ${{ steps.plan.outputs.seed }}",
      "--json out/",
      "--junit out/",
      "--artifacts out/",
    ]
  ) assertStringIncludes(fuzz, part);
  await assertFuzzFlags(fuzz.replace(/\$\{\{[^}]*\}\}/g, "X"));
  const upload = w.jobs.shard.steps.find((s) => s.uses?.startsWith("actions/upload-artifact"));
  assertEquals(upload?.if, "always()", "shards upload even when they found bugs");
  assertEquals(upload?.with?.path, "out/");
  assert(w.jobs.shard.steps.some((s) => s.run?.includes("out/new-corpus")));
  const merge = w.jobs.merge.steps.find((s) => s.run?.includes("deno task fuzz:merge"))?.run ?? "";
  assertStringIncludes(merge, "--json merged.json --junit merged.xml");
  assertEquals([...new Set(assertTasksExist(text))].sort(), ["fuzz", "fuzz:matrix", "fuzz:merge"]);
});

Deno.test("ci: the GitLab CI file runs the same matrix, merge job and nightly budget", async () => {
  const text = read("ci/gitlab-ci.yml");
  const g = GitlabCi.parse(parse(text));
  const n = Number(g.variables.SHARDS);
  assertEquals(
    g.fuzz.parallel.matrix[0].SHARD,
    Array.from({ length: n }, (_, i) => String(i + 1)),
  );
  assertEquals(g.stages, ["fuzz", "merge"]);
  const cmd = g.fuzz.script.find((s) => s.includes("deno task fuzz ")) ?? "";
  assertStringIncludes(cmd, '--shard "${SHARD}/${SHARDS}" --seed "${SEED}"');
  await assertFuzzFlags(cmd.replace(/"\$\{\w+\}[^"]*"/g, "X"));
  assert(g.fuzz.after_script.some((s) => s.includes("out/new-corpus")));
  const nightly = g.fuzz.rules.find((r) => r.if.includes('"schedule"'));
  assertEquals((nightly?.variables as Record<string, string>)?.FUZZ_SECONDS, "3000");
  assert(g["fuzz:merge"].script.some((s) => s.startsWith("deno task fuzz:merge out/shard-*.json")));
  assertEquals([...new Set(assertTasksExist(text))].sort(), ["fuzz", "fuzz:matrix", "fuzz:merge"]);
});
