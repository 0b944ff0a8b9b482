/**
 * The targets of issues #2, #8 and #16, each a ratio of two figures measured in the same run.
 * A target that needs an engine or DMA mode not on this branch is `n/a` with the reason.
 *
 * Ratios are paired by round (see `paired.ts`): the median over rounds of the ratio of the two
 * cases' medians in that round, so a slow period of the machine that stretches one pass over the
 * cases cancels out; with several isolates per case (`--isolates K`) the figure of each case's
 * best round in each isolate, then the median over isolates. Files without per-round medians (or
 * whose cases' rounds came from different isolates) fall back to the ratio of min-of-rounds
 * medians. Throughput fractions are time ratios inverted: `fraction = reference / subject`.
 *
 * @module
 */

import { BASE, caseName, type CaseParams, solFor } from "./cases.ts";
import { pairedOf, type PairedRatio, pairedRatio, pairedText } from "./paired.ts";
import type { AllocResult, CaseResult, Target } from "./results.ts";

/** Options of {@link computeTargets}. */
export interface TargetOptions {
  /** Modeled latency of one IOTLB invalidation, ns (a model parameter, not a measurement). */
  invalidationNs: number;
  /** Modeled latency of one virtio-iommu request (MAP/UNMAP round trip to the host), ns. */
  requestNs: number;
  /** This machine's bounce-copy floor (`bench:copy-floor`), when measured in this run. */
  copyFloor?: CopyFloor;
}

/**
 * What the bounce's copies cost on this machine at one payload (`bench/copy_floor.ts`, min of
 * rounds, batch 32, buffers placed as the ring bench places them).
 */
export interface CopyFloor {
  /** Payload bytes per copy. */
  payload: number;
  /** One memmove of the payload: the device's copy every mode pays, ns. */
  copyNs: number;
  /**
   * The bounce's three memmoves per chain (original -> slot on map, the device's copy into the
   * slot, slot -> original on unmap), slots taken next-fit from a 4 MiB pool, ns per chain.
   */
  bounceNs: number;
}

function find(results: readonly CaseResult[], p: Partial<CaseParams>): CaseResult | undefined {
  const name = caseName({ ...BASE, ...p });
  return results.find((r) => r.name === name);
}

function na(name: string, goal: string, why: string): Target {
  return { name, value: null, goal, status: "n/a", detail: why };
}

const f3 = (x: number) => x.toFixed(3);

/** A target whose value is a paired ratio; `more` follows the ratio in the detail. */
function ratioTarget(name: string, goal: string, r: PairedRatio, met: boolean, more: string) {
  const t: Target = {
    name,
    value: r.value,
    goal,
    status: met ? "met" : "missed",
    detail: `${pairedText(r)}; ${more}`,
  };
  return t;
}

/** The engine-vs-speed-of-light line printed at the end of every run (issue #16: >= 0.55). */
export function solTarget(results: readonly CaseResult[]): Target {
  const name = "split 64 B batch 32 vs speed-of-light";
  const goal = ">= 0.55 of SoL (<= 1.82x time)";
  const r = find(results, { engine: "split" });
  const sol = r && results.find((x) => x.name === caseName(solFor(r.params)));
  if (!r || !sol) {
    return na(name, goal, "split ring or its speed-of-light case not measured in this run");
  }
  const p = pairedRatio(sol, r);
  const x = p.value;
  return {
    name,
    value: x,
    goal,
    status: x >= 0.55 ? "met" : "missed",
    detail: `${pairedText(p)} of SoL = ${f3(1 / x)}x time (${r.nsPerChain.toFixed(1)} vs ${
      sol.nsPerChain.toFixed(1)
    } ns/chain, min of rounds); stretch goal <= 1.4x time ${1 / x <= 1.4 ? "met" : "not met"}`,
  };
}

/**
 * A timing target as a smoke run reports it: `met` / `missed` become `info`, since a few short
 * rounds (`--smoke`: 3 x 30 ms in one isolate) cannot judge a ratio whose run-to-run spread is
 * larger than that; `n/a` stays. The value and the detail are kept, behind a note saying so.
 * @param t a target computed from a smoke run's cases.
 * @returns the same target, not judged.
 */
export function indicative(t: Target): Target {
  if (t.status !== "met" && t.status !== "missed") return t;
  return {
    ...t,
    status: "info",
    detail: `smoke run, not judged (would read ${t.status}; judge with --suite lines); ${t.detail}`,
  };
}

/**
 * All targets.
 * @param results this run's cases.
 * @param alloc this run's allocation checks.
 */
export function computeTargets(
  results: readonly CaseResult[],
  alloc: readonly AllocResult[],
  opts: TargetOptions,
): Target[] {
  return [
    solTarget(results),
    ...packedVsSplit(results),
    ...dmaModeTargets(results, opts),
    ...dmaCostTargets(results, opts),
    ...lazyVsStrictTargets(results, opts),
    ...sizeFlatnessTargets(results),
    ...chainFlatnessTargets(results),
    ...allocationTargets(alloc),
  ];
}

