/**
 * Times cases with mitata's `measure`, interleaving rounds (round 1 of every case, then round 2,
 * ...) so slow drifts of a shared machine hit all cases alike, and keeps min-of-N medians.
 *
 * @module
 */

import { measure } from "mitata";
import { caseName, type CaseParams, solFor } from "./cases.ts";
import type { Benchable } from "./roundtrip.ts";
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
  b: Benchable;
  rounds: { min: number; p25: number; p50: number; p75: number; avg: number; n: number }[];
}

/**
 * Measures every case.
 * @param cases cases in report order.
 * @param make builds the benchable of a case (throws when unavailable: the case is skipped).
 * @returns results with throughput and fraction of the speed-of-light filled in.
 */
export async function runCases(
  cases: readonly CaseParams[],
  make: (p: CaseParams) => Benchable,
  opts: RunOptions,
): Promise<CaseResult[]> {
  const raws: Raw[] = [];
  for (const p of cases) {
    const b = make(p);
    const got = b.run();
    if (got !== b.chainsPerCall) {
      throw new Error(`${caseName(p)}: round trip completed ${got} chains, not ${b.chainsPerCall}`);
    }
    raws.push({ p, b, rounds: [] });
  }
  const total = raws.length * opts.rounds;
  let done = 0;
  const t0 = performance.now();
  for (let r = 0; r < opts.rounds; r++) {
    for (const raw of raws) {
      const fn = raw.b.run.bind(raw.b);
      const s = await measure(fn, {
        min_cpu_time: opts.timeMs * 1e6,
        min_samples: 8,
        batch_samples: 64,
        warmup_samples: 4,
      });
      raw.rounds.push({
        min: s.min,
        p25: s.p25,
        p50: s.p50,
        p75: s.p75,
        avg: s.avg,
        n: s.samples.length,
      });
      done++;
      const perChain = s.p50 / raw.b.chainsPerCall;
      opts.progress(
        `[${done}/${total} ${((performance.now() - t0) / 1000).toFixed(0)}s] ` +
          `${caseName(raw.p).padEnd(44)} ${perChain.toFixed(1).padStart(8)} ns/chain`,
      );
    }
  }
  const out: CaseResult[] = raws.map((raw) => toResult(raw));
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

function toResult(raw: Raw): CaseResult {
  let best = raw.rounds[0];
  for (const x of raw.rounds) if (x.p50 < best.p50) best = x;
  const n = raw.rounds.reduce((a, x) => a + x.n, 0);
  const stats: Stats = {
    min: Math.min(...raw.rounds.map((x) => x.min)),
    p25: best.p25,
    p50: best.p50,
    p75: best.p75,
    avg: raw.rounds.reduce((a, x) => a + x.avg * x.n, 0) / n,
    p50max: Math.max(...raw.rounds.map((x) => x.p50)),
    rounds: raw.rounds.length,
    samples: n,
  };
  const b = raw.b;
  const nsPerChain = stats.p50 / b.chainsPerCall;
  const counters = countersPerCall(b, 64);
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

/** Event counters per call: the difference over `calls` extra round trips, divided by `calls`. */
export function countersPerCall(b: Benchable, calls: number): Record<string, number> {
  if (!b.counters) return {};
  const c0 = b.counters();
  for (let i = 0; i < calls; i++) b.run();
  const c1 = b.counters();
  const out: Record<string, number> = {};
  for (const k of Object.keys(c1)) out[k] = (c1[k] - (c0[k] ?? 0)) / calls;
  return out;
}
