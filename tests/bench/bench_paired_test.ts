import { assert, assertEquals } from "@std/assert";
import fc from "fast-check";
import { median, pairedOf, pairedRatio, roundsPerChain } from "../../bench/paired.ts";
import { foldRounds } from "../../bench/runner.ts";
import { caseResult } from "./bench_fixture.ts";
import type { CaseResult } from "../../bench/results.ts";

function rounds(c: CaseResult, p50s: number[]): CaseResult {
  const stats = foldRounds(
    p50s.map((p50) => ({ min: p50, p25: p50, p50, p75: p50, avg: p50, n: 8 })),
  );
  return { ...c, stats, nsPerChain: stats.p50 / c.chainsPerCall };
}

Deno.test("paired: median of odd and even lists", () => {
  assertEquals(median([3, 1, 2]), 2);
  assertEquals(median([4, 1, 3, 2]), 2.5);
  assertEquals(median([7]), 7);
});

Deno.test("paired: foldRounds keeps each round's median in order", () => {
  const c = rounds(caseResult({}, 1), [300, 100, 200]);
  assertEquals(c.stats.roundP50s, [300, 100, 200]);
  assertEquals(c.stats.p50, 100);
});

Deno.test("paired: per chain, so different batch sizes compare; unpaired falls back", () => {
  const a = rounds(caseResult({ batch: 32 }, 1), [3200, 6400]);
  const b = rounds(caseResult({ batch: 16 }, 1), [800, 1600]);
  const r = pairedRatio(a, b);
  assertEquals([r.value, r.lo, r.hi, r.rounds], [2, 2, 2, 2]);
  // different round counts (or an old file without rounds): the min-of-rounds ratio, rounds 0
  const c = rounds(caseResult({ batch: 16 }, 1), [800]);
  assertEquals(roundsPerChain([a, c]), null);
  assertEquals(pairedRatio(a, c).rounds, 0);
  assertEquals(pairedRatio(a, caseResult({ batch: 16 }, 400)).value, 100 / 25);
  const d = pairedOf([b, a], ([x, y]) => y - x);
  assertEquals(d, { value: (50 + 100) / 2, rounds: 2, isolates: 1, perIsolate: [(50 + 100) / 2] });
});

Deno.test("paired: a slow pass that stretches both cases alike leaves the ratio unchanged", () => {
  fc.assert(fc.property(
    fc.array(fc.double({ min: 1, max: 3, noNaN: true }), { minLength: 1, maxLength: 15 }),
    fc.double({ min: 0.5, max: 4, noNaN: true }),
    (slow, k) => {
      const a = rounds(caseResult({}, 1), slow.map((s) => 1000 * k * s));
      const b = rounds(caseResult({}, 1), slow.map((s) => 1000 * s));
      const r = pairedRatio(a, b);
      assert(Math.abs(r.value - k) < 1e-9 * k, `${r.value} vs ${k}`);
      assertEquals(r.rounds, slow.length);
    },
  ));
});
