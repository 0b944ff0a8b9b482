/**
 * `deno task fuzz`: the fuzz campaign runner. See `--help`, `docs/FUZZING.md` and the README.
 * @module
 */

import fc from "fast-check";
import type { FuzzTarget } from "./target.ts";
import { CliError, HELP, parseFuzzArgs } from "./cli.ts";
import { planShard, secondsPerUnit } from "./plan.ts";
import {
  consoleProgress,
  type Executor,
  InProcessExecutor,
  runUnits,
  WorkerExecutor,
} from "./campaign.ts";
import {
  buildReport,
  type CorpusOutcome,
  formatJunit,
  formatSummary,
  targetReports,
} from "./report.ts";
import {
  CORPUS_FORMAT,
  type CorpusEntry,
  CorpusError,
  parseCorpusEntry,
  replayEntry,
  writeCorpusEntry,
} from "./corpus.ts";
import { artifactsDirProblem, writeArtifacts } from "./artifacts.ts";
import { registryProblems, unregisteredTargets } from "./registry.ts";
import { describeOutput, describeValue } from "./describe.ts";
import { messageOf } from "./signature.ts";
import type { UnitResult, UnitSpec } from "./runner.ts";
import { deviceFuzzMain, isDeviceInvocation } from "./device/main.ts";
import { outputPathsProblem } from "./output_paths.ts";
import { probeLoad } from "./load_probe.ts";

/** Where the runner finds its targets and writes its output (tests substitute their own). */
export interface FuzzEnv {
  /** The registered targets. */
  targets: readonly FuzzTarget<unknown>[];
  /** URL of the module exporting `TARGETS` (loaded by workers). */
  registryUrl: string;
  /** Directory scanned for unregistered targets (undefined: no scan). */
  targetsDir?: URL;
  /** Writes to stdout. */
  out: (s: string) => void;
  /** Writes to stderr. */
  err: (s: string) => void;
  /** Whether stdout is a terminal (live progress line). */
  isTty: boolean;
  /** Default for `--workers`. */
  cores: number;
  /**
   * Why the campaign's inputs are incomplete (e.g. the real ring fixtures did not load): a
   * campaign then refuses to start with exit 2 (`--help`, `--list`, `--replay` still work), since
   * the same seed would silently run a different campaign.
   */
  setupError?: string | null;
}

function replay(file: string, env: FuzzEnv): number {
  let text: string;
  let isDir = false;
  try {
    isDir = Deno.statSync(file).isDirectory;
    text = isDir ? "" : Deno.readTextFileSync(file);
  } catch (e) {
    env.err(
      `fuzz: --replay: cannot read ${file} (${messageOf(e).split("\n")[0]}). ` +
        "Fix: pass a corpus file or directory, e.g. fuzz/corpus/<target>/<hash>.json\n",
    );
    return 2;
  }
  if (isDir) return replayDir(file, env);
  return replayParsed(file, parseCorpusEntry(file, text), env);
}

/** Replays every `.json` file under `dir` (sorted); the worst exit status. */
function replayDir(dir: string, env: FuzzEnv): number {
  const files: string[] = [];
  const walk = (d: string) => {
    for (const e of Deno.readDirSync(d)) {
      const p = `${d.replace(/\/+$/, "")}/${e.name}`;
      if (e.isDirectory) walk(p);
      else if (e.name.endsWith(".json")) files.push(p);
    }
  };
  walk(dir);
  files.sort();
  if (files.length === 0) {
    env.err(`fuzz: --replay: ${dir} holds no .json files. Fix: pass a corpus directory\n`);
    return 2;
  }
  let worst = 0;
  for (const f of files) worst = Math.max(worst, replay(f, env));
  env.out(`fuzz: replayed ${files.length} file(s) from ${dir}\n`);
  return worst;
}

