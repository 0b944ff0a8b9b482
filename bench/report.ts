/**
 * Text report: the results table (chains/s, bytes/s, fraction of speed-of-light), the
 * allocation check, the comparison with a baseline, and the targets block.
 *
 * @module
 */

import type { AllocResult, CaseResult, Target } from "./results.ts";
import type { Comparison } from "./compare.ts";

/** Formats a rate with an SI prefix, e.g. `43.2 M`. */
export function si(x: number): string {
  const units: [number, string][] = [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"]];
  for (const [v, u] of units) if (Math.abs(x) >= v) return `${(x / v).toFixed(2)} ${u}`;
  return `${x.toFixed(2)} `;
}

/** The results table. */
export function formatResults(results: readonly CaseResult[]): string {
  const head = [
    "case".padEnd(44),
    "ns/chain".padStart(10),
    "chains/s".padStart(11),
    "bytes/s".padStart(11),
    "of SoL".padStart(7),
    "spread".padStart(7),
  ].join(" ");
  const lines = [head, "-".repeat(head.length)];
  for (const r of results) {
    const spread = (r.stats.p75 - r.stats.p25) / r.stats.p50;
    lines.push([
      r.name.padEnd(44),
      r.nsPerChain.toFixed(1).padStart(10),
      si(r.chainsPerSec).padStart(11),
      (si(r.bytesPerSec) + "B").padStart(11),
      (r.fractionOfSol === null ? "-" : r.fractionOfSol.toFixed(2)).padStart(7),
      `${(spread * 100).toFixed(1)}%`.padStart(7),
    ].join(" "));
  }
  lines.push(
    "ns/chain: min-of-rounds median; of SoL: speed-of-light time / this time (same ring shape);" +
      " spread: IQR/median",
  );
  return lines.join("\n");
}

/** The allocation block. */
export function formatAlloc(alloc: readonly AllocResult[]): string {
  if (!alloc.length) return "";
  const lines = ["allocation per chain (heap bytes, steady state):"];
  for (const a of alloc) {
    const v = a.bytesPerChain === null ? "inconclusive" : `${a.bytesPerChain.toFixed(2)} B/chain`;
    lines.push(
      `  ${a.name.padEnd(44)} ${v.padStart(16)}  (${a.chains} chains${
        a.forcedGc ? ", forced GC" : ", NO forced GC: approximate"
      }${a.hotPath ? "" : "; maps per buffer, not a hot path"})`,
    );
  }
  return lines.join("\n");
}

/** The comparison block. */
export function formatComparison(
  baselineName: string,
  comparisons: readonly Comparison[],
  onlyCurrent: readonly string[],
  onlyBaseline: readonly string[],
): string {
  const lines = [`compare with baseline "${baselineName}" (time ratio current/baseline):`];
  for (const c of comparisons) {
    lines.push(
      `  ${c.name.padEnd(44)} ${c.ratio.toFixed(3).padStart(7)}x  ${
        c.verdict.toUpperCase().padEnd(6)
      }  ${c.reason}`,
    );
  }
  if (onlyCurrent.length) lines.push(`  not in baseline: ${onlyCurrent.join("; ")}`);
  if (onlyBaseline.length) lines.push(`  not in this run: ${onlyBaseline.join("; ")}`);
  const n = (v: string) => comparisons.filter((c) => c.verdict === v).length;
  lines.push(`  ${n("faster")} faster, ${n("slower")} slower, ${n("same")} same`);
  return lines.join("\n");
}

/** The targets block. */
export function formatTargets(targets: readonly Target[]): string {
  const lines = [
    "targets (ratios measured in this run; paired: the median over rounds of the ratio of the " +
    "two cases' medians in the same round; with several isolates per case: the median over " +
    "isolates of the ratio of each case's best round in the isolate):",
  ];
  for (const t of targets) {
    const v = t.value === null ? "-" : t.value.toFixed(3);
    lines.push(`  [${t.status.padEnd(6)}] ${t.name}: ${v}  goal ${t.goal}`);
    lines.push(`           ${t.detail}`);
  }
  return lines.join("\n");
}
