/**
 * Shrinking a device finding: a WEDGED, CORRUPT or CRASH case is re-drawn with fast-check from
 * its case seed (`caseSeed`: the first value `fc.check` draws is the case itself) and fast-check's
 * own shrinker proposes smaller cases (fewer and shorter chains, smaller values, simpler
 * corruptions); each candidate runs against the back-end (a fresh connection, a restarted
 * process after a CRASH) and is kept when it gives the same finding signature. Time-boxed: past
 * the budget, or past `maxRuns` back-end runs, candidates are no longer run (fast-check then
 * keeps the smallest case that reproduced).
 * @module
 */

import fc from "fast-check";
import { caseSeed, type DeviceCase } from "./cases.ts";
import type { CaseResult } from "./run_case.ts";

/** What {@link shrinkDeviceCase} found. */
export interface ShrinkResult {
  /** The smallest case that gave the same signature (the original when nothing smaller did). */
  case: DeviceCase;
  /** Its result. */
  result: CaseResult;
  /** Smaller cases accepted on the way (0: the original is the smallest found). */
  shrinks: number;
  /** Candidates run against the back-end. */
  runs: number;
  /** True when the budget ran out before fast-check had no smaller candidate left. */
  budgetSpent: boolean;
}

/** Options of {@link shrinkDeviceCase}. */
export interface ShrinkOptions {
  /** Time budget in ms (the runs of candidates). */
  budgetMs: number;
  /** Most candidates to run (default 200). */
  maxRuns?: number;
}

/**
 * Shrinks case `caseNo` of a campaign with `seed`, drawn from `arb`, whose run gave `original`
 * with signature `signature` (`signatureOf(case, result)`). `run` runs one candidate against the
 * back-end (and restarts it after a CRASH, as the campaign does).
 */
export async function shrinkDeviceCase(
  arb: fc.Arbitrary<DeviceCase>,
  seed: number,
  caseNo: number,
  original: { case: DeviceCase; result: CaseResult },
  signature: string,
  signatureOf: (c: DeviceCase, r: CaseResult) => string,
  run: (c: DeviceCase) => Promise<CaseResult>,
  o: ShrinkOptions,
): Promise<ShrinkResult> {
  const maxRuns = o.maxRuns ?? 200;
  const t0 = performance.now();
  const best: ShrinkResult = {
    case: original.case,
    result: original.result,
    shrinks: 0,
    runs: 0,
    budgetSpent: false,
  };
  const originalText = JSON.stringify(original.case);
  let first = true;
  await fc.check(
    fc.asyncProperty(arb, async (c) => {
      // the first value is the case itself (known to reproduce): fail without running it
      if (first) {
        first = false;
        if (JSON.stringify(c) === originalText) return false;
        return true; // a different draw: nothing to shrink from
      }
      if (best.runs >= maxRuns || performance.now() - t0 > o.budgetMs) {
        best.budgetSpent = true;
        return true; // out of budget: treated as not reproducing
      }
      best.runs++;
      const r = await run(c);
      if (signatureOf(c, r) !== signature) return true;
      best.case = c;
      best.result = r;
      best.shrinks++;
      return false;
    }),
    { seed: caseSeed(seed, caseNo), numRuns: 1 },
  );
  return best;
}