/** Packed vs split throughput at the base point (issue #16: at least 0.9). */
function packedVsSplit(results: readonly CaseResult[]): Target[] {
  const name = "packed vs split throughput (base point)";
  const goal = ">= 0.9 (issue #16; PERFORMANCE.md: ~0.9 realistic)";
  const s = find(results, { engine: "split" });
  const p = find(results, { engine: "packed" });
  if (!s || !p) return [na(name, goal, "needs split and packed in this run")];
  const r = pairedRatio(s, p);
  const ns = `packed ${p.nsPerChain.toFixed(1)} vs split ${s.nsPerChain.toFixed(1)} ns/chain`;
  return [ratioTarget(name, goal, r, r.value >= 0.9, `${ns} (min of rounds)`)];
}

/**
 * Issue #16's DMA cost lines: the time of a mapping mode over identity, as the modelled Linux
 * algorithm costs it (swiotlb: a slot search and two copies; dma-iommu strict: an IOVA from the
 * range cache, a page-table map, an IOTLB fill and an invalidation per buffer).
 */
function dmaCostTargets(results: readonly CaseResult[], opts: TargetOptions): Target[] {
  const lines: [string, number, number][] = [
    ["swiotlb", 64, 2],
    ["swiotlb", 1500, 2.5],
    ["iommu-strict", 64, 3],
  ];
  const out: Target[] = [];
  for (const engine of ["split", "packed"] as const) {
    for (const [dma, payload, limit] of lines) {
      const name = `${engine}: ${dma} vs identity time, ${payload} B`;
      const goal = `<= ${limit}x (issue #16)`;
      const id = find(results, { engine, payload });
      const m = find(results, { engine, dma, payload });
      if (!id || !m) {
        out.push(na(name, goal, `needs ${engine} identity and ${dma} at ${payload} B`));
        continue;
      }
      const r = pairedRatio(m, id);
      const ns = `${m.nsPerChain.toFixed(1)} vs ${
        id.nsPerChain.toFixed(1)
      } ns/chain (min of rounds)`;
      out.push(ratioTarget(name, goal, r, r.value <= limit, ns));
      const floor = opts.copyFloor;
      if (dma === "swiotlb" && floor !== undefined && floor.payload === payload) {
        out.push(copyFloorTarget(name, limit, id, m, floor));
      }
    }
  }
  return out;
}

/**
 * The swiotlb line's floor on this machine (info): the ratio swiotlb would read with no mapping
 * software at all, identity's chain with its one payload copy swapped for the bounce's three
 * (next-fit cold slots), and how far swiotlb's chain sits above that.
 */
function copyFloorTarget(
  line: string,
  limit: number,
  id: CaseResult,
  m: CaseResult,
  floor: CopyFloor,
): Target {
  const floorNs = id.nsPerChain - floor.copyNs + floor.bounceNs;
  const value = floorNs / id.nsPerChain;
  return {
    name: `${line}: bounce-copy floor`,
    value,
    goal: "info (the line with no mapping software: identity - one copy + the bounce's three)",
    status: "info",
    detail: `floor ${floorNs.toFixed(1)} ns/chain = identity ${id.nsPerChain.toFixed(1)} - ` +
      `copy ${floor.copyNs.toFixed(1)} + three bounce copies ${floor.bounceNs.toFixed(1)} ` +
      `(bench:copy-floor, min of rounds, measured before the cases: not paired with them, so a ` +
      `slower machine then can put the floor above swiotlb); swiotlb ${
        m.nsPerChain.toFixed(1)
      } ns/chain is ` +
      `${(m.nsPerChain - floorNs).toFixed(1)} above it, and the ${limit}x line leaves ` +
      `${(limit * id.nsPerChain - floorNs).toFixed(1)} ns/chain for all mapping software`,
  };
}

