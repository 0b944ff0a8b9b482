/**
 * Benchmark cases: the parameters of one measured round-trip configuration, its stable name, and
 * the suites that pick cases by varying one axis at a time around a base point (no full cross
 * product).
 *
 * A "round trip" is one batch: the driver adds `batch` chains and kicks; the device pops each
 * chain, copies `payload` bytes (loopback: readable part into writable part) and pushes it; the
 * device flushes; the driver collects every used buffer. Chains/s and bytes/s derive from the
 * time of one round trip.
 *
 * @module
 */

/** What runs the ring operations. `sol` is the inlined typed-array speed-of-light loop. */
export type Engine = "sol" | "split" | "packed" | "memcpy";

/** Parameters of one case. */
export interface CaseParams {
  /** Ring engine, or `sol` (speed of light) / `memcpy` (payload copy only). */
  engine: Engine;
  /** DMA mode name (see `bench/engines.ts`); `identity` for `sol` and `memcpy`. */
  dma: string;
  /** Queue Size in descriptors. */
  size: number;
  /** Chains per round trip (added before one kick, collected after one flush). */
  batch: number;
  /** Payload bytes per chain (copied once by the device). */
  payload: number;
  /**
   * Descriptors per chain: 1 = one device-writable descriptor (the device writes the payload from
   * its own buffer); n >= 2 = n/2 readable then n/2 writable descriptors (loopback copy).
   */
  chainLen: number;
  /** Use an indirect table (split §2.7.5.3 / packed §2.8.7) for every chain. */
  indirect: boolean;
  /** Negotiate `VIRTIO_F_EVENT_IDX`. */
  eventIdx: boolean;
}

/**
 * The base point every axis varies around (size 256, batch 32, 64 B). One descriptor
 * per chain, so that batch 256 fits a 256-entry queue.
 */
export const BASE: Readonly<CaseParams> = Object.freeze({
  engine: "split",
  dma: "identity",
  size: 256,
  batch: 32,
  payload: 64,
  chainLen: 1,
  indirect: false,
  eventIdx: false,
});

/** Stable, human-readable name of a case; baselines match cases by it. */
export function caseName(p: CaseParams): string {
  if (p.engine === "memcpy") return `memcpy p${p.payload}`;
  const parts = [
    p.engine === "sol" ? "sol" : `${p.engine}/${p.dma}`,
    `q${p.size}`,
    `b${p.batch}`,
    `p${p.payload}`,
    `c${p.chainLen}`,
  ];
  if (p.indirect) parts.push("ind");
  if (p.eventIdx) parts.push("evidx");
  return parts.join(" ");
}

/** The speed-of-light case with the same ring shape (size, batch, payload, chain length). */
export function solFor(p: CaseParams): CaseParams {
  return {
    engine: "sol",
    dma: "identity",
    size: p.size,
    batch: p.batch,
    payload: p.payload,
    chainLen: p.chainLen,
    indirect: false,
    eventIdx: false,
  };
}

/** Readable and writable descriptor counts for a chain length (see {@link CaseParams.chainLen}). */
export function chainShape(chainLen: number): { readable: number; writable: number } {
  if (chainLen <= 1) return { readable: 0, writable: 1 };
  const readable = chainLen >> 1;
  return { readable, writable: chainLen - readable };
}

/** Sizes of the `n` segments that split `total` bytes (remainder on the last; each >= 1). */
export function segmentSizes(total: number, n: number): number[] {
  const base = Math.max(1, Math.floor(total / n));
  const out: number[] = [];
  for (let i = 0; i < n - 1; i++) out.push(base);
  out.push(Math.max(1, total - base * (n - 1)));
  return out;
}

/** One suite: a named group of cases, with a one-line description for `--help`. */
export interface Suite {
  /** Name used by `--suite`. */
  name: string;
  /** One line for `--help` and the report. */
  description: string;
  /** Its cases (engine cases; matching speed-of-light cases are added by the runner). */
  cases: CaseParams[];
}

/** What is available on this branch: ring engines and DMA modes. */
export interface Availability {
  /** Ring layouts whose engine exists (`split`, `packed`). */
  layouts: readonly ("split" | "packed")[];
  /** DMA mode names that can be benchmarked (always includes `identity` once a ring exists). */
  dmaModes: readonly string[];
}

/** Queue sizes of the size axis (64 .. 32768). */
export const SIZES: readonly number[] = [64, 256, 1024, 4096, 32768];
/** Payloads of the payload axis. */
export const PAYLOADS: readonly number[] = [64, 1500, 65536];
/** Batches of the batch axis. */
export const BATCHES: readonly number[] = [1, 32, 256];
/** Chain lengths of the chain axis. */
export const CHAIN_LENS: readonly number[] = [1, 2, 4, 16];

function v(over: Partial<CaseParams>): CaseParams {
  return { ...BASE, ...over };
}

/**
 * The suites for what is available, one axis varied at a time around {@link BASE}.
 * @param avail engines and DMA modes present on this branch.
 */