/** Replays fast-check's `seed` + `path` of one target (`--replay-seed/--replay-path`). */
function replaySeedPath(targetName: string, seed: number, path: string, env: FuzzEnv): number {
  const entry: CorpusEntry = {
    format: CORPUS_FORMAT,
    target: targetName,
    seed,
    path,
    inputText: "(regenerated from seed and path)",
    error: {
      oracle: "-",
      code: "-",
      signature: "(none recorded)",
      hash: "0".repeat(16),
      message: "",
    },
    fastCheckVersion: fc.__version,
    date: new Date().toISOString(),
  };
  return replayParsed(`--replay-seed ${seed} --replay-path ${path}`, entry, env);
}

function replayParsed(file: string, entry: CorpusEntry, env: FuzzEnv): number {
  const target = env.targets.find((t) => t.name === entry.target);
  if (target === undefined) {
    env.err(
      `${file}: field "target" names "${entry.target}", which is not registered. ` +
        `Fix: register it in fuzz/targets/mod.ts or delete the file (see --list)\n`,
    );
    return 2;
  }
  const r = replayEntry(target, entry, file);
  const shown = r.input === undefined ? entry.inputText : describeValue(r.input);
  let built: string[] = [];
  if (r.input !== undefined && target.describe !== undefined) {
    let text: string;
    try {
      text = describeOutput(target.describe(r.input));
    } catch (e) {
      text = `(describe threw, the state is not shown: ${messageOf(e)})`;
    }
    built = [
      `  built state (${target.name}.describe):`,
      ...text.split("\n").map((l) => `    ${l}`),
    ];
  }
  env.out(
    [
      `replay ${file}`,
      `  target:    ${entry.target} (${target.description})`,
      `  recorded:  ${entry.error.signature}: ${entry.error.message.split("\n")[0]}`,
      `  found:     ${entry.date} with fast-check ${entry.fastCheckVersion}, seed ${entry.seed}, path ${entry.path}`,
      `  replayed:  ${r.mode}`,
      `  input:`,
      shown.split("\n").map((l) => `    ${l}`).join("\n"),
      ...built,
      r.fixed
        ? `FIXED: the input passes every oracle now (the corpus entry is a passing regression test)`
        : `STILL FAILS: ${r.signature}${
          r.signature === entry.error.signature ? "" : " (a different signature than recorded)"
        }\n  ${messageOf(r.error)}`,
      "",
    ].join("\n"),
  );
  return r.fixed ? 0 : 1;
}

/** Writes each distinct failure of `results` to the corpus once; where each one went. */
async function saveCounterexamples(
  results: readonly UnitResult[],
  corpus: string,
  env: FuzzEnv,
): Promise<CorpusOutcome> {
  const outcome: CorpusOutcome = new Map();
  for (const r of results) {
    for (const f of r.failures) {
      if (outcome.has(f.signature.hash)) continue;
      try {
        outcome.set(f.signature.hash, await writeCorpusEntry(corpus, f));
      } catch (e) {
        env.err(`fuzz: cannot write the counterexample to ${corpus}: ${messageOf(e)}\n`);
        outcome.set(f.signature.hash, { file: null, isNew: true });
      }
    }
  }
  return outcome;
}

/** The parsed command line. */
type FuzzOptions = ReturnType<typeof parseFuzzArgs>;

/** A finished campaign: its report, the units' results and where each counterexample went. */
interface Campaign {
  report: ReturnType<typeof buildReport>;
  results: Awaited<ReturnType<typeof runUnits>>;
  outcome: CorpusOutcome;
}

/**
 * The commands that run no campaign (`--list`, `--replay`, `--replay-seed`), after the registry
 * check; their exit status, or null when a campaign is asked for.
 */
