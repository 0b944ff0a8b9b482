import { assert, assertEquals, assertRejects, assertThrows } from "@std/assert";
import { baselinePath, loadResults, parseResults, writeResults } from "../../bench/results.ts";
import { caseResult, results } from "./bench_fixture.ts";

Deno.test("baseline: a valid results file parses unchanged", () => {
  const r = results([caseResult({ engine: "sol" }, 1000)]);
  assertEquals(parseResults(JSON.parse(JSON.stringify(r)), "x.json"), r);
});

Deno.test("baseline: a bad field is an error naming the file and the field path", () => {
  const r = results([caseResult({ engine: "sol" }, 1000)]) as unknown as {
    results: { stats: { p50: unknown } }[];
  };
  r.results[0].stats.p50 = "fast";
  const e = assertThrows(() => parseResults(r, "bench/baselines/old.json"), Error);
  assert(e.message.startsWith("bench/baselines/old.json: invalid results file"), e.message);
  assert(e.message.includes("results.0.stats.p50"), e.message);
});

Deno.test("baseline: missing machine info, wrong schema version and extra keys are named", () => {
  const r = results([]) as Record<string, unknown>;
  delete r.machine;
  r.schema = 99;
  r.extra = 1;
  const e = assertThrows(() => parseResults(r, "b.json"), Error);
  for (const f of ["machine", "schema", "extra"]) assert(e.message.includes(f), e.message);
});

Deno.test("baseline: a negative time and an unknown engine are rejected", () => {
  const c = caseResult({}, 100);
  const bad = { ...c, params: { ...c.params, engine: "warp" }, nsPerChain: -1 };
  const e = assertThrows(() => parseResults(results([bad as never]), "b.json"), Error);
  assert(e.message.includes("results.0.params.engine"), e.message);
  assert(e.message.includes("results.0.nsPerChain"), e.message);
});

Deno.test("baseline: names become safe paths only", () => {
  assertEquals(baselinePath("before-1.2"), "bench/baselines/before-1.2.json");
  assertThrows(() => baselinePath("../etc/passwd"), Error, "baseline name");
  assertThrows(() => baselinePath(""), Error, "baseline name");
});

Deno.test("baseline: write then load round-trips; not-JSON names the file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const r = results([caseResult({ engine: "split" }, 2000)]);
    await writeResults(`${dir}/a/b.json`, r);
    assertEquals(await loadResults(`${dir}/a/b.json`), r);
    await Deno.writeTextFile(`${dir}/bad.json`, "{nope");
    await assertRejects(() => loadResults(`${dir}/bad.json`), Error, `${dir}/bad.json: not JSON`);
    await assertRejects(() => loadResults(`${dir}/none.json`), Error, "cannot read");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
