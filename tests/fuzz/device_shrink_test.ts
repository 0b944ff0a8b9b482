// Shrinking a device finding (fuzz/device/shrink.ts) with a fake back-end whose "bug" is known:
// the smallest case with the same signature is found, a candidate with another signature is
// never kept, and the time / run budget is honoured.

import { assert, assertEquals } from "@std/assert";
import fc from "fast-check";
import {
  caseSeed,
  type DeviceCase,
  deviceCaseArbitrary,
  nthCase,
} from "../../fuzz/device/cases.ts";
import { shrinkDeviceCase } from "../../fuzz/device/shrink.ts";
import type { CaseResult } from "../../fuzz/device/run_case.ts";

const arb = deviceCaseArbitrary("net", false);

/** A fake device: WEDGED on any split ring whose hostile input has 2 or more chains. */
function fakeRun(c: DeviceCase): CaseResult {
  const wedged = c.kind === "split-ring" && c.input.chains.length >= 2;
  return {
    verdict: wedged ? "WEDGED" : "PASS",
    code: wedged ? "probe-timeout" : "ok",
    detail: wedged ? `${c.input.chains.length} chains` : "",
    ms: 1,
  } as CaseResult;
}
const sig = (c: DeviceCase, r: CaseResult) => `${c.kind}/${r.verdict}/${r.code}`;
const size = (c: DeviceCase) => JSON.stringify(c).length;

function firstFinding(seed: number): { i: number; c: DeviceCase } {
  for (let i = 0; i < 500; i++) {
    const c = nthCase(arb, seed, i);
    if (c.kind === "split-ring" && c.input.chains.length === 3 && fakeRun(c).verdict === "WEDGED") {
      return { i, c };
    }
  }
  throw new Error("no finding drawn");
}

Deno.test("device shrink: the first fc.check draw of caseSeed is the campaign's case", () => {
  for (let i = 0; i < 20; i++) {
    let first: DeviceCase | null = null;
    fc.check(
      fc.property(arb, (c) => {
        first ??= c;
        return true;
      }),
      { seed: caseSeed(5, i), numRuns: 1 },
    );
    assertEquals(first, nthCase(arb, 5, i));
  }
});

Deno.test("device shrink: the smallest case with the same signature, replayable as is", async () => {
  const { i, c } = firstFinding(11);
  const r0 = fakeRun(c);
  const s = await shrinkDeviceCase(
    arb,
    11,
    i,
    { case: c, result: r0 },
    sig(c, r0),
    sig,
    (cc) => Promise.resolve(fakeRun(cc)),
    { budgetMs: 10_000 },
  );
  assert(s.shrinks > 0, "shrunk");
  assertEquals(s.budgetSpent, false);
  const sc = s.case;
  if (sc.kind !== "split-ring") throw new Error(`kind ${sc.kind}`);
  assertEquals(sc.input.chains.length, 2, "the fewest chains that still wedge");
  assert(size(sc) < size(c), `${size(sc)} < ${size(c)}`);
  // the recorded case reproduces on its own (what --replay runs)
  assertEquals(sig(sc, fakeRun(sc)), sig(c, r0));
  assertEquals(s.result.verdict, "WEDGED");
});

Deno.test("device shrink: budgets (runs, time) stop it; the original is kept when nothing reproduces", async () => {
  const { i, c } = firstFinding(11);
  const r0 = fakeRun(c);
  let runs = 0;
  const s = await shrinkDeviceCase(
    arb,
    11,
    i,
    { case: c, result: r0 },
    sig(c, r0),
    sig,
    (cc) => {
      runs++;
      return Promise.resolve(fakeRun(cc));
    },
    { budgetMs: 10_000, maxRuns: 3 },
  );
  assertEquals(runs, 3);
  assertEquals(s.runs, 3);
  assert(s.budgetSpent);
  // a device whose finding never reproduces: nothing is kept
  const never = await shrinkDeviceCase(
    arb,
    11,
    i,
    { case: c, result: r0 },
    sig(c, r0),
    sig,
    (cc) => Promise.resolve({ ...fakeRun(cc), verdict: "PASS" } as CaseResult),
    { budgetMs: 0 },
  );
  assertEquals(never.shrinks, 0);
  assertEquals(never.case, c);
  assertEquals(never.runs, 0, "no time: no candidate run");
});
