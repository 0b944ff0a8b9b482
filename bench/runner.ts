/**
 * Times cases, interleaving rounds (round 1 of every case, then round 2, ...) so slow drifts of
 * a shared machine hit all cases alike, and keeps min-of-N medians.
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
}

interface Raw {
  p: CaseParams;
  shape: CaseShape;
  rounds: RawStats[];
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
  const raws: Raw[] = [];
  // warm-up: as long as one timed round, at least 50 ms (tier-up before the first round)
  const warmMs = Math.max(50, opts.timeMs);
  for (const p of cases) raws.push({ p, shape: await m.prepare(p, warmMs), rounds: [] });
  const total = raws.length * opts.rounds;
  let done = 0;
  const t0 = performance.now();
  for (let r = 0; r < opts.rounds; r++) {
    for (const raw of raws) {
      const s = await m.measure(raw.p, { timeMs: opts.timeMs });
      raw.rounds.push(s);
      done++;
      opts.progress(
        `[${done}/${total} ${((performance.now() - t0) / 1000).toFixed(0)}s] ` +
          `${caseName(raw.p).padEnd(44)} ${
            (s.p50 / raw.shape.chainsPerCall).toFixed(1).padStart(8)
          } ns/chain`,
      );
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

/** Folds the rounds of a case into min-of-N statistics. */
export function foldRounds(rounds: readonly RawStats[]): Stats {
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
  };
}

function toResult(raw: Raw, counters: Record<string, number>): CaseResult {
  const stats = foldRounds(raw.rounds);
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