async function registryAndCommands(o: FuzzOptions, env: FuzzEnv): Promise<number | null> {
  const problems = registryProblems(env.targets);
  if (env.targetsDir !== undefined) {
    problems.push(...await unregisteredTargets(env.targetsDir, env.targets));
  }
  if (problems.length > 0) {
    env.err(
      `fuzz: the target registry is inconsistent; refusing to start:\n  ${problems.join("\n  ")}\n`,
    );
    return 2;
  }
  if (o.list) {
    const w = Math.max(0, ...env.targets.map((t) => t.name.length));
    env.out(
      env.targets.map((t) => `${t.name.padEnd(w)}  ${t.description}\n`).join("") ||
        "(no targets registered in fuzz/targets/mod.ts)\n",
    );
    return 0;
  }
  if (o.replay !== undefined || o.replaySeed !== undefined) {
    try {
      if (o.replaySeed !== undefined) {
        if (!env.targets.some((t) => t.name === o.targets[0])) {
          env.err(`fuzz: --target: unknown target "${o.targets[0]}". Fix: see --list\n`);
          return 2;
        }
        return replaySeedPath(o.targets[0], o.replaySeed, o.replayPath!, env);
      }
      return replay(o.replay!, env);
    } catch (e) {
      if (e instanceof CorpusError) {
        env.err(`fuzz: ${e.message}\n`);
        return 2;
      }
      throw e;
    }
  }
  return null;
}

/** Refuses a campaign that cannot start (setup, output paths, unknown targets): 2, else null. */
function campaignProblem(o: FuzzOptions, env: FuzzEnv): number | null {
  if (env.setupError) {
    env.err(
      `fuzz: refusing to start the campaign: ${env.setupError}. Fix: restore the bundled ` +
        "fixtures (git checkout tests/fixtures) or set VIRTQ_FIXTURES_DIR to a directory " +
        "holding scenarioA.* and scenarioB.*\n",
    );
    return 2;
  }
  const pathProblem = outputPathsProblem([["--json", o.json], ["--junit", o.junit]]) ??
    (o.artifacts === undefined ? null : artifactsDirProblem(o.artifacts));
  if (pathProblem !== null) {
    env.err(`fuzz: ${pathProblem}\n`);
    return 2;
  }
  const known = new Set(env.targets.map((t) => t.name));
  const unknown = o.targets.filter((n) => !known.has(n));
  if (unknown.length > 0) {
    env.err(
      `fuzz: --target: unknown target ${unknown.map((n) => `"${n}"`).join(", ")}. Fix: use one of ${
        [...known].join(", ") || "(none registered)"
      } (see --list)\n`,
    );
    return 2;
  }
  return null;
}

/** Runs the campaign's units and builds its report (counterexamples saved to the corpus). */
async function runCampaign(
  o: FuzzOptions,
  env: FuzzEnv,
): Promise<Campaign> {
  const selected = env.targets.filter((t) => o.targets.length === 0 || o.targets.includes(t.name));
  const seed = o.seed ?? Math.floor(Math.random() * 0x7fff_ffff);
  const planned = planShard(selected.map((t) => t.name), seed, o.shard);
  const parallel = o.workers === 0 ? 1 : Math.min(o.workers, Math.max(1, planned.length));
  const perUnit = o.seconds === undefined
    ? undefined
    : secondsPerUnit(o.seconds, planned.length, parallel);
  const units: UnitSpec[] = planned.map((p) => ({
    ...p,
    seconds: perUnit,
    runs: o.runs,
  }));
  const budget = perUnit === undefined ? `${o.runs} runs each` : `${perUnit.toFixed(1)} s each` +
    (o.runs === undefined ? "" : `, at most ${o.runs} runs`);
  env.out(
    `fuzz: ${units.length} unit(s) of ${selected.length} target(s), shard ${o.shard.index}/${o.shard.count}, ` +
      `seed ${seed}, ${o.workers === 0 ? "main thread" : `${parallel} worker(s)`}, ${budget}\n`,
  );
  if (units.length === 0) {
    env.out(
      selected.length === 0
        ? "fuzz: no targets registered in fuzz/targets/mod.ts; nothing to do\n"
        : "fuzz: this shard has no units (more shards than slices)\n",
    );
  }
  const exec: Executor = o.workers === 0
    ? new InProcessExecutor(env.targets)
    : new WorkerExecutor(env.registryUrl, parallel);
  const start = performance.now();
  let results;
  try {
    results = await runUnits(units, exec, consoleProgress(env.out, env.isTty));
  } finally {
    exec.close();
  }
  const wall = (performance.now() - start) / 1000;
  const outcome = await saveCounterexamples(results, o.corpus, env);
  const report = buildReport(
    {
      seed,
      shard: o.shard,
      targets: selected.map((t) => t.name),
      date: new Date().toISOString(),
      wallSeconds: wall,
      workers: o.workers,
      budget: { seconds: o.seconds ?? null, runs: o.runs ?? null },
    },
    targetReports(results, new Map(env.targets.map((t) => [t.name, t.description])), outcome),
    { fastCheck: fc.__version, deno: Deno.version.deno },
  );
  return { report, results, outcome };
}

