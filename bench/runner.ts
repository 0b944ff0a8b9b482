/**
 * Times cases, interleaving rounds (round 1 of every case, then round 2, ...) so slow drifts of
 * a shared machine hit all cases alike, and keeps min-of-N medians.
 *
 * With `isolates: K` the rounds are split into K blocks of consecutive rounds, and before each
 * block every case gets a fresh isolate (the measurer's `renew`, then prepare and warm-up
 * again). V8 settles each isolate of a case in a steady state of its own (one isolate of split
 * c4 ran 234 ns/chain in every round, another 253-257), so one isolate alone can decide a
 * ratio; several let the paired statistics (`paired.ts`) take the median over isolates.
 * Each round records the block (isolate) it came from in `stats.roundIsolates`.
 *
 * @module
 */

import { caseName, type CaseParams, solFor } from "./cases.ts";
import type { CaseShape, Measurer, RawStats } from "./measurer.ts";
import type { CaseResult, Stats } from "./results.ts";

/** Runner options. */
export interface RunOptions {
  /** Rounds per case (min-of-N). */
  rounds: number;
  /** Minimum measured CPU time per case per round, ms. */
  timeMs: number;
  /** Progress sink (stderr by default). */
  progress: (line: string) => void;
  /**
   * Isolates per case (default 1): the rounds are split into this many blocks and every case
   * starts each block in a fresh isolate. Clamped to `rounds`. Needs a measurer with `renew`.
   */
  isolates?: number;
}

interface Raw {
  p: CaseParams;
  shape: CaseShape;
  rounds: RawStats[];
  /** Block (isolate index) of each round. */
  isolates: number[];
}

/** Sizes of `k` blocks of consecutive rounds that share `rounds` (earlier blocks 1 larger). */
export function blockSizes(rounds: number, k: number): number[] {
  const n = Math.max(1, Math.min(k, rounds));
  return Array.from({ length: n }, (_, i) => Math.floor(rounds / n) + (i < rounds % n ? 1 : 0));
}

/**
 * Measures every case.
 * @param cases cases in report order.
 * @param m where to measure.
 * @returns results with throughput and fraction of the speed-of-light filled in.
 * @throws Error from a case that cannot be built or does not complete its chains.
 */
export async function runCases(
  cases: readonly CaseParams[],
  m: Measurer,
  opts: RunOptions,
): Promise<CaseResult[]> {
  const blocks = blockSizes(opts.rounds, opts.isolates ?? 1);
  if (blocks.length > 1 && !m.renew) {
    throw new Error("isolates > 1 needs a measurer that can renew its isolates");
  }
  // warm-up: as long as one timed round, at least 50 ms (tier-up before the first round)
  const warmMs = Math.max(50, opts.timeMs);
  const raws: Raw[] = cases.map((p) => ({
    p,
    shape: { chainsPerCall: 0, descriptorsPerCall: 0, bytesPerCall: 0 },
    rounds: [],
    isolates: [],
  }));
  const total = raws.length * opts.rounds;
  let done = 0;
  const t0 = performance.now();
  const secs = () => ((performance.now() - t0) / 1000).toFixed(0);
  const tag = (b: number) => blocks.length > 1 ? ` iso ${b + 1}/${blocks.length}` : "";
  for (let b = 0; b < blocks.length; b++) {
    if (b > 0) {
      m.renew!();
      opts.progress(
        `[${done}/${total} ${secs()}s${tag(b)}] fresh isolates: preparing ${raws.length} case(s)`,
      );
    }
    // load every case's isolate at once (in parallel), then warm them one at a time
    await m.start?.(cases);
    for (const raw of raws) {
      const shape = await m.prepare(raw.p, warmMs);
      if (b > 0 && JSON.stringify(shape) !== JSON.stringify(raw.shape)) {
        throw new Error(`${caseName(raw.p)}: shape changed in isolate ${b + 1}`);
      }
      raw.shape = shape;
    }
    for (let r = 0; r < blocks[b]; r++) {
      for (const raw of raws) {
        const s = await m.measure(raw.p, { timeMs: opts.timeMs });
        raw.rounds.push(s);
        raw.isolates.push(b);
        done++;
        opts.progress(
          `[${done}/${total} ${secs()}s${tag(b)}] ` +
            `${caseName(raw.p).padEnd(44)} ${
              (s.p50 / raw.shape.chainsPerCall).toFixed(1).padStart(8)
            } ns/chain`,
        );
      }
    }
  }
  const out: CaseResult[] = [];
  for (const raw of raws) out.push(toResult(raw, await m.counters(raw.p, 64)));
  const byName = new Map(out.map((r) => [r.name, r]));
  for (const r of out) {
    if (r.params.engine === "split" || r.params.engine === "packed") {
      const s = byName.get(caseName(solFor(r.params)));
      if (s) {
        r.sol = s.name;
        r.fractionOfSol = s.stats.p50 / r.stats.p50;
      }
    }
  }
  return out;
}

/**
 * Folds the rounds of a case into min-of-N statistics.
 * @param isolates the isolate (block) index of each round; kept as `roundIsolates` when the
 *   rounds came from more than one isolate.
 */
export function foldRounds(rounds: readonly RawStats[], isolates?: readonly number[]): Stats {
  let best = rounds[0];
  for (const x of rounds) if (x.p50 < best.p50) best = x;
  const n = rounds.reduce((a, x) => a + x.n, 0);
  return {
    min: Math.min(...rounds.map((x) => x.min)),
    p25: best.p25,
    p50: best.p50,
    p75: best.p75,
    avg: rounds.reduce((a, x) => a + x.avg * x.n, 0) / n,
    p50max: Math.max(...rounds.map((x) => x.p50)),
    rounds: rounds.length,
    samples: n,
    roundP50s: rounds.map((x) => x.p50),
    ...(isolates && new Set(isolates).size > 1 ? { roundIsolates: [...isolates] } : {}),
  };
}

function toResult(raw: Raw, counters: Record<string, number>): CaseResult {
  const stats = foldRounds(raw.rounds, raw.isolates);
  const b = raw.shape;
  const nsPerChain = stats.p50 / b.chainsPerCall;
  return {
    name: caseName(raw.p),
    params: { ...raw.p },
    chainsPerCall: b.chainsPerCall,
    descriptorsPerCall: b.descriptorsPerCall,
    bytesPerCall: b.bytesPerCall,
    stats,
    nsPerChain,
    chainsPerSec: 1e9 / nsPerChain,
    bytesPerSec: (b.bytesPerCall * 1e9) / stats.p50,
    sol: null,
    fractionOfSol: null,
    counters,
  };
}
