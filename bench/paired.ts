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
 * Several isolates per case (`--isolates K`, `stats.roundIsolates`): V8 settles every isolate of
 * a case in a steady state of its own, a few percent apart, that lasts every round of that
 * isolate; pairing by round cannot cancel it (the other case's isolate has its own). So the
 * figure is taken per isolate first and then as the median over isolates: one isolate's steady
 * state, slow or fast, moves one vote, not the figure. Within an isolate each case contributes its
 * best round (the lowest round median, min-of-N): a slow period of the host only ever adds time,
 * and on the shared 2-core machine slow periods shorter than a round (one case of a pair slow, the
 * next fast) hit more than half of the rounds under load, so a paired median over an isolate's
 * rounds still moves with the load while its best round does not. A lucky round cannot decide the
 * figure either: it moves only its own isolate's vote. Measured on the lines suite (4 runs each,
 * load 5-10): the marginal-descriptor line ranged 1.01-2.42 with one isolate (paired median),
 * 1.01-1.22 with three isolates and per-isolate paired medians, 1.00-1.06 with three isolates and
 * per-isolate best rounds (README "Benchmarks").
 *
 * With one isolate (K = 1, and files without `roundIsolates`) the figure stays the median over
 * rounds of the paired per-round value: without other isolates to out-vote it, one lucky round
 * would decide a min-of-rounds figure.
 *
 * Files written before per-round medians were kept (`stats.roundP50s` absent) fall back to the
 * ratio of min-of-rounds medians; files without `roundIsolates` count as one isolate.
 *
 * @module
 */

import type { CaseResult } from "./results.ts";

/** A ratio of two cases' times and how it was formed. */
export interface PairedRatio {
  /** Median over rounds of `a / b` per round, or the min-of-rounds ratio when not paired. */
  value: number;
  /**
   * Lowest and highest per-round ratio, or per-isolate ratio with several isolates (equal to
   * `value` when not paired).
   */
  lo: number;
  /** See {@link PairedRatio.lo}. */
  hi: number;
  /** Rounds paired; 0 when the min-of-rounds ratio was used. */
  rounds: number;
  /** Isolates the rounds came from (several: the median of their figures); 0 when unpaired. */
  isolates: number;
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
 * The isolate of each round, shared by all `cases` (rounds of one run), or null when they differ.
 * Cases without `roundIsolates` ran every round in one isolate (index 0).
 */
export function roundIsolates(cases: readonly CaseResult[]): number[] | null {
  const n = cases[0]?.stats.roundP50s?.length ?? 0;
  const of = (c: CaseResult) => c.stats.roundIsolates ?? new Array<number>(n).fill(0);
  const first = of(cases[0]);
  for (const c of cases) {
    const x = of(c);
    if (x.length !== first.length || x.some((v, i) => v !== first[i])) return null;
  }
  return first;
}

/**
 * The combined figure of `f` over cases whose per-round ns/chain are `rs` (one row per case):
 * with one isolate, the median over rounds of `f` of each round (paired); with several, `f` of
 * each case's best round in each isolate, then the median over isolates. `perIsolate` holds each
 * isolate's figure in isolate order, `perRound` the paired per-round values.
 */
export function combine(
  rs: readonly (readonly number[])[],
  isolates: readonly number[],
  f: (ns: readonly number[]) => number,
): { value: number; isolates: number; perIsolate: number[]; perRound: number[] } {
  const perRound: number[] = [];
  for (let i = 0; i < rs[0].length; i++) perRound.push(f(rs.map((r) => r[i])));
  const ids = [...new Set(isolates)].sort((x, y) => x - y);
  if (ids.length <= 1) {
    const value = median(perRound);
    return { value, isolates: 1, perIsolate: [value], perRound };
  }
  const perIsolate = ids.map((k) =>
    f(rs.map((r) => Math.min(...r.filter((_, i) => isolates[i] === k))))
  );
  return { value: median(perIsolate), isolates: ids.length, perIsolate, perRound };
}

/**
 * Time ratio `a / b` in ns per chain (so cases with different batch sizes compare), paired by
 * round when both cases kept their rounds, combined over isolates ({@link combine}).
 */
export function pairedRatio(a: CaseResult, b: CaseResult): PairedRatio {
  const minRatio = a.nsPerChain / b.nsPerChain;
  const rs = roundsPerChain([a, b]);
  if (!rs) {
    return { value: minRatio, lo: minRatio, hi: minRatio, rounds: 0, isolates: 0, minRatio };
  }
  const iso = roundIsolates([a, b]);
  // rounds from different isolates (hand-merged files) do not pair: the min-of-rounds ratio
  if (!iso) {
    return { value: minRatio, lo: minRatio, hi: minRatio, rounds: 0, isolates: 0, minRatio };
  }
  const c = combine(rs, iso, ([x, y]) => x / y);
  const spread = c.isolates > 1 ? c.perIsolate : c.perRound;
  return {
    value: c.value,
    lo: Math.min(...spread),
    hi: Math.max(...spread),
    rounds: rs[0].length,
    isolates: c.isolates,
    minRatio,
  };
}

/**
 * {@link combine} of `f(per-chain ns of each case)` over the cases' rounds and isolates, or `f` of
 * the min-of-rounds values when the cases are not paired. Used for differences such as the
 * marginal cost of an added descriptor, `(c4 - c2) / 2`.
 */
export function pairedOf(
  cases: readonly CaseResult[],
  f: (ns: readonly number[]) => number,
): { value: number; rounds: number; isolates: number; perIsolate: number[] } {
  const rs = roundsPerChain(cases);
  const iso = rs ? roundIsolates(cases) : null;
  if (!rs || !iso) {
    // no rounds kept, or rounds from different isolates (hand-merged files): min-of-rounds
    const value = f(cases.map((c) => c.nsPerChain));
    return { value, rounds: 0, isolates: 0, perIsolate: [value] };
  }
  const c = combine(rs, iso, f);
  return { value: c.value, rounds: rs[0].length, isolates: c.isolates, perIsolate: c.perIsolate };
}

/**
 * `"1.234 (median of 12 paired rounds, 1.200-1.300; min-of-rounds ratio 1.250)"`, with several
 * isolates `"1.234 (median over 3 isolates of each one's best-round ratio, 1.200-1.300, 30
 * rounds; ...)"`, or the plain ratio.
 */
export function pairedText(r: PairedRatio): string {
  if (!r.rounds) return `${r.value.toFixed(3)} (min-of-rounds, not paired)`;
  const range = `${r.lo.toFixed(3)}-${r.hi.toFixed(3)}`;
  const how = r.isolates > 1
    ? `median over ${r.isolates} isolates of each one's best-round ratio, ${range}, ` +
      `${r.rounds} rounds`
    : `median of ${r.rounds} paired rounds, ${range}`;
  return `${r.value.toFixed(3)} (${how}; min-of-rounds ratio ${r.minRatio.toFixed(3)})`;
}