/** IOMMU IOTLB hit vs identity, then every other DMA mode vs identity (info). */
function dmaModeTargets(results: readonly CaseResult[], opts: TargetOptions): Target[] {
  const out: Target[] = [];
  for (const engine of ["split", "packed"] as const) {
    const name = `${engine}: iommu-hit (IOTLB hit path) vs identity`;
    const goal = ">= 0.80 (PERFORMANCE.md: ~0.69 at 64 B realistic)";
    const id = find(results, { engine });
    const hit = find(results, { engine, dma: "iommu-hit" });
    if (!id || !hit) {
      out.push(na(name, goal, `needs ${engine} with identity and iommu-hit in this run`));
      continue;
    }
    const x = pairedRatio(id, hit);
    const ns = `${hit.nsPerChain.toFixed(1)} vs ${id.nsPerChain.toFixed(1)} ns/chain`;
    out.push(ratioTarget(name, goal, x, x.value >= 0.8, `${ns}; ${countersText(hit)}`));
    for (const r of results) {
      const dma = r.params.dma;
      if (
        r.params.engine !== engine || dma === "identity" || dma === "iommu-hit" ||
        r.name !== caseName({ ...BASE, engine, dma })
      ) continue;
      const y = pairedRatio(id, r).value;
      let detail = `${r.nsPerChain.toFixed(1)} vs ${id.nsPerChain.toFixed(1)} ns/chain; ${
        countersText(r)
      }`;
      const req = r.counters["viommuRequests"];
      if (req !== undefined) {
        const perChain = req / r.chainsPerCall;
        const modeled = r.nsPerChain + perChain * opts.requestNs;
        detail += `; MODELED at ${opts.requestNs} ns per virtio-iommu request (--request-ns): ` +
          `${modeled.toFixed(0)} ns/chain = ${(id.nsPerChain / modeled).toFixed(3)} of identity`;
      }
      out.push({
        name: `${engine}: ${dma} vs identity`,
        value: y,
        goal: "info",
        status: "info",
        detail,
      });
    }
  }
  return out;
}

/** IOMMU lazy vs strict: measured and modeled. */
function lazyVsStrictTargets(results: readonly CaseResult[], opts: TargetOptions): Target[] {
  const out: Target[] = [];
  for (const engine of ["split", "packed"] as const) {
    const name = `${engine}: IOMMU lazy vs strict`;
    const goal = ">= 1.5x";
    const strict = results.find((r) =>
      r.params.engine === engine && /strict/.test(r.params.dma) &&
      r.name === caseName({ ...BASE, engine, dma: r.params.dma })
    );
    const lazy = results.find((r) =>
      r.params.engine === engine && /lazy/.test(r.params.dma) &&
      r.name === caseName({ ...BASE, engine, dma: r.params.dma })
    );
    if (!strict || !lazy) {
      out.push(na(name, goal, `needs ${engine} with IOMMU strict and lazy in this run`));
      continue;
    }
    // Issue #16: lazy must be no slower than strict in wall time. Its IOVAs come back through
    // the per-size range cache (Linux iova_rcache) after the flush queue, so it reuses them.
    const wall = pairedRatio(lazy, strict);
    out.push(ratioTarget(
      `${name} (measured wall time, lazy / strict)`,
      "<= 1.0 (issue #16: lazy no slower than strict)",
      wall,
      wall.value <= 1,
      `lazy ${lazy.nsPerChain.toFixed(1)} vs strict ${strict.nsPerChain.toFixed(1)} ns/chain ` +
        "(min of rounds)",
    ));
    const inv = (r: CaseResult) => (r.counters["invalidations"] ?? NaN) / r.chainsPerCall;
    const is = inv(strict), il = inv(lazy);
    if (!Number.isFinite(is) || !Number.isFinite(il)) {
      out.push(na(`${name} (MODELED)`, goal, "the DMA model exposes no invalidation counter"));
      continue;
    }
    const ms = strict.nsPerChain + is * opts.invalidationNs;
    const ml = lazy.nsPerChain + il * opts.invalidationNs;
    const x = ms / ml;
    out.push({
      name: `${name} (MODELED)`,
      value: x,
      goal,
      status: x >= 1.5 ? "met" : "missed",
      detail: `MODELED at ${opts.invalidationNs} ns per invalidation (--invalidation-ns): ` +
        `invalidations/chain strict ${is.toFixed(3)}, lazy ${il.toFixed(3)}; ` +
        `${ms.toFixed(0)} vs ${ml.toFixed(0)} ns/chain`,
    });
  }
  return out;
}

/** Cost per chain flat in queue size. */
function sizeFlatnessTargets(results: readonly CaseResult[]): Target[] {
  const out: Target[] = [];
  for (const engine of ["split", "packed", "sol"] as const) {
    const name = `${engine}: ns/chain flat over queue size`;
    const goal = "max/min <= 1.2 (q64..q32768)";
    const rows = [64, 256, 1024, 4096, 32768]
      .map((size) => find(results, engine === "sol" ? solOf({ size }) : { engine, size }))
      .filter((r): r is CaseResult => r !== undefined);
    if (rows.length < 2) {
      out.push(na(name, goal, `needs the size suite for ${engine}`));
      continue;
    }
    out.push(flatness(name, goal, rows, (r) => r.nsPerChain, (r) => `q${r.params.size}`));
  }
  return out;
}

