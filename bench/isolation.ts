/**
 * The isolation check (`deno task bench --check-isolation`): every case of the run is measured
 * again in the isolate the run used and alone, in a fresh Worker isolate that has run nothing
 * else, alternating, and the two times are compared. With `--isolate case` (the default) the two must agree within the noise band;
 * with `--isolate family` or `none` the check shows which cases the shared type feedback slows.
 * With `--isolates K` above 1, "the isolate the run used" is the case's isolate of the last block
 * (each block's is built the same way, so it stands for all K).
 *
 * @module
 */

import type { CaseParams } from "./cases.ts";
import { type Measurer, WorkerMeasurer } from "./measurer.ts";
import type { CaseResult, Target } from "./results.ts";
import { foldRounds } from "./runner.ts";

/** One case: full-run time against alone time. */
export interface IsolationRow {
  /** Case name. */
  name: string;
  /** ns/chain in the full run's isolate (re-measured during the check). */
  fullNs: number;
  /** ns/chain alone in a fresh isolate. */
  aloneNs: number;
  /** fullNs / aloneNs. */
  ratio: number;
  /** Allowed relative deviation for this case (noise floor or the cases' own spread). */
  band: number;
  /** Whether the ratio is inside 1 +- band. */
  ok: boolean;
}

/** Result of the check. */
export interface IsolationCheck {
  /** Per case, in run order. */
  rows: IsolationRow[];
  /** Summary as a target line (`met` when every case agrees). */
  target: Target;
}

/** Options of {@link checkIsolation}. */
export interface IsolationOptions {
  /** Rounds per case (min-of-N, as in the run). */
  rounds: number;
  /** Measured time per round, ms. */
  timeMs: number;
  /** Noise floor (0.08 = 8%). */
  noise: number;
  /** Progress sink. */
  progress: (line: string) => void;
  /** Builds the measurer of one case alone (default: a fresh {@link WorkerMeasurer}). */
  fresh?: () => Measurer;
}

/** Relative interquartile range of a folded measurement. */
function iqr(s: { p25: number; p50: number; p75: number }): number {
  return (s.p75 - s.p25) / s.p50;
}

/**
 * Measures every result's case again, alternating between the isolate it was measured in during
 * the run (`full`, still holding the type feedback of every case before it) and a fresh isolate
 * that has run only this case, and compares the min-of-N medians. Pairing the two in time keeps
 * the load of a shared machine out of the ratio.
 * @throws Error from a case that cannot be built.
 */
export async function checkIsolation(
  results: readonly CaseResult[],
  full: Measurer,
  opts: IsolationOptions,
): Promise<IsolationCheck> {
  const rows: IsolationRow[] = [];
  let k = 0;
  for (const r of results) {
    const p: CaseParams = r.params;
    const m = opts.fresh ? opts.fresh() : new WorkerMeasurer(() => "alone");
    try {
      await m.prepare(p, Math.max(50, opts.timeMs));
      const a = [], b = [];
      for (let i = 0; i < opts.rounds; i++) {
        a.push(await full.measure(p, opts));
        b.push(await m.measure(p, opts));
      }
      const fa = foldRounds(a), fb = foldRounds(b);
      const ratio = fa.p50 / fb.p50;
      const band = Math.max(opts.noise, Math.min(iqr(fa), iqr(fb)));
      rows.push({
        name: r.name,
        fullNs: fa.p50 / r.chainsPerCall,
        aloneNs: fb.p50 / r.chainsPerCall,
        ratio,
        band,
        ok: Math.abs(ratio - 1) <= band,
      });
      opts.progress(
        `[isolation ${++k}/${results.length}] ${r.name.padEnd(44)} full/alone ${ratio.toFixed(3)}`,
      );
    } finally {
      m.close();
    }
  }
  const bad = rows.filter((x) => !x.ok);
  const worst = rows.reduce(
    (w, x) => (Math.abs(x.ratio - 1) > Math.abs(w.ratio - 1) ? x : w),
    rows[0] ?? { name: "-", ratio: 1 } as IsolationRow,
  );
  return {
    rows,
    target: {
      name: "isolation: every case measures the same in the full run and alone",
      value: rows.length ? worst.ratio : null,
      goal: "full/alone within each case's noise band",
      status: rows.length === 0 ? "n/a" : bad.length === 0 ? "met" : "missed",
      detail: `${rows.length - bad.length}/${rows.length} cases agree; worst ${worst.name} ` +
        `${worst.ratio.toFixed(3)}` +
        (bad.length ? `; outside the band: ${bad.map((x) => x.name).join(", ")}` : ""),
    },
  };
}

/** The check as a table. */
export function formatIsolation(c: IsolationCheck, isolate: string): string {
  const lines = [
    `isolation check (full run with --isolate ${isolate} vs each case alone in a fresh isolate):`,
    `  ${"case".padEnd(44)} ${"full ns".padStart(9)} ${"alone ns".padStart(9)} ` +
    `${"full/alone".padStart(10)} ${"band".padStart(6)}`,
  ];
  for (const r of c.rows) {
    lines.push(
      `  ${r.name.padEnd(44)} ${r.fullNs.toFixed(1).padStart(9)} ${
        r.aloneNs.toFixed(1).padStart(9)
      } ` +
        `${r.ratio.toFixed(3).padStart(10)} ${(r.band * 100).toFixed(0).padStart(5)}%` +
        (r.ok ? "" : "  DIFFERS"),
    );
  }
  lines.push(`  ${c.target.status}: ${c.target.detail}`);
  return lines.join("\n");
}