export function buildSuites(avail: Availability): Suite[] {
  const suites: Suite[] = [];
  const layouts = avail.layouts;
  const core: CaseParams[] = [];
  for (const engine of layouts.includes("split") ? ["split" as const] : []) {
    for (const batch of BATCHES) {
      for (const payload of [64, 1500]) core.push(v({ engine, batch, payload }));
    }
  }
  suites.push({
    name: "core",
    description: "split, identity DMA, q256: batch 1/32/256 x payload 64/1500 B",
    cases: core,
  });
  const each = (f: (e: "split" | "packed") => CaseParams[]) => layouts.flatMap(f);
  suites.push({
    name: "layout",
    description: "split vs packed at the base point and 1500 B",
    cases: each((engine) => [v({ engine }), v({ engine, payload: 1500 })]),
  });
  suites.push({
    name: "payload",
    description: "payload 64 B / 1500 B / 64 KiB at batch 32, per layout",
    cases: each((engine) => PAYLOADS.map((payload) => v({ engine, payload }))),
  });
  suites.push({
    name: "batch",
    description: "batch 1 / 32 / 256 at 64 B, per layout",
    cases: each((engine) => BATCHES.map((batch) => v({ engine, batch }))),
  });
  suites.push({
    name: "chain",
    description: "chain length 1 / 2 / 4 / 16 descriptors at 64 B, q1024 (16 x 32 must fit)",
    cases: each((engine) => CHAIN_LENS.map((chainLen) => v({ engine, chainLen, size: 1024 }))),
  });
  suites.push({
    name: "indirect",
    description: "direct vs indirect tables at chain length 4 and 16, q1024, per layout",
    cases: each((engine) =>
      [4, 16].flatMap((chainLen) => [
        v({ engine, chainLen, size: 1024 }),
        v({ engine, chainLen, size: 1024, indirect: true }),
      ])
    ),
  });
  suites.push({
    name: "event-idx",
    description: "VIRTIO_F_EVENT_IDX off vs on at the base point, per layout",
    cases: each((engine) => [v({ engine }), v({ engine, eventIdx: true })]),
  });
  suites.push({
    name: "size",
    description: "queue size 64 .. 32768 at batch 32, 64 B, per layout",
    cases: each((engine) => SIZES.map((size) => v({ engine, size }))),
  });
  suites.push({
    name: "dma",
    description:
      "every DMA mode createDmaMode builds (and the bench-only ones), 64 B and 1500 B, per layout",
    cases: each((engine) =>
      avail.dmaModes.flatMap((dma) => [v({ engine, dma }), v({ engine, dma, payload: 1500 })])
    ),
  });
  suites.push({
    name: "sol",
    description: "speed-of-light loop alone: payload, batch, size and chain-length axes",
    cases: [
      ...PAYLOADS.map((payload) => solFor(v({ payload }))),
      ...BATCHES.map((batch) => solFor(v({ batch }))),
      ...SIZES.map((size) => solFor(v({ size }))),
      ...CHAIN_LENS.map((chainLen) => solFor(v({ chainLen, size: 1024 }))),
    ],
  });
  suites.push({
    name: "lines",
    description: "the cases of issue #16's lines only (DMA cost, lazy vs strict, packed vs " +
      "split, SoL, marginal descriptor), each mode next to its identity case",
    cases: each((engine) => [
      ...[64, 1500].flatMap((payload) =>
        ["identity", "swiotlb", "iommu-strict", "iommu-lazy"]
          .filter((dma) => dma === "identity" || avail.dmaModes.includes(dma))
          .map((dma) => v({ engine, dma, payload }))
      ),
      ...CHAIN_LENS.map((chainLen) => v({ engine, chainLen, size: 1024 })),
    ]),
  });
  suites.push({
    name: "memcpy",
    description: "payload memcpy bandwidth (copyWithin) at 64 B / 1500 B / 64 KiB",
    cases: PAYLOADS.map((payload) => ({ ...BASE, engine: "memcpy" as const, payload })),
  });
  return suites;
}

/** The cases of `--smoke`: the target-bearing base point only. */
export function smokeCases(avail: Availability): CaseParams[] {
  const out: CaseParams[] = [solFor(BASE), { ...BASE, engine: "memcpy" }];
  for (const engine of avail.layouts) out.push(v({ engine }));
  return out;
}

/**
 * Selects cases: the union of the named suites (all when none named), then `filter` on the case
 * name, deduplicated, with each engine case's speed-of-light counterpart added.
 * @throws Error naming an unknown suite and listing the known ones.
 */
export function selectCases(
  suites: readonly Suite[],
  names: readonly string[],
  filter: RegExp | null,
): CaseParams[] {
  const picked: Suite[] = [];
  for (const n of names) {
    const s = suites.find((x) => x.name === n);
    if (!s) {
      throw new Error(
        `--suite ${n}: no such suite; known: ${suites.map((x) => x.name).join(", ")}`,
      );
    }
    picked.push(s);
  }
  const from = picked.length ? picked : suites;
  return withSol(from.flatMap((s) => s.cases).filter((c) => !filter || filter.test(caseName(c))));
}

/** Deduplicates by name and adds the speed-of-light counterpart of every ring-engine case. */
export function withSol(cases: readonly CaseParams[]): CaseParams[] {
  const seen = new Map<string, CaseParams>();
  for (const c of cases) {
    if (c.engine === "split" || c.engine === "packed") {
      const s = solFor(c);
      if (!seen.has(caseName(s))) seen.set(caseName(s), s);
    }
    if (!seen.has(caseName(c))) seen.set(caseName(c), c);
  }
  return [...seen.values()];
}
