/**
 * Baseline comparison with a noise-aware verdict.
 *
 * For each case present in both runs: `ratio = current p50 / baseline p50` (time, both
 * min-of-rounds medians; > 1 is slower). The **noise band** of the pair is the largest of
 * - the floor `noise` (default 0.08: two identical runs differed by up to 8% on this machine,
 *   DENO_NOTES.md),
 * - each run's own spread: interquartile range over median `(p75 - p25) / p50`, and the spread of
 *   the medians across rounds `(p50max - p50) / p50`, summed over the two runs.
 *
 * Verdict: `slower` only when the ratio exceeds **both** `1 + threshold` and `1 + band`;
 * `faster` symmetrically (ratio below `1 / (1 + threshold)` and `1 / (1 + band)`); otherwise
 * `same`. So a 10% threshold never flags a change that the runs' own noise could explain.
 * The CLI exits non-zero when any case is `slower`.
 *
 * @module
 */

import type { CaseResult, Stats } from "./results.ts";

/** Verdict of one case. */
export type Verdict = "faster" | "slower" | "same";

/** Comparison of one case. */
export interface Comparison {
  /** Case name. */
  name: string;
  /** current / baseline time (> 1 = slower). */
  ratio: number;
  /** Relative noise band used (0.08 = 8%). */
  band: number;
  /** Verdict. */
  verdict: Verdict;
  /** Why: which limit decided. */
  reason: string;
}

/** Options of {@link compareResults}. */
export interface CompareOptions {
  /** Relative change that counts (0.10 = 10%). */
  threshold: number;
  /** Noise floor (0.08 = 8%). */
  noise: number;
}

/** Relative spread of one run's statistics (IQR/median plus cross-round median spread). */
export function spreadOf(s: Stats): number {
  const iqr = (s.p75 - s.p25) / s.p50;
  const rounds = (s.p50max - s.p50) / s.p50;
  return Math.max(0, iqr) + Math.max(0, rounds);
}

/** The verdict for one pair of statistics. */
export function verdictOf(current: Stats, baseline: Stats, opts: CompareOptions): Comparison {
  const ratio = current.p50 / baseline.p50;
  const band = Math.max(opts.noise, spreadOf(current) + spreadOf(baseline));
  const limit = Math.max(opts.threshold, band);
  let verdict: Verdict = "same";
  let reason: string;
  if (ratio > 1 + limit) {
    verdict = "slower";
    reason = `+${pct(ratio - 1)} beyond threshold ${pct(opts.threshold)} and noise ${pct(band)}`;
  } else if (ratio < 1 / (1 + limit)) {
    verdict = "faster";
    reason = `-${pct(ratio - 1)} beyond threshold ${pct(opts.threshold)} and noise ${pct(band)}`;
  } else if (Math.abs(ratio - 1) > opts.threshold) {
    reason = `${sign(ratio - 1)}${pct(ratio - 1)} past threshold but within noise ${pct(band)}`;
  } else {
    reason = `within threshold ${pct(opts.threshold)}`;
  }
  return { name: "", ratio, band, verdict, reason };
}

/**
 * Compares every case present in both runs.
 * @returns comparisons (current order), and the names only in one run.
 */
export function compareResults(
  current: readonly CaseResult[],
  baseline: readonly CaseResult[],
  opts: CompareOptions,
): { comparisons: Comparison[]; onlyCurrent: string[]; onlyBaseline: string[] } {
  const base = new Map(baseline.map((r) => [r.name, r]));
  const comparisons: Comparison[] = [];
  const onlyCurrent: string[] = [];
  for (const r of current) {
    const b = base.get(r.name);
    if (!b) {
      onlyCurrent.push(r.name);
      continue;
    }
    comparisons.push({ ...verdictOf(r.stats, b.stats, opts), name: r.name });
  }
  const cur = new Set(current.map((r) => r.name));
  const onlyBaseline = baseline.filter((r) => !cur.has(r.name)).map((r) => r.name);
  return { comparisons, onlyCurrent, onlyBaseline };
}

function pct(x: number): string {
  return `${(Math.abs(x) * 100).toFixed(1)}%`;
}
function sign(x: number): string {
  return x >= 0 ? "+" : "-";
}
