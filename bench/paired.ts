/**
 * Paired statistics of two cases measured in the same run.
 *
 * The runner measures round 1 of every case, then round 2, and so on, so round `i` of case A and
 * round `i` of case B come from the same pass over the cases. This machine has slow periods that
 * last minutes and stretch every case alike (see README "Benchmarks"). A ratio of two
 * min-of-rounds medians takes A's best round and B's best round, which may come from different
 * periods: one lucky round of either side moves the ratio. The paired ratio takes the ratio of
 * each round's medians first and then the median over rounds, so a slow pass cancels out of its
 * own ratio and one outlying round cannot decide the figure.
 *
 * Files written before per-round medians were kept (`stats.roundP50s` absent) fall back to the
 * ratio of min-of-rounds medians.
 *
 * @module
 */

import type { CaseResult } from "./results.ts";

/** A ratio of two cases' times and how it was formed. */
export interface PairedRatio {
  /** Median over rounds of `a / b` per round, or the min-of-rounds ratio when not paired. */
  value: number;
  /** Lowest and highest per-round ratio (equal to `value` when not paired). */
  lo: number;
  /** See {@link PairedRatio.lo}. */
  hi: number;
  /** Rounds paired; 0 when the min-of-rounds ratio was used. */
  rounds: number;
  /** `a.stats.p50 / b.stats.p50`, the ratio of min-of-rounds medians, for reference. */
  minRatio: number;
}

/** Median of a non-empty list (mean of the two middle values for an even count). */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((x, y) => x - y);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * Per-round medians of every case, in ns per chain, when all of them have the same number of
 * rounds; otherwise null (not paired).
 */
export function roundsPerChain(cases: readonly CaseResult[]): number[][] | null {
  const rs = cases.map((c) => c.stats.roundP50s);
  if (rs.some((r) => r === undefined || r.length === 0)) return null;
  const n = rs[0]!.length;
  if (rs.some((r) => r!.length !== n)) return null;
  return rs.map((r, i) => r!.map((x) => x / cases[i].chainsPerCall));
}

/**
 * Time ratio `a / b` in ns per chain (so cases with different batch sizes compare), paired by
 * round when both cases kept their rounds.
 */
export function pairedRatio(a: CaseResult, b: CaseResult): PairedRatio {
  const minRatio = a.nsPerChain / b.nsPerChain;
  const rs = roundsPerChain([a, b]);
  if (!rs) return { value: minRatio, lo: minRatio, hi: minRatio, rounds: 0, minRatio };
  const ratios = rs[0].map((x, i) => x / rs[1][i]);
  return {
    value: median(ratios),
    lo: Math.min(...ratios),
    hi: Math.max(...ratios),
    rounds: ratios.length,
    minRatio,
  };
}

/**
 * Median over rounds of `f(per-chain ns of each case in that round)`, or `f` of the min-of-rounds
 * values when the cases are not paired. Used for differences such as the marginal cost of an
 * added descriptor, `(c4 - c2) / 2`.
 */
export function pairedOf(
  cases: readonly CaseResult[],
  f: (ns: readonly number[]) => number,
): { value: number; rounds: number } {
  const rs = roundsPerChain(cases);
  if (!rs) return { value: f(cases.map((c) => c.nsPerChain)), rounds: 0 };
  const per: number[] = [];
  for (let i = 0; i < rs[0].length; i++) per.push(f(rs.map((r) => r[i])));
  return { value: median(per), rounds: per.length };
}

/** `"1.234 (rounds 1.20-1.30, 12 paired; min-of-rounds 1.250)"`, or the plain ratio. */
export function pairedText(r: PairedRatio): string {
  if (!r.rounds) return `${r.value.toFixed(3)} (min-of-rounds, not paired)`;
  return `${r.value.toFixed(3)} (median of ${r.rounds} paired rounds, ${r.lo.toFixed(3)}-${
    r.hi.toFixed(3)
  }; min-of-rounds ratio ${r.minRatio.toFixed(3)})`;
}
