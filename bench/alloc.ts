/**
 * Allocation per chain in steady state (house rule: the hot path allocates nothing).
 *
 * Method: warm the round trip up, force a full GC (`gc()`, present with
 * `--v8-flags=--expose-gc`, which `deno task bench` passes), read `Deno.memoryUsage().heapUsed`,
 * run N round trips, read it again. A scavenge in between can only hide allocation (the heap
 * shrinks), so N is small (a few hundred bytes per chain stay below the young generation); a
 * late optimisation can add a one-off allocation, so the warm-up is long (>= 20 000 chains and
 * >= {@link WARM_MS} ms, then up to {@link SETTLE_MS} more until two tries in a row do not
 * allocate: background compilation lands late on a loaded machine) and the median of seven tries
 * is kept; `null` when every try saw the heap shrink
 * (inconclusive). The same measurement around an empty function (the cost of measuring) is
 * subtracted.
 *
 * @module
 */

import type { Benchable } from "./roundtrip.ts";
import { BASE, caseName, type CaseParams } from "./cases.ts";
import type { AllocResult } from "./results.ts";

const gcFn: (() => void) | undefined = (globalThis as { gc?: () => void }).gc;

/** True when `gc()` is exposed. */
export function hasForcedGc(): boolean {
  return typeof gcFn === "function";
}

/** Shortest warm-up before the first try, in milliseconds (the tests' worker warms 400 ms). */
export const WARM_MS = 200;

/** Longest extra warm-up while the round trip still allocates, in milliseconds. */
export const SETTLE_MS = 600;

function heapDelta(run: () => unknown, calls: number): number {
  gcFn?.();
  const h0 = Deno.memoryUsage().heapUsed;
  for (let i = 0; i < calls; i++) run();
  const h1 = Deno.memoryUsage().heapUsed;
  return h1 - h0;
}

/**
 * Measures heap bytes allocated per chain.
 * @param name case name for the report.
 * @param b the round trip.
 * @param chains about how many chains per try (rounded up to whole round trips).
 */
export function measureAlloc(name: string, b: Benchable, chains = 2048): AllocResult {
  const calls = Math.max(1, Math.ceil(chains / b.chainsPerCall));
  // warm: pools filled, code optimised
  const t0 = performance.now();
  for (let n = 0; n < 20_000 || performance.now() - t0 < WARM_MS; n += b.chainsPerCall) b.run();
  const noop = () => 0;
  // Settle: optimised code is compiled on a background thread, so on a loaded machine it can
  // land after the warm-up, and tries that run the baseline tiers' code (which boxes doubles,
  // e.g. bus addresses at or above 2^30) read 16-50 B/chain that the steady state does not have
  // (measured: median 16-33 B/chain after a 50 ms warm-up, 0 after 400 ms, same code; one
  // 16 B/chain reading after a 50 ms warm-up and a single clean settle try). Until
  // two tries in a row stay below 1 B/chain, keep warming, up to SETTLE_MS: a steady allocation
  // is still reported after it.
  const t1 = performance.now();
  let clean = 0;
  while (clean < 2 && performance.now() - t1 < SETTLE_MS) {
    const d = heapDelta(() => b.run(), calls) - Math.max(0, heapDelta(noop, calls));
    if (d >= 0 && d < calls * b.chainsPerCall) clean++; // below 1 B/chain
    else {
      clean = 0;
      for (let n = 0; n < 4096; n += b.chainsPerCall) b.run();
    }
  }
  const tries: number[] = [];
  for (let t = 0; t < 7; t++) {
    const base = Math.max(0, heapDelta(noop, calls));
    const d = heapDelta(() => b.run(), calls);
    if (d >= 0) tries.push(Math.max(0, d - base));
  }
  tries.sort((x, y) => x - y);
  const mid = tries.length ? tries[(tries.length - 1) >> 1] : null;
  return {
    name,
    hotPath: true,
    bytesPerChain: mid === null ? null : mid / (calls * b.chainsPerCall),
    chains: calls * b.chainsPerCall,
    forcedGc: hasForcedGc(),
  };
}

/**
 * DMA modes whose driver maps and unmaps every buffer (IOVA allocation, page tables, bounce
 * slots, virtio-iommu requests): not on the zero-allocation hot path of the house rules, so
 * their figures are reported for information.
 */
export const MAPPING_MODES: readonly string[] = [
  "iommu-strict",
  "iommu-lazy",
  "swiotlb",
  "virtio-iommu",
  "confidential",
  "confidential-iommu",
  // bus addresses at 2^63 are exact u64 bigints (DmaApi's U64 above 2^53): allocation by design
  "window-high",
];

/** True when `p` runs only hot-path code (add, pop, push, get-used, translate on an IOTLB hit). */
export function isHotPath(p: CaseParams): boolean {
  return !MAPPING_MODES.includes(p.dma);
}

/**
 * The cases of the allocation check: the speed-of-light loop and, per layout, the base point;
 * a full run adds indirect tables, event-idx, and every DMA mode.
 */
export function allocCases(smoke: boolean): CaseParams[] {
  const out: CaseParams[] = [{ ...BASE, engine: "sol" }];
  for (const engine of ["split", "packed"] as const) {
    out.push({ ...BASE, engine });
    if (smoke) continue;
    out.push({ ...BASE, engine, chainLen: 4, size: 1024, indirect: true });
    out.push({ ...BASE, engine, eventIdx: true });
    for (
      const dma of [
        "window",
        "iommu-hit",
        "iommu-identity",
        "iommu-strict",
        "iommu-lazy",
        "swiotlb",
        "virtio-iommu",
        "virtio-iommu-long",
        "direct",
        "window-high",
        "window-iommu",
        "confidential",
        "confidential-iommu",
      ]
    ) out.push({ ...BASE, engine, dma });
  }
  return out;
}

/** {@link measureAlloc} for a case, marking whether it is held to the zero-allocation rule. */
export function allocFor(p: CaseParams, b: Benchable): AllocResult {
  return { ...measureAlloc(caseName(p), b), hotPath: isHotPath(p) };
}
