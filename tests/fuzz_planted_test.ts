/**
 * Every oracle can fail: for each target offering planted bugs (`plantedFaults` +
 * `withPlantedFault`, see docs/FUZZING.md), a short fixed-seed campaign on the broken copy must
 * report a failure within RUNS runs (run-bounded, so the outcome never depends on machine speed),
 * while the example targets stay clean on the same budget.
 */
import { assert, assertEquals } from "@std/assert";
import type { FuzzTarget } from "../fuzz/target.ts";
import { TARGETS } from "../fuzz/targets/mod.ts";
import { runUnit } from "../fuzz/runner.ts";
import { TARGETS as EXAMPLES } from "./fuzz_examples.ts";

const RUNS = 3000;

function plantedCases(targets: readonly FuzzTarget<unknown>[], origin: string) {
  for (const target of targets) {
    for (const fault of target.plantedFaults ?? []) {
      Deno.test(`planted bug: ${origin} ${target.name} reports "${fault}"`, () => {
        if (target.withPlantedFault === undefined) {
          throw new Error(`${target.name} lists plantedFaults but has no withPlantedFault`);
        }
        const broken = target.withPlantedFault(fault);
        const r = runUnit(broken, {
          target: target.name,
          slice: 0,
          seed: 1,
          runs: RUNS,
          maxFailures: 1,
        });
        assertEquals(r.crash, undefined);
        assert(
          r.failures.length > 0,
          `${target.name}: planted bug "${fault}" went unnoticed in ${r.runs} runs`,
        );
      });
    }
  }
}

plantedCases(EXAMPLES, "example");
plantedCases(TARGETS, "registered");

Deno.test("planted bug: the example targets are clean without a planted bug", () => {
  for (const t of EXAMPLES) {
    const r = runUnit(t, { target: t.name, slice: 0, seed: 1, runs: RUNS });
    assertEquals([t.name, r.failures.length, r.runs], [t.name, 0, RUNS]);
  }
});
