import { assert, assertEquals } from "@std/assert";
import { compareResults, spreadOf, verdictOf } from "../../bench/compare.ts";
import { caseResult, stats } from "./bench_fixture.ts";

const opts = { threshold: 0.1, noise: 0.08 };

Deno.test("compare: identical runs are the same", () => {
  const c = verdictOf(stats(100), stats(100), opts);
  assertEquals(c.verdict, "same");
  assertEquals(c.ratio, 1);
});

Deno.test("compare: 30% more time with tight spread is slower, 30% less is faster", () => {
  assertEquals(verdictOf(stats(130, 0.02), stats(100, 0.02), opts).verdict, "slower");
  assertEquals(verdictOf(stats(70, 0.02), stats(100, 0.02), opts).verdict, "faster");
});

Deno.test("compare: 12% past a 10% threshold but inside an 8% floor + spread is the same", () => {
  // spreads 0.04 + 0.04 = 0.08; the floor is 0.08; threshold 0.10: 12% slower -> slower
  assertEquals(verdictOf(stats(112, 0.04), stats(100, 0.04), opts).verdict, "slower");
  // noisy runs: IQR 10% each -> band 20%: 12% and even 18% are within noise
  const noisy = verdictOf(stats(118, 0.1), stats(100, 0.1), opts);
  assertEquals(noisy.verdict, "same");
  assert(noisy.reason.includes("within noise"), noisy.reason);
  assertEquals(verdictOf(stats(125, 0.1), stats(100, 0.1), opts).verdict, "slower");
});

Deno.test("compare: the noise floor alone stops a change between threshold and floor", () => {
  const o = { threshold: 0.05, noise: 0.15 };
  assertEquals(verdictOf(stats(110, 0), stats(100, 0), o).verdict, "same");
  assertEquals(verdictOf(stats(120, 0), stats(100, 0), o).verdict, "slower");
});

Deno.test("compare: cross-round spread of medians widens the band", () => {
  const s = { ...stats(100, 0), p50max: 130 };
  assertEquals(spreadOf(s), 0.3);
  assertEquals(verdictOf(stats(125, 0), s, opts).verdict, "same");
});

Deno.test("compare: faster is symmetric in ratio (1/(1+limit))", () => {
  // limit 0.10: faster needs ratio < 1/1.1 = 0.909
  assertEquals(verdictOf(stats(92, 0), stats(100, 0), opts).verdict, "same");
  assertEquals(verdictOf(stats(90, 0), stats(100, 0), opts).verdict, "faster");
});

Deno.test("compare: cases are matched by name; the unmatched are listed", () => {
  const cur = [caseResult({ engine: "sol" }, 100), caseResult({ engine: "split" }, 300)];
  const base = [caseResult({ engine: "sol" }, 100), caseResult({ engine: "packed" }, 300)];
  const r = compareResults(cur, base, opts);
  assertEquals(r.comparisons.map((c) => [c.name, c.verdict]), [["sol q256 b32 p64 c1", "same"]]);
  assertEquals(r.onlyCurrent, ["split/identity q256 b32 p64 c1"]);
  assertEquals(r.onlyBaseline, ["packed/identity q256 b32 p64 c1"]);
});