/** Marginal cost per added descriptor flat over chain length. */
function chainFlatnessTargets(results: readonly CaseResult[]): Target[] {
  const out: Target[] = [];
  // Marginal cost per added descriptor, flat from 2 to 16 descriptors. (Cost per descriptor is
  // not flat from 1 to 16 for any engine, even the speed-of-light loop: every chain has a fixed
  // cost that one descriptor carries alone and sixteen share.)
  for (const engine of ["split", "packed", "sol"] as const) {
    const name = `${engine}: marginal ns per added descriptor flat over chain length`;
    const goal = "max/min <= 1.2 (c2->c4 vs c4->c16)";
    const rows = [1, 2, 4, 16]
      .map((chainLen) =>
        find(
          results,
          engine === "sol" ? solOf({ chainLen, size: 1024 }) : { engine, chainLen, size: 1024 },
        )
      )
      .filter((r): r is CaseResult => r !== undefined);
    const at = (c: number) => rows.find((r) => r.params.chainLen === c);
    const c2 = at(2), c4 = at(4), c16 = at(16);
    if (!c2 || !c4 || !c16) {
      out.push(na(name, goal, `needs the chain suite (c2, c4, c16) for ${engine}`));
      continue;
    }
    // one isolate: the median over rounds of the difference within the round; several: the
    // difference of each case's best round per isolate, then the median over isolates (paired.ts)
    const d1 = pairedOf([c2, c4], ([a, b]) => (b - a) / 2);
    const d2 = pairedOf([c4, c16], ([a, b]) => (b - a) / 12);
    const m1 = d1.value, m2 = d2.value;
    const y = Math.max(m1, m2) / Math.min(m1, m2);
    const ok = Number.isFinite(y) && m1 > 0 && m2 > 0;
    const fit = linearFit(
      rows.map((r) => r.params.chainLen),
      rows.map((r) => r.nsPerChain),
    );
    const how = d1.isolates > 1
      ? `median over ${d1.isolates} isolates of the difference of each case's best round in ` +
        `the isolate; per isolate ${d1.perIsolate.map((x) => x.toFixed(1)).join("/")} ` +
        `vs ${d2.perIsolate.map((x) => x.toFixed(1)).join("/")}`
      : "median over rounds of each round's difference";
    out.push({
      name,
      value: ok ? y : null,
      goal,
      status: !ok ? "n/a" : y <= 1.2 ? "met" : "missed",
      detail: `${m1.toFixed(1)} vs ${m2.toFixed(1)} ns per added descriptor (${how}); fit ` +
        `${fit.intercept.toFixed(1)} ns/chain + ${fit.slope.toFixed(1)} ns/desc (c1..c16)`,
    });
  }
  return out;
}

/** Zero allocation per chain on hot paths. */
function allocationTargets(alloc: readonly AllocResult[]): Target[] {
  const out: Target[] = [];
  for (const a of alloc) {
    if (a.name.startsWith("sol")) continue;
    const x = a.bytesPerChain;
    out.push({
      name: `allocation per chain: ${a.name}`,
      value: x,
      goal: a.hotPath
        ? "0 B/chain (< 1 B/chain allowed for measurement noise)"
        : "info (maps per buffer: not a hot path)",
      status: x === null ? "n/a" : !a.hotPath ? "info" : x < 1 ? "met" : "missed",
      detail: x === null
        ? "inconclusive: a GC ran during every try"
        : `${x.toFixed(2)} B/chain over ${a.chains} chains${
          a.forcedGc ? "" : " (no --expose-gc: approximate)"
        }`,
    });
  }
  return out;
}

function solOf(p: Partial<CaseParams>): Partial<CaseParams> {
  return { engine: "sol", dma: "identity", indirect: false, eventIdx: false, ...p };
}

function flatness(
  name: string,
  goal: string,
  rows: readonly CaseResult[],
  value: (r: CaseResult) => number,
  label: (r: CaseResult) => string,
): Target {
  const vals = rows.map(value);
  const x = Math.max(...vals) / Math.min(...vals);
  return {
    name,
    value: x,
    goal,
    status: x <= 1.2 ? "met" : "missed",
    detail: rows.map((r, i) => `${label(r)} ${vals[i].toFixed(1)}`).join(", ") + " ns",
  };
}

/** Least-squares line `y = intercept + slope * x`. */
export function linearFit(xs: readonly number[], ys: readonly number[]) {
  const n = xs.length;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let sxy = 0, sxx = 0;
  for (let i = 0; i < n; i++) {
    sxy += (xs[i] - mx) * (ys[i] - my);
    sxx += (xs[i] - mx) ** 2;
  }
  const slope = sxx === 0 ? 0 : sxy / sxx;
  return { slope, intercept: my - slope * mx };
}

function countersText(r: CaseResult): string {
  const keys = Object.keys(r.counters);
  if (!keys.length) return "no counters";
  return keys.map((k) => `${k}/chain ${(r.counters[k] / r.chainsPerCall).toFixed(3)}`).join(", ");
}