/** Prints the summary and writes the artifacts, JSON and JUnit reports asked for. */
async function writeOutputs(
  o: FuzzOptions,
  env: FuzzEnv,
  { report, results, outcome }: Campaign,
): Promise<void> {
  env.out(formatSummary(report) + "\n");
  if (report.totals.failures + report.totals.crashes > 0) {
    try {
      const a = await writeArtifacts(o.artifacts, results, outcome);
      env.out(`fuzz: ${a.files.length} artifact file(s) in ${a.dir}\n`);
    } catch (e) {
      env.err(`fuzz: --artifacts: cannot write artifacts: ${messageOf(e).split("\n")[0]}\n`);
    }
  }
  if (o.json !== undefined) {
    Deno.writeTextFileSync(o.json, JSON.stringify(report, null, 2) + "\n");
    env.out(`fuzz: JSON report written to ${o.json}\n`);
  }
  if (o.junit !== undefined) {
    Deno.writeTextFileSync(o.junit, formatJunit(report));
    env.out(`fuzz: JUnit report written to ${o.junit}\n`);
  }
}

/** Runs the CLI with `args`; returns the exit status (0 ok, 1 failures, 2 usage/setup error). */
export async function fuzzMain(args: readonly string[], env: FuzzEnv): Promise<number> {
  // `--device` (and --replay of a device finding): the device campaign, fuzz/device/main.ts.
  if (isDeviceInvocation(args)) return await deviceFuzzMain(args, env);
  let o;
  try {
    o = parseFuzzArgs(args, env.cores);
  } catch (e) {
    if (e instanceof CliError) {
      env.err(`fuzz: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
  if (o.help) {
    env.out(HELP);
    return 0;
  }
  const done = await registryAndCommands(o, env);
  if (done !== null) return done;
  const refused = campaignProblem(o, env);
  if (refused !== null) return refused;
  const ran = await runCampaign(o, env);
  await writeOutputs(o, env, ran);
  const report = ran.report;
  return report.totals.failures + report.totals.crashes > 0 ? 1 : 0;
}

if (import.meta.main) {
  const enc = new TextEncoder();
  // the watchdog covers loading: a hang in a target module's top level is reported, not waited on
  const registry = new URL("./targets/mod.ts", import.meta.url).href;
  const probe = await probeLoad(registry);
  if (!probe.ok) {
    Deno.stderr.writeSync(
      enc.encode(
        `fuzz: fuzz/targets/mod.ts ${probe.why.split("\n")[0]}. Fix: run \`deno run ` +
          "fuzz/targets/mod.ts` to see where it stops, and fix that target\n",
      ),
    );
    Deno.exit(2);
  }
  const { TARGETS } = await import("./targets/mod.ts");
  const { REAL_RING_SEEDS_ERROR } = await import("./support/real_ring_seeds.ts");
  const code = await fuzzMain(Deno.args, {
    targets: TARGETS,
    registryUrl: new URL("./targets/mod.ts", import.meta.url).href,
    targetsDir: new URL("./targets/", import.meta.url),
    out: (s) => Deno.stdout.writeSync(enc.encode(s)),
    err: (s) => Deno.stderr.writeSync(enc.encode(s)),
    isTty: Deno.stdout.isTerminal(),
    cores: navigator.hardwareConcurrency ?? 1,
    setupError: REAL_RING_SEEDS_ERROR,
  });
  Deno.exit(code);
}
