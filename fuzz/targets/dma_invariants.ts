/**
 * Fuzz target `dma-invariants`: the DMA layers checked against Linux's invariants and an
 * independent reference translation, under allocation regimes `dma-modes` never draws (64-bit
 * masks with IOVAs above 4 GiB up to the IOMMU's address width, sizes that are not powers of two
 * and span more than 32 pages, probes aimed at addresses aliasing a live mapping in their low
 * bits). One part per input:
 *
 * - `iommu`: dma-iommu (strict or lazy, 3 or 4 page-table levels, an IOTLB of 1 to 64 entries,
 *   masks of 20 to 64 bits, SAC first or not) maps, unmaps and has the device probe. Oracles:
 *   `iova-invariant` (the IOVA keeps the buffer's in-page offset, the allocated range is aligned
 *   to its size rounded up to a power of two, lies in `[1, min(mask + 1, 2^width))`, overlaps no
 *   live or reserved range; `iova-exhausted` only when no such range exists: Linux
 *   `iommu_dma_alloc_iova` / `alloc_iova_fast`), and `fault-reason` (every probe translates to the
 *   GPA the reference page map gives, or faults with the reason the reference predicts:
 *   `out-of-window` beyond the width, `reserved-region`, `unmapped`, and `permission` for an
 *   access the mapping's direction forbids; a lazily unmapped IOVA may still translate, to its old
 *   GPA only); `domain-id` (a domain ID that is negative, fractional, above 16 bits or in use
 *   is a RangeError, a free one is taken); a buffer that starts below 2^52 and ends past it is
 *   refused `mask` by the API, the error naming the buffer (`fault-reason`);
 * - `iova`: the IOVA allocator alone with limits up to 2^52 bytes and reserved ranges. Oracles
 *   `iova-invariant` (as above, failure only when no aligned gap exists) and `top-down` (a
 *   fresh allocator's first range is the highest aligned fit below the limit; below 4 GiB, until
 *   a `freeFast`, each range is the highest fit below Linux's cached node (the previous range,
 *   moved up to the next range by a free at or above it, past the top when the freed range was
 *   the highest), else below the limit: Linux's cached-node search); an allocator with a
 *   negative or fractional `startPfn` is refused (`iova-invariant`); above 4 GiB the same
 *   cached-node search (Linux `cached_node`) while every range lands at or above 4 GiB;
 * - `swiotlb`: a bounce pool of 64 to 512 slots. Oracle `swiotlb-invariant` (Linux
 *   `swiotlb_search_pool_area`: a mapping takes `max(1, ceil(len / 2 KiB))` free slots inside
 *   one 128-slot segment, page-aligned (an even slot) when `len >= 4 KiB`, overlapping no live
 *   mapping; `pool-exhausted` only when no such run exists, `too-large` exactly above 256 KiB; the
 *   slot holds the buffer's bytes after the map); also swiotlb as the fallback of a device with
 *   a 21- to 23-bit mask (`force: false`), syncs both ways, and sync misuse (`not-mapped`);
 * - `window`: offset windows at 2^63, at the top of the bus space and across 2^53 (`fault-reason`);
 * - `api`: window-iommu's driver API (dma-direct windows, else the strict dma-iommu) against a
 *   reference dma-direct and the device view, unmap misuse included (`dma-view`, `fault-reason`),
 *   and its path counters (`stats`) against the maps made (`dma-view`);
 * - `viommu-bounce`: swiotlb over the virtio-iommu driver through `assembleDma`
 *   (`swiotlb-invariant`). See {@link runApi} and {@link runViommuBounce}.
 *
 * The target is built by {@link makeDmaInvariantsTarget} over its engine pieces, so tests can run
 * it on a planted copy of an engine file.
 * @module
 */

import fc from "fast-check";
import { z } from "zod";
import {
  assembleDma,
  createDmaMode,
  type DirectDmaApi,
  DMA_ACCESS_READ,
  DMA_ACCESS_WRITE,
  DMA_BIDIRECTIONAL,
  type DmaAddressSpace,
  type DmaApi,
  type DmaDirection,
  DmaFault,
  DmaMapError,
  DmaTranslation,
  type DmaWindow,
  type DmaWindowTable,
  FakeClock,
  type FallbackDmaApi,
  IO_TLB_SEGSIZE,
  IO_TLB_SIZE,
  type Iommu,
  IommuDmaApi,
  IOPTE_READ,
  IovaAllocator,
  type ReversibleDmaApi,
  SWIOTLB_MAX_MAPPING,
  SwiotlbDmaApi,
  translateContiguous,
  WindowAddressSpace,
} from "../../src/dma/mod.ts";
import { GuestMemory, type U64, U64_MAX } from "../../src/memory/mod.ts";
import { createViommuStack } from "../../src/devices/mod.ts";
import { type FuzzTarget, OracleFailure } from "../target.ts";

/** Configuration and steps of the `iommu` part. */
export interface IommuPart {
  part: "iommu";
  lazy: boolean;
  maskBits: number;
  levels: 3 | 4;
  iotlb: number;
  sacFirst: boolean;
  /** `[kind, a, b, c, d]`: 0 map (page, off, len index, dir), 1 unmap (which), 2 probe (which,
   * where, access, alias bit), 3 tick, 4 a map that fails in the page table (page, off, len
   * index, dir; strict only). */
  steps: [number, number, number, number, number][];
}

/** Configuration and steps of the `iova` part. */
export interface IovaPart {
  part: "iova";
  startPfn: number;
  limitBits: number;
  /** Subtracted from `2^limitBits` (limits that are not powers of two). */
  limitLess: number;
  /**
   * `[kind, a, b]`: 0 alloc (pages index), 1 free (which), 2 reserve (position, pages),
   * 3 `freeFast` (which), 4 reserve one PFN inside a live range (which, offset), 5 a range-cache
   * storm (count, size class; the first one drawn runs after the other steps), 6 a stray free
   * (which, where: inside a live range, at a reservation, beyond the limit).
   */
  steps: [number, number, number][];
}

/** Configuration and steps of the `swiotlb` part. */
export interface SwiotlbPart {
  part: "swiotlb";
  slots: number;
  /**
   * 0: bounce every buffer (`force`, the confidential-guest regime). Else swiotlb as Linux's
   * fallback for a device with a DMA mask of this many bits (`force: false` over dma-direct):
   * a buffer below the mask maps directly, one above bounces into a pool below the mask.
   */
  bypassBits?: number;
  /** `[kind, a, b, c]`: 0 map (page, len index, dir), 1 unmap (which), 2 sync a live mapping
   * both ways (which), 3 misuse (which: a sync past its end, or of a mapping already unmapped). */
  steps: [number, number, number, number][];
}

/** Configuration and probes of the `window` part. */
export interface WindowPart {
  part: "window";
  /** Windows `[template, a]`: 0 low, 1 at 2^63, 2 at the top of the bus space, 3 across 2^53. */
  windows: [number, number][];
  /** Probes `[device?, window, edge, length index]`. */
  probes: [boolean, number, number, number][];
}

/** Configuration and steps of the `api` part (the driver's window-iommu API, both paths). */
export interface ApiPart {
  part: "api";
  /** DMA mask width in bits (one of {@link MASK_BITS}). */
  maskBits: number;
  /** Windows `[template, a]`: 0 at 2 GiB + cpu, 1 at 2^63, 2 at the top of the bus space, 3
   * across 2^53, 4 across the DMA mask (all at or above the IOMMU's 2 GiB of IOVAs). */
  windows: [number, number][];
  /**
   * `[kind, window, edge, length/dir index]`: 0 `map`, 1 `mapNumber`, 2 `mapCoherent`, 3 the
   * direct path's `accepts`, 4 unmap the oldest live mapping, 5 misuse a live mapping (the
   * wrong unmap kind, a length past it, a bus address no path owns).
   */
  steps: [number, number, number, number][];
}

/** Configuration and steps of the `viommu-bounce` part (swiotlb over the virtio-iommu driver). */
export interface ViommuBouncePart {
  part: "viommu-bounce";
  slots: number;
  /** `[kind, a, b, c]`: 0 map (page, len index, dir), 1 mapCoherent (page, len index), 2 the
   * device writes a slot, then sync (which), 3 likewise, then unmap (which), 4 an unmap at a
   * bus address never mapped (page). */
  steps: [number, number, number, number][];
}

/** Input of the `dma-invariants` target. */
export type DmaInvariantsInput =
  | IommuPart
  | IovaPart
  | SwiotlbPart
  | WindowPart
  | ApiPart
  | ViommuBouncePart;

/** Buffer lengths: non-powers of two spanning more than 32 pages among them. */
export const IOMMU_LENGTHS = [
  1,
  64,
  4095,
  4096,
  4097,
  3 * 4096,
  31 * 4096 + 1,
  32 * 4096,
  33 * 4096,
  48 * 4096 + 100,
  65 * 4096,
  100 * 4096 - 1,
  129 * 4096,
  255 * 4096 + 7,
  300 * 4096,
];
/** Page counts for the allocator part. */
export const IOVA_PAGES = [1, 2, 3, 5, 7, 8, 31, 32, 33, 48, 63, 64, 65, 100, 255, 257, 513, 1000];
/** Mask widths in bits. */
export const MASK_BITS = [20, 24, 32, 36, 40, 44, 48, 52, 64];
/** swiotlb map lengths (boundaries of slots, pages and the 256 KiB cap). */
export const SWIOTLB_LENGTHS = [
  0,
  1,
  2047,
  2048,
  2049,
  4095,
  4096,
  4097,
  6144,
  8192,
  65537,
  200000,
  SWIOTLB_MAX_MAPPING,
  SWIOTLB_MAX_MAPPING + 1,
];

const MEM_SIZE = 8 * 1024 * 1024;
const POOL_GPA = 4 * 1024 * 1024;
const MSI_LO_PFN = 0xfee00, MSI_HI_PFN = 0xfeeff; // default reserved region (x86 MSI window)

const pow2ceil = (n: number): number => {
  let p = 1;
  while (p < n) p *= 2;
  return p;
};

/** A closed PFN interval. */
type Range = [number, number];

/** The highest `align`-aligned start of `pages` pages in `[lo, top)` avoiding `taken`, or -1. */
export function highestFit(
  taken: readonly Range[],
  pages: number,
  align: number,
  lo: number,
  top: number,
): number {
  const sorted = [...taken].sort((a, b) => b[0] - a[0]); // by start, descending
  let cand = Math.floor((top - pages) / align) * align;
  // walk down: move below any range the candidate overlaps
  for (let guard = 0; guard < 100000 && cand >= lo; guard++) {
    const hit = sorted.find(([a, b]) => a <= cand + pages - 1 && b >= cand);
    if (hit === undefined) return cand;
    cand = Math.floor((hit[0] - pages) / align) * align;
  }
  return -1;
}

function overlaps(taken: readonly Range[], lo: number, hi: number): Range | undefined {
  return taken.find(([a, b]) => a <= hi && b >= lo);
}

// ---------------------------------------------------------------------------------- arbitrary

const nat = (max: number) => fc.nat({ max });

const iommuPart: fc.Arbitrary<IommuPart> = fc.record({
  part: fc.constant("iommu" as const),
  lazy: fc.boolean(),
  maskBits: fc.constantFrom(...MASK_BITS),
  levels: fc.constantFrom(3 as const, 4 as const),
  iotlb: fc.constantFrom(1, 2, 4, 64),
  sacFirst: fc.boolean(),
  steps: fc.array(
    fc.tuple(
      fc.constantFrom(0, 0, 1, 2, 2, 2, 3, 4),
      nat(1023),
      nat(4095),
      nat(63),
      nat(63),
    ),
    { minLength: 1, maxLength: 24 },
  ),
}, { noNullPrototype: true });

const iovaPart: fc.Arbitrary<IovaPart> = fc.record({
  part: fc.constant("iova" as const),
  startPfn: fc.constantFrom(1, 1, 16),
  limitBits: fc.constantFrom(9, 10, 12, 16, 20, 21, 28, 36, 40),
  limitLess: fc.constantFrom(0, 0, 1, 3, 100),
  steps: fc.array(fc.tuple(fc.constantFrom(0, 0, 0, 1, 2, 3, 4, 5, 6), nat(1023), nat(1023)), {
    minLength: 1,
    maxLength: 30,
  }),
}, { noNullPrototype: true });

const swiotlbPart: fc.Arbitrary<SwiotlbPart> = fc.record({
  part: fc.constant("swiotlb" as const),
  slots: fc.constantFrom(64, 128, 200, 300, 512),
  bypassBits: fc.constantFrom(0, 0, 0, 21, 22, 23),
  steps: fc.array(fc.tuple(fc.constantFrom(0, 0, 0, 1, 2, 3), nat(1023), nat(1023), nat(2)), {
    minLength: 1,
    maxLength: 30,
  }),
}, { noNullPrototype: true });

const windowPart: fc.Arbitrary<WindowPart> = fc.record({
  part: fc.constant("window" as const),
  windows: fc.array(fc.tuple(nat(3), nat(1023)), { minLength: 1, maxLength: 3 }),
  probes: fc.array(fc.tuple(fc.boolean(), nat(7), nat(15), nat(7)), {
    minLength: 1,
    maxLength: 16,
  }),
}, { noNullPrototype: true });

const apiPart: fc.Arbitrary<ApiPart> = fc.record({
  part: fc.constant("api" as const),
  maskBits: fc.constantFrom(...MASK_BITS),
  windows: fc.array(fc.tuple(nat(4), nat(1023)), { minLength: 1, maxLength: 3 }),
  steps: fc.array(fc.tuple(fc.constantFrom(0, 0, 1, 1, 2, 3, 4, 5), nat(7), nat(15), nat(63)), {
    minLength: 1,
    maxLength: 24,
  }),
}, { noNullPrototype: true });

const viommuBouncePart: fc.Arbitrary<ViommuBouncePart> = fc.record({
  part: fc.constant("viommu-bounce" as const),
  slots: fc.constantFrom(16, 64, 128),
  steps: fc.array(
    fc.tuple(fc.constantFrom(0, 0, 0, 1, 2, 3, 3, 4), nat(1023), nat(1023), nat(255)),
    {
      minLength: 1,
      maxLength: 16,
    },
  ),
}, { noNullPrototype: true });

// ---------------------------------------------------------------------------------- engine seam

/** The engine pieces the target drives (the real ones by default; a planted copy in tests). */
export interface DmaInvariantsEngine {
  /** Builds the allocator of the `iova` part. */
  newAllocator(
    startPfn: number,
  ):
    & Pick<IovaAllocator, "alloc" | "free" | "reserve">
    & Partial<Pick<IovaAllocator, "allocFast" | "freeFast" | "rangeCount">>;
  /** Wraps the IOMMU mode's views (identity by default). */
  wrapIommu(api: DmaApi, space: DmaAddressSpace): { api: DmaApi; space: DmaAddressSpace };
  /** The swiotlb class. */
  Swiotlb: typeof SwiotlbDmaApi;
  /** The device view and window table of the `window` part. */
  newWindows(windows: DmaWindow[]): { space: DmaAddressSpace; table: DmaWindowTable };
  /** The driver API and device view of the `api` part (window-iommu by default). */
  newWindowIommu(
    windows: DmaWindow[],
    mask: U64,
  ): {
    api: ReversibleDmaApi;
    primary: DirectDmaApi;
    space: DmaAddressSpace;
    /** The API's path counters (FallbackDmaApi `stats`), when it keeps them. */
    stats?: { readonly direct: number; readonly fallback: number };
  };
  /** The driver API (swiotlb over the virtio-iommu driver), device view and bounce layer of the
   * `viommu-bounce` part. */
  newViommuBounce(
    memory: GuestMemory,
    slots: number,
  ): { api: DmaApi; space: DmaAddressSpace; sw: SwiotlbDmaApi };
}

/** The real engine. */
export const REAL_DMA_INVARIANTS_ENGINE: DmaInvariantsEngine = {
  newAllocator: (startPfn) => new IovaAllocator({ startPfn }),
  wrapIommu: (api, space) => ({ api, space }),
  Swiotlb: SwiotlbDmaApi,
  newWindows: (windows) => {
    const space = new WindowAddressSpace(windows);
    return { space, table: space.table };
  },
  newWindowIommu: (windows, mask) => {
    const mode = createDmaMode("window-iommu", mem(), { windows, mask });
    const api = mode.api as FallbackDmaApi;
    return { api, primary: api.primary, space: mode.space, stats: api.stats };
  },
  newViommuBounce: (memory, slots) => realViommuBounce(memory, slots),
};

let memory: GuestMemory | null = null;
const mem = (): GuestMemory => {
  if (memory === null) {
    memory = GuestMemory.flat(MEM_SIZE);
    const pattern = new Uint8Array(POOL_GPA);
    for (let i = 0; i < pattern.length; i++) pattern[i] = (i * 31 + (i >> 12)) & 255;
    memory.write(0, pattern);
  }
  return memory;
};

const n = z.int().nonnegative();
/** zod schema of {@link DmaInvariantsInput} (corpus entries). */
export const DmaInvariantsInputSchema = z.discriminatedUnion("part", [
  z.strictObject({
    part: z.literal("iommu"),
    lazy: z.boolean(),
    maskBits: z.int().min(12).max(64),
    levels: z.union([z.literal(3), z.literal(4)]),
    iotlb: z.int().positive(),
    sacFirst: z.boolean(),
    steps: z.array(z.tuple([n, n, n, n, n])),
  }),
  z.strictObject({
    part: z.literal("iova"),
    startPfn: n,
    limitBits: z.int().min(1).max(40),
    limitLess: n,
    steps: z.array(z.tuple([n, n, n])),
  }),
  z.strictObject({
    part: z.literal("window"),
    windows: z.array(z.tuple([n, n])).min(1),
    probes: z.array(z.tuple([z.boolean(), n, n, n])),
  }),
  z.strictObject({
    part: z.literal("viommu-bounce"),
    slots: z.int().min(1).max(512),
    steps: z.array(z.tuple([n, n, n, n])),
  }),
  z.strictObject({
    part: z.literal("api"),
    maskBits: z.int().min(12).max(64),
    windows: z.array(z.tuple([n, n])).min(1),
    steps: z.array(z.tuple([n, n, n, n])),
  }),
  z.strictObject({
    part: z.literal("swiotlb"),
    slots: z.int().positive().max(4096),
    bypassBits: z.int().min(0).max(52).optional(),
    steps: z.array(z.tuple([n, n, n, n])),
  }),
]);

// ---------------------------------------------------------------------------------- iommu part

interface Live {
  bus: number;
  gpa: number;
  len: number;
  dir: DmaDirection;
  pfn: number;
  pages: number; // mapped pages
  allocPages: number; // allocated IOVA pages
}

const fail = (oracle: string, msg: string, cause?: unknown): never => {
  throw new OracleFailure(oracle, msg, cause);
};
const hex = (n: number) => `0x${n.toString(16)}`;

/**
 * A live mapping of 2 to 8 pages maps one contiguous GPA buffer: `translateContiguous` of
 * the whole buffer, in an access its direction allows, gives the buffer's GPA in one piece (the
 * IOMMU extends a translation across the pages a walk finds contiguous; oracle `fault-reason`).
 */
function checkWholeMapping(space: DmaAddressSpace, m: Live, out: DmaTranslation): void {
  if (m.pages < 2 || m.pages > 8) return; // (a 2 MiB mapping would walk 512 pages per probe)
  const access = m.dir === 2 ? DMA_ACCESS_WRITE : DMA_ACCESS_READ;
  let got: string;
  try {
    got = `ok:${translateContiguous(space, m.bus, m.len, access, out)}`;
  } catch (e) {
    if (!(e instanceof DmaFault)) throw e;
    got = e.reason;
  }
  if (got !== `ok:${m.gpa}`) {
    fail(
      "fault-reason",
      `translateContiguous of the live mapping ${hex(m.bus)}+${m.len} (${m.pages} pages): ` +
        `${got}, want ok:${m.gpa}`,
    );
  }
}

function runIommu(input: IommuPart, engine: DmaInvariantsEngine): void {
  const clock = new FakeClock();
  const mask = input.maskBits === 64 ? 0xffff_ffff_ffff_ffffn : 2 ** input.maskBits - 1;
  const mode = createDmaMode(input.lazy ? "iommu-lazy" : "iommu-strict", mem(), {
    mask,
    levels: input.levels,
    iotlbCapacity: input.iotlb,
    sacFirst: input.sacFirst,
    clock,
  });
  const { api, space } = engine.wrapIommu(mode.api, mode.space);
  // one run in four (a refused ID costs an Error with its stack, a domain a page table)
  if (input.steps.length % 4 === 1) checkDomainIds(mode.iommu!, input.steps[0]);
  // one run in four: a buffer whose GPA is below 2^52 and whose end crosses it (oracle
  // `fault-reason`: refused `mask`, nothing mapped)
  else if (input.steps.length % 4 === 2) checkBeyond52(api, input.steps[0]);
  const width = mode.iommu!.addressWidth;
  const iovaLimit = 2 ** width;
  const r: IommuRun = {
    mode,
    api,
    space,
    width,
    iovaLimit,
    limitPfn: Math.min(
      input.maskBits >= 52 ? Infinity : 2 ** (input.maskBits - 12),
      iovaLimit / 4096,
    ),
    live: [],
    dead: [],
    out: new DmaTranslation(),
    reserved: iovaLimit > MSI_LO_PFN * 4096 ? [[MSI_LO_PFN, MSI_HI_PFN]] : [],
  };
  const { live, dead } = r;
  for (const [kind, a, b, c, d] of input.steps) {
    if (kind === 0) iommuMapStep(r, a, b, c, d);
    else if (kind === 1) {
      if (live.length === 0) continue;
      const m = live.splice(a % live.length, 1)[0];
      api.unmap(m.bus, m.len, m.dir);
      if (input.lazy) dead.push(m);
    } else if (kind === 2) iommuProbeStep(r, a, b, c, d);
    else if (kind === 4) {
      if (input.lazy || !(mode.api instanceof IommuDmaApi)) continue;
      mapFailingInTable(mode.api, api, live, a, b, c, d);
    } else {
      clock.advance(11);
      mode.tick();
      // after a flush the stale entries are gone for good: forget the ones that were flushed
      for (let i = dead.length - 1; i >= 0; i--) if (!mode.isStale(dead[i].bus)) dead.splice(i, 1);
    }
  }
}

/** One run of the `iommu` part: the mode under test and the reference's view of its IOVAs. */
interface IommuRun {
  readonly mode: ReturnType<typeof createDmaMode>;
  readonly api: DmaApi;
  readonly space: DmaAddressSpace;
  /** IOMMU address width (bits) and 2^width. */
  readonly width: number;
  readonly iovaLimit: number;
  /** First IOVA page number the allocator may not hand out (mask and width). */
  readonly limitPfn: number;
  readonly live: Live[];
  /** Unmapped (lazy: possibly still in the IOTLB until a flush). */
  readonly dead: Live[];
  readonly out: DmaTranslation;
  /** The MSI window's page numbers, when inside the width. */
  readonly reserved: Range[];
}

/**
 * Step 0: a map (one in sixteen a 2 MiB-aligned 2 MiB buffer, a large leaf when the IOVA
 * allows). Oracle `iova-invariant`: the IOVA keeps the in-page offset, is aligned to its
 * allocation's power of two, lies in [1, limitPfn) and overlaps nothing live or reserved; an
 * `iova-exhausted` refusal only when no such range fits.
 */
function iommuMapStep(r: IommuRun, a: number, b: number, c: number, d: number): void {
  const huge = c % 16 === 15;
  const len = huge ? 0x20_0000 : IOMMU_LENGTHS[c % IOMMU_LENGTHS.length];
  const off = huge ? 0 : b % 4096;
  const gpa = huge ? 0x20_0000 : Math.min(a, 600) * 4096 + off;
  const dir = (d % 3) as DmaDirection;
  const pages = Math.max(1, Math.ceil((off + len) / 4096));
  const allocPages = pages < 32 ? pow2ceil(pages) : pages;
  const align = pow2ceil(allocPages);
  const taken: Range[] = [
    ...r.reserved,
    ...r.live.map((m): Range => [m.pfn, m.pfn + m.allocPages - 1]),
  ];
  let bus: number;
  try {
    bus = Number(r.api.map(gpa, len, dir));
  } catch (e) {
    if (e instanceof DmaMapError && e.reason === "iova-exhausted") {
      const fit = highestFit(taken, allocPages, align, 1, r.limitPfn);
      if (fit >= 0) {
        fail(
          "iova-invariant",
          `map of ${len} bytes refused iova-exhausted, yet ${allocPages} pages fit at pfn ${
            hex(fit)
          }`,
          e,
        );
      }
      return;
    }
    throw e;
  }
  const pfn = Math.floor(bus / 4096);
  if (bus % 4096 !== off) fail("iova-invariant", `IOVA ${hex(bus)} lost in-page offset ${off}`);
  if (pfn % align !== 0) {
    fail(
      "iova-invariant",
      `IOVA pfn ${hex(pfn)} of ${allocPages} pages not aligned to ${align}`,
    );
  }
  if (pfn < 1 || pfn + allocPages > r.limitPfn) {
    fail("iova-invariant", `IOVA pfn ${hex(pfn)}+${allocPages} outside [1, ${hex(r.limitPfn)})`);
  }
  const o = overlaps(taken, pfn, pfn + allocPages - 1);
  if (o !== undefined) {
    fail(
      "iova-invariant",
      `IOVA pfn ${hex(pfn)}+${allocPages} overlaps [${hex(o[0])}, ${hex(o[1])}]`,
    );
  }
  r.live.push({ bus, gpa, len, dir, pfn, pages, allocPages });
}

/**
 * Step 2: a device access at a probe address (inside a live or dead mapping, aliased in the
 * high bits, nearby, or anywhere) against the reference translation. Oracle `fault-reason`:
 * the GPA or fault reason the reference gives, or (lazy) what a stale IOTLB entry gives while
 * the mode says the IOVA is stale.
 */
function iommuProbeStep(r: IommuRun, a: number, b: number, c: number, d: number): void {
  const { live, dead, out } = r;
  const access = c % 2 === 0 ? DMA_ACCESS_READ : DMA_ACCESS_WRITE;
  let probe: number;
  const base = live.length > 0
    ? live[a % live.length]
    : dead.length > 0
    ? dead[a % dead.length]
    : null;
  const where = b % 4;
  if (base === null || where === 3) {
    probe = (a * 4096 * 977 + b) % (r.iovaLimit * 2); // anywhere, beyond the width too
  } else {
    const inside = base.pfn * 4096 + ((b * 97) % (base.pages * 4096));
    if (where === 0) probe = inside;
    else if (where === 1) probe = inside + 2 ** (32 + (d % 21)); // aliases in the low bits
    else probe = (inside % 2 ** 32) + 2 ** (12 + (d % 40)) * (1 + (c % 3)); // nearby pages, high bits
  }
  if (where === 0 && live.length > 0) checkWholeMapping(r.space, live[a % live.length], out);
  if (probe >= 2 ** 53) return;
  // reference translation
  const pfn = Math.floor(probe / 4096);
  let expect: string; // "ok:<gpa>" or a fault reason
  let stale = ""; // what a stale IOTLB entry (lazy window) may answer instead
  let s0: Live | undefined;
  const outcome = (m: Live): string => {
    const perm = m.dir === 1 ? DMA_ACCESS_READ : m.dir === 2 ? DMA_ACCESS_WRITE : 3;
    const gpa = m.gpa - (m.gpa % 4096) + (probe - m.pfn * 4096);
    return (access & ~perm) !== 0 ? "permission" : `ok:${gpa}`;
  };
  const m = live.find((x) => pfn >= x.pfn && pfn < x.pfn + x.pages);
  if (probe >= r.iovaLimit) expect = "out-of-window";
  else if (pfn >= MSI_LO_PFN && pfn <= MSI_HI_PFN) expect = "reserved-region";
  else if (m !== undefined) expect = outcome(m);
  else {
    expect = "unmapped";
    s0 = dead.find((x) => pfn >= x.pfn && pfn < x.pfn + x.pages);
    if (s0 !== undefined) stale = outcome(s0);
  }
  const len = 1 + (c % 8);
  let got: string;
  try {
    r.space.translate(probe, len, access, out);
    got = `ok:${out.gpa}`;
    if (out.length < 1 || out.length > len) {
      fail(
        "fault-reason",
        `translate of ${len} bytes at ${hex(probe)} gave length ${out.length}`,
      );
    }
  } catch (e) {
    if (!(e instanceof DmaFault)) throw e;
    got = e.reason;
    // The fault names the bus address the device used (the probe: one page translated).
    if (got === "unmapped" && expect === "unmapped" && Number(e.bus) !== probe) {
      fail("fault-reason", `unmapped fault at ${hex(probe)} reports bus ${hex(Number(e.bus))}`);
    }
  }
  if (got !== expect && got === stale && got.startsWith("ok:") && s0 !== undefined) {
    // a translation through a stale IOTLB entry: the mode must say the IOVA is stale
    if (!r.mode.isStale(s0.bus)) {
      fail(
        "fault-reason",
        `stale translation at ${hex(probe)}, yet isStale(${hex(s0.bus)}) is false`,
      );
    }
  }
  if (got !== expect && got !== stale) {
    fail(
      "fault-reason",
      `device ${access === 1 ? "read" : "write"} at ${
        hex(probe)
      }: expected ${expect}, got ${got} ` +
        `(width ${r.width}, ${live.length} live mappings)`,
    );
  }
}

/**
 * Step 4 of the `iommu` part (strict): a map whose IOVA allocation succeeds and whose page-table
 * update fails, Linux `iommu_dma_map_page` -> `iommu_map` failing -> `iommu_dma_free_iova`. A
 * buffer is mapped and unmapped (its IOVA goes to the range cache, the next map of that size
 * takes it again), a conflicting mapping is put in the domain's page table at that IOVA behind
 * the DMA API's back, and the map is retried: it must fail `overlap`, and leave the IOVA space as
 * it was (`iova-invariant`): the IOVA it took is not live (a sync there is refused `not-mapped`),
 * and once the conflict is gone the same map succeeds, in a range that overlaps no live one.
 */
function mapFailingInTable(
  raw: IommuDmaApi,
  api: DmaApi,
  live: Live[],
  a: number,
  b: number,
  c: number,
  d: number,
): void {
  const len = IOMMU_LENGTHS[c % IOMMU_LENGTHS.length];
  const off = b % 4096;
  const gpa = Math.min(a, 600) * 4096 + off;
  const dir = (d % 3) as DmaDirection;
  let first: number;
  try {
    first = Number(api.map(gpa, len, dir));
  } catch (e) {
    if (e instanceof DmaMapError && e.reason === "iova-exhausted") return;
    throw e;
  }
  api.unmap(first, len, dir);
  const iova = first - off;
  raw.iommu.map(raw.domain, iova, 0x7000, 4096, IOPTE_READ);
  let bus = -1;
  try {
    bus = Number(api.map(gpa, len, dir));
  } catch (e) {
    if (!(e instanceof DmaMapError) || e.reason !== "overlap") throw e;
  }
  try {
    if (bus >= 0) {
      // The range cache handed out another IOVA (one below 4 GiB first): nothing failed.
      api.unmap(bus, len, dir);
      return;
    }
    let synced = true;
    try {
      api.syncForCpu(first, len, dir);
    } catch (e) {
      if (!(e instanceof DmaMapError) || e.reason !== "not-mapped") throw e;
      synced = false;
    }
    if (synced) {
      fail(
        "iova-invariant",
        `a map that failed in the page table left its IOVA ${hex(first)} live (sync accepted)`,
      );
    }
  } finally {
    raw.iommu.unmap(raw.domain, iova, 4096);
  }
  const again = Number(api.map(gpa, len, dir));
  const pfn = Math.floor(again / 4096);
  const pages = Math.max(1, Math.ceil((off + len) / 4096));
  const allocPages = pages < 32 ? pow2ceil(pages) : pages;
  const o = live.find((m) => pfn < m.pfn + m.allocPages && m.pfn < pfn + allocPages);
  if (o !== undefined) {
    fail("iova-invariant", `after a failed map, IOVA pfn ${hex(pfn)} overlaps a live mapping`);
  }
  live.push({ bus: again, gpa, len, dir, pfn, pages, allocPages });
}

// ---------------------------------------------------------------------------------- iova part

/**
 * dma-iommu maps GPAs below 2^52 only (the page-table entry's address field): a buffer that
 * starts below 2^52 and ends 1 to 8192 bytes past it (`map`, `mapNumber` or `mapCoherent`) is
 * refused with DmaMapError `mask` by the DMA API itself, the error naming what the driver passed
 * (`address` the buffer's first byte, `length` its length, `mode` the API's name: not the page
 * table's page-rounded range; oracle `fault-reason`).
 */
function checkBeyond52(api: DmaApi, [, a, b, c]: readonly number[]): void {
  const gpa = 2 ** 52 - 1 - (a * 4 + (b % 4)) % 4096 - 4096 * (c % 2);
  const len = 2 ** 52 - gpa + 1 + ((a * 8 + b) % 8192);
  let got = "mapped";
  try {
    const how = (a + b) % 3;
    if (how === 0) api.map(gpa, len, DMA_BIDIRECTIONAL);
    else if (how === 1 && api.mapNumber !== undefined) api.mapNumber(gpa, len, 1);
    else api.mapCoherent(gpa, len);
  } catch (e) {
    if (!(e instanceof DmaMapError)) throw e;
    got = `${e.reason} in ${e.mode}: ${e.length} bytes at ${hex(Number(e.address))}`;
  }
  const want = `mask in ${api.name}: ${len} bytes at ${hex(gpa)}`;
  if (got !== want) fail("fault-reason", `map past 2^52: ${got}, want ${want}`);
}

/** Domain IDs `Iommu.createDomain` must refuse: not integers, negative, above 16 bits. */
const BAD_DOMAIN_IDS = [-1, -0x10000, 1.5, -2.5, 0x10000, NaN, Infinity, 2 ** 53];

/**
 * VT-d domain IDs are 16-bit (`did`): a hostile or buggy caller's ID outside `[0, 0xffff]`, not
 * an integer, or already in use is a RangeError, and a free one is accepted (oracle
 * `domain-id`). One bad ID per input (drawn from the first step), plus the ID in use.
 */
function checkDomainIds(
  iommu: Iommu,
  [, a, b]: readonly number[],
): void {
  const bad = [BAD_DOMAIN_IDS[a % BAD_DOMAIN_IDS.length]];
  const free = 0x100 + (b % 0xff00);
  const d = iommu.createDomain("paged", free);
  if (d.id !== free) fail("domain-id", `createDomain(${free}) made domain ${d.id}`);
  bad.push(free);
  for (const id of bad) {
    let threw: unknown = null;
    try {
      iommu.createDomain("paged", id);
    } catch (e) {
      threw = e;
    }
    if (!(threw instanceof RangeError)) {
      fail("domain-id", `createDomain(${id}) ${threw === null ? "accepted it" : `threw ${threw}`}`);
    }
  }
  iommu.destroyDomain(d);
}

/** `startPfn`s an allocator must refuse (negative, fractional, not a safe integer). */
const BAD_START_PFNS = [-1, -16, 0.5, 1.25, NaN, Infinity, 2 ** 53, -(2 ** 53)];

function runIova(input: IovaPart, engine: DmaInvariantsEngine): void {
  // Linux init_iova_domain takes an unsigned long start_pfn: the model refuses anything else
  // with a RangeError (oracle `iova-invariant`).
  // (one run in four: a refusal costs an Error with its stack)
  if (input.steps.length % 4 === 1) {
    const badStart = BAD_START_PFNS[(input.steps.length >> 2) % BAD_START_PFNS.length];
    let refused: unknown = null;
    try {
      engine.newAllocator(badStart);
    } catch (e) {
      refused = e;
    }
    if (!(refused instanceof RangeError)) {
      fail("iova-invariant", `allocator with startPfn ${badStart} was not refused (${refused})`);
    }
  }
  const limit = Math.max(input.startPfn + 1, 2 ** input.limitBits - input.limitLess);
  const r = new IovaRun(engine.newAllocator(input.startPfn), input.startPfn, limit);
  for (const st of input.steps) r.step(st);
  const live = r.live;
  // Tail (below 4 GiB, no freeFast): free the lowest live range, then the highest, then take one
  // page. The record beyond the last one is then stale (the highest range's copy), and freeing
  // the highest range must move the cached node past the top, not to that stale copy.
  if ((r.exact || r.high) && !r.fastFreed && live.length >= 2) {
    const los = live.map((x) => x[0]);
    r.step([1, los.indexOf(Math.min(...los)), 0]);
    const his = live.map((x) => x[0]);
    r.step([1, his.indexOf(Math.max(...his)), 0]);
    r.step([0, 0, 0]);
  }
  const alloc = r.alloc;
  if (r.storm !== undefined && alloc.allocFast !== undefined && alloc.freeFast !== undefined) {
    rcacheStorm(
      alloc as Required<typeof alloc>,
      input.startPfn,
      limit,
      live,
      r.reserved,
      ...r.storm,
    );
  }
}

/** The `iova` part's allocator under test and the reference's view of its ranges. */
class IovaRun {
  readonly live: Range[] = [];
  readonly reserved: Range[] = [];
  /** Ranges given to `freeFast`: cached (still in the tree) or freed; either way not live. */
  readonly cached: Range[] = [];
  freed = false;
  fastFreed = false;
  storm: [number, number] | undefined;
  last = -1;
  /** One cached node (Linux cached32_node). */
  readonly exact: boolean;
  /**
   * Above 4 GiB Linux keeps the other cached node (cached_node) the same way, as long as every
   * range lands at or above 4 GiB (a range below it would update cached32_node instead:
   * __cached_rbnode_insert_update goes by the range's pfn_hi, the model by the limit).
   */
  high: boolean;
  /**
   * The cached node as Linux keeps it (below 4 GiB, until a freeFast leaves ranges in the tree
   * the model cannot place): the last allocation; a free at or above it moves it to the next
   * higher range in the tree, or past the top (the anchor) when the freed range was the highest
   * (__cached_rbnode_delete_update: rb_next of the freed node).
   */
  node = Infinity;

  constructor(
    readonly alloc: ReturnType<DmaInvariantsEngine["newAllocator"]>,
    readonly startPfn: number,
    readonly limit: number,
  ) {
    this.exact = limit <= 2 ** 20;
    this.high = limit > 2 ** 20;
  }

  /** One step `[kind, a, b]` (see {@link IovaPart.steps}). */
  step([kind, a, b]: readonly number[]): void {
    if (kind === 0) this.allocStep(a);
    else if (kind === 1) this.freeStep(a);
    else if (kind === 3) {
      // Linux free_iova_fast: caches or frees the live range; it always finds it.
      const live = this.live, alloc = this.alloc;
      if (live.length === 0 || alloc.freeFast === undefined) return;
      const r = live.splice(a % live.length, 1)[0];
      if (!alloc.freeFast(r[0])) {
        fail("iova-invariant", `freeFast of live pfn ${hex(r[0])} found nothing`);
      }
      this.cached.push(r);
      this.freed = true;
      this.fastFreed = true;
    } else if (kind === 5) {
      // The first storm drawn runs after the other steps (its tree searches move the cached
      // node, after which top-down is owed no more).
      this.storm ??= [a, b];
    } else if (kind === 6) this.strayFreeStep(a, b);
    else if (kind === 4) this.reserveInsideStep(a, b);
    else this.reserveStep(a, b);
  }

  /**
   * Step 0: an allocation of `IOVA_PAGES[a]` pages. Oracles `iova-invariant` (aligned, inside
   * [startPfn, limit), overlapping nothing; refused only when nothing fits) and `top-down`
   * (where Linux's search below the cached node puts it, while the model can place it).
   */
  allocStep(a: number): void {
    const { live, reserved, cached, alloc, limit, startPfn } = this;
    const pages = IOVA_PAGES[a % IOVA_PAGES.length];
    const align = pow2ceil(pages);
    const taken = [...live, ...reserved];
    const pfn = alloc.alloc(pages, limit);
    // A range handed to freeFast may still sit in the tree: a fit must avoid it to be owed.
    const highest = highestFit([...taken, ...cached], pages, align, startPfn, limit);
    if (pfn < 0) {
      if (highest >= 0) {
        fail(
          "iova-invariant",
          `alloc of ${pages} pages below ${hex(limit)} failed, yet pfn ${hex(highest)} fits`,
        );
      }
      return;
    }
    if (pfn % align !== 0) {
      fail("iova-invariant", `pfn ${hex(pfn)} of ${pages} pages not aligned to ${align}`);
    }
    if (pfn < startPfn || pfn + pages > limit) {
      fail("iova-invariant", `pfn ${hex(pfn)}+${pages} outside [${startPfn}, ${hex(limit)})`);
    }
    const o = overlaps(taken, pfn, pfn + pages - 1);
    if (o !== undefined) {
      fail("iova-invariant", `pfn ${hex(pfn)}+${pages} overlaps [${hex(o[0])}, ${hex(o[1])}]`);
    }
    if (pfn < 2 ** 20) this.high = false;
    const { exact, high, node } = this;
    if ((!this.freed && (this.last < 0 || exact)) || ((exact || high) && !this.fastFreed)) {
      const below = node < limit ? highestFit(taken, pages, align, startPfn, node) : -1;
      const want = below >= 0 ? below : highest;
      if (pfn !== want) {
        fail(
          "top-down",
          `alloc of ${pages} pages gave pfn ${hex(pfn)}, the top-down search below the ` +
            `cached node ${node === Infinity ? "(top)" : hex(node)} gives ${hex(want)}`,
        );
      }
    }
    this.last = pfn;
    this.node = pfn;
    live.push([pfn, pfn + pages - 1]);
    for (let k = cached.length - 1; k >= 0; k--) {
      if (cached[k][1] >= pfn && cached[k][0] <= pfn + pages - 1) cached.splice(k, 1);
    }
  }

  /** Step 1: frees a live range; the cached node moves as Linux moves it. */
  freeStep(a: number): void {
    const live = this.live;
    if (live.length === 0) return;
    const [lo] = live.splice(a % live.length, 1)[0];
    if (!this.alloc.free(lo)) fail("iova-invariant", `free of live pfn ${hex(lo)} found nothing`);
    this.freed = true;
    if (lo >= this.node) {
      let node = Infinity;
      for (const r of [...live, ...this.reserved, ...this.cached]) {
        if (r[0] > lo && r[0] < node) node = r[0];
      }
      this.node = node;
    }
  }

  /**
   * Step 6: free / freeFast of a PFN that starts no live range (inside one, a reservation's
   * start, beyond the limit) find nothing and change nothing (Linux find_iova finds no node; a
   * reservation is never handed back by a stray free).
   */
  strayFreeStep(a: number, b: number): void {
    const alloc = this.alloc;
    const pick = b % 3;
    const from = pick === 0 ? this.live : this.reserved;
    const r = from.length > 0 ? from[a % from.length] : undefined;
    const pfn = pick === 2
      ? this.limit + (a % 5)
      : r === undefined
      ? -1
      : r[0] + (pick === 0 ? 1 : 0);
    if (pfn < 0 || (pick === 0 && r![1] === r![0])) return;
    const before = alloc.rangeCount;
    const fast = a % 2 === 1 && alloc.freeFast !== undefined;
    const got = fast ? alloc.freeFast!(pfn) : alloc.free(pfn);
    if (got || alloc.rangeCount !== before) {
      fail(
        "iova-invariant",
        `${fast ? "freeFast" : "free"} of pfn ${hex(pfn)} (${
          ["inside a live range", "a reservation's start", "beyond the limit"][pick]
        }) returned ${got}, ranges ${before} -> ${alloc.rangeCount}`,
      );
    }
  }

  /**
   * Step 4: Linux reserve_iova over a range an allocation covers entirely inserts nothing
   * (__adjust_overlap_range, then `goto finish`).
   */
  reserveInsideStep(a: number, b: number): void {
    const alloc = this.alloc, live = this.live;
    if (live.length === 0 || alloc.rangeCount === undefined) return;
    const [lo, hi] = live[a % live.length];
    const pfn = lo + (b % (hi - lo + 1));
    const before = alloc.rangeCount;
    alloc.reserve(pfn, pfn);
    if (alloc.rangeCount !== before) {
      fail(
        "iova-invariant",
        `reserve of pfn ${hex(pfn)} inside live [${hex(lo)}, ${hex(hi)}] added a range`,
      );
    }
  }

  /** Step 2: a reservation of `1 + b % 64` pages at a position `a / 1024` of the space. */
  reserveStep(a: number, b: number): void {
    const pages = 1 + (b % 64);
    const lo = Math.floor((a / 1024) * Math.max(1, this.limit - pages));
    // Overlapping reservations are not drawn: the model keeps them as separate ranges and its
    // gap search then misplaces ranges (Linux reserve_iova merges them), a known finding.
    const hi = lo + pages - 1;
    // Nor over a range the caches hold (Linux reserves at domain set-up, before any
    // allocation; a cached PFN would be handed out by allocFast inside the reservation).
    if (
      lo < this.startPfn || overlaps(this.live, lo, hi) || overlaps(this.reserved, lo, hi) ||
      overlaps(this.cached, lo, hi)
    ) return;
    this.alloc.reserve(lo, hi);
    this.reserved.push([lo, hi]);
  }
}

/**
 * Step 5 of the `iova` part: Linux's range caches under load (`iova_rcache`). `128 + a % 200`
 * ranges of `2^(b % 6)` pages are taken with `allocFast`, all given back with `freeFast` (more
 * than a magazine holds: the loaded magazine fills, swaps with `prev`, goes to the depot), then
 * taken again and given back again. Every range is aligned to its size, inside `[start, limit)`
 * and overlaps nothing live, reserved or taken in the same round (`iova-invariant`); once given
 * back, as many ranges must be available again (`freeFast` keeps them for the next
 * `allocFast`). When the tree is full, `allocFast` empties the caches into it and retries.
 * Run after the input's other steps: its `allocFast` misses search the tree and move the
 * cached node, after which the `top-down` expectation would no longer hold.
 * @returns the ranges left in the caches (still in the tree, not live).
 */
function rcacheStorm(
  alloc: Required<ReturnType<DmaInvariantsEngine["newAllocator"]>>,
  start: number,
  limit: number,
  live: readonly Range[],
  reserved: readonly Range[],
  a: number,
  b: number,
): Range[] {
  const pages = 2 ** (b % 6);
  const n = 128 + (a % 200);
  const taken = [...live, ...reserved];
  const round = (count: number, must: boolean): Range[] => {
    const got: Range[] = [];
    const seen = new Set<number>();
    for (let i = 0; i < count; i++) {
      const pfn = alloc.allocFast(pages, limit);
      if (pfn < 0) {
        if (must) {
          fail(
            "iova-invariant",
            `allocFast of ${pages} pages failed after ${i} of ${count} ranges given back`,
          );
        }
        break;
      }
      if (pfn % pages !== 0 || pfn < start || pfn + pages > limit) {
        fail("iova-invariant", `allocFast: pfn ${hex(pfn)}+${pages} misaligned or outside`);
      }
      const o = overlaps(taken, pfn, pfn + pages - 1);
      if (o !== undefined || seen.has(pfn)) {
        fail("iova-invariant", `allocFast: pfn ${hex(pfn)}+${pages} handed out twice`);
      }
      seen.add(pfn);
      got.push([pfn, pfn + pages - 1]);
    }
    for (const [lo] of got) {
      if (!alloc.freeFast(lo)) fail("iova-invariant", `freeFast of pfn ${hex(lo)} found nothing`);
    }
    return got;
  };
  const first = round(n, false);
  return round(first.length, true);
}

// ---------------------------------------------------------------------------------- swiotlb part

function runSwiotlb(input: SwiotlbPart, engine: DmaInvariantsEngine): void {
  const bits = input.bypassBits ?? 0;
  const memory = bits === 0 ? mem() : bypassMem();
  const poolGpa = bits === 0 ? POOL_GPA : BYPASS_POOL_GPA;
  const mask = bits === 0 ? -1 : 2 ** bits - 1; // forced: nothing maps directly
  const mode = createDmaMode("direct", memory, bits === 0 ? {} : { mask });
  const sw = new engine.Swiotlb({
    memory,
    poolGpa,
    poolSize: input.slots * IO_TLB_SIZE,
    inner: mode.api as ConstructorParameters<typeof SwiotlbDmaApi>[0]["inner"],
    force: bits === 0,
  });
  const r: SwiotlbRun = {
    sw,
    memory,
    poolGpa,
    mask,
    bits,
    slots: input.slots,
    live: [],
    dead: null,
  };
  for (const [kind, a, b, c] of input.steps) {
    if (kind === 0) {
      r.dead = null;
      swiotlbMapStep(r, a, b, c);
    } else if (kind === 1) {
      if (r.live.length === 0) continue;
      const m = r.live.splice(a % r.live.length, 1)[0];
      sw.unmap(m.bus, m.len, m.dir);
      r.dead = m;
    } else if (kind === 2) swiotlbSyncStep(r, a, b);
    else swiotlbMisuseStep(r, a, b, c);
  }
  for (const m of r.live) sw.unmap(m.bus, m.len, m.dir);
}

/** A swiotlb mapping as the reference sees it (slot index and count, or direct). */
interface SwiotlbMapping {
  bus: number;
  gpa: number;
  len: number;
  dir: DmaDirection;
  idx: number;
  n: number;
  direct: boolean;
}

/** One run of the `swiotlb` part. */
interface SwiotlbRun {
  readonly sw: SwiotlbDmaApi;
  readonly memory: GuestMemory;
  readonly poolGpa: number;
  /** The inner dma-direct mask (-1 when forced: nothing maps directly) and its width (0). */
  readonly mask: number;
  readonly bits: number;
  readonly slots: number;
  readonly live: SwiotlbMapping[];
  /** The last unmapped, while no map since could reuse its slots. */
  dead: SwiotlbMapping | null;
}

function swiotlbWhere(r: SwiotlbRun, m: SwiotlbMapping): string {
  return `${m.direct ? "direct" : `slot ${m.idx}`} mapping of ${m.len} at ${
    hex(m.gpa)
  } (dir ${m.dir}${r.bits === 0 ? "" : `, ${r.bits}-bit mask`})`;
}

function readBytes(memory: GuestMemory, gpa: number, k: number): Uint8Array {
  const b = new Uint8Array(k);
  memory.read(gpa, b);
  return b;
}

const sameBytes = (x: Uint8Array, y: Uint8Array) => x.every((v, i) => v === y[i]);

/**
 * Step 0: a map. Oracle `swiotlb-invariant`: below the fallback mask a direct mapping; else
 * slots inside the pool, in one segment, page-aligned for a page or more, overlapping no live
 * slot and holding the buffer's bytes; refused `too-large` only above the 256 KiB cap and
 * `pool-exhausted` only when no free run of slots fits.
 */
function swiotlbMapStep(r: SwiotlbRun, a: number, b: number, c: number): void {
  const { sw, bits, live } = r;
  const len = SWIOTLB_LENGTHS[b % SWIOTLB_LENGTHS.length];
  const gpa = bits === 0
    ? (a % 512) * 4096 + (b % 7) * 256
    : Math.min(BYPASS_BUF_GPA + (a % 1024) * 4096 + (b % 7) * 256, MEM_SIZE - len);
  const dir = (c % 3) as DmaDirection;
  const n = len > 0 ? Math.ceil(len / IO_TLB_SIZE) : 1;
  const stride = len >= 4096 ? 2 : 1;
  const taken: Range[] = live.filter((m) => !m.direct)
    .map((m): Range => [m.idx, m.idx + m.n - 1]);
  if (gpa + Math.max(len, 1) - 1 <= r.mask) {
    // swiotlb as a fallback: a buffer the device can address is not bounced (dma-direct)
    const used = sw.usedSlots;
    const bus = sw.map(gpa, len, dir);
    if (bus !== gpa || sw.usedSlots !== used) {
      fail(
        "swiotlb-invariant",
        `${len} bytes at ${hex(gpa)} below the ${bits}-bit mask: bus ${bus.toString(16)}, ` +
          `${sw.usedSlots - used} slot(s) taken (expected a direct mapping)`,
      );
    }
    live.push({ bus: gpa, gpa, len, dir, idx: -1, n: 0, direct: true });
    return;
  }
  let bus: number;
  try {
    bus = Number(sw.map(gpa, len, dir));
  } catch (e) {
    if (!(e instanceof DmaMapError)) throw e;
    if (e.reason === "too-large") {
      if (len <= SWIOTLB_MAX_MAPPING) {
        fail("swiotlb-invariant", `${len} bytes refused too-large`, e);
      }
      return;
    }
    if (e.reason !== "pool-exhausted") throw e;
    if (len > SWIOTLB_MAX_MAPPING) {
      fail("swiotlb-invariant", `${len} bytes: pool-exhausted, not too-large`, e);
    }
    for (let i = 0; i + n <= r.slots; i += stride) {
      const seg = Math.floor(i / IO_TLB_SEGSIZE);
      if (Math.floor((i + n - 1) / IO_TLB_SEGSIZE) !== seg) continue;
      if (overlaps(taken, i, i + n - 1) === undefined) {
        fail(
          "swiotlb-invariant",
          `map of ${len} bytes refused pool-exhausted, yet slots ${i}..${i + n - 1} are free`,
          e,
        );
      }
    }
    return;
  }
  if (len > SWIOTLB_MAX_MAPPING) {
    fail("swiotlb-invariant", `${len} bytes mapped above the 256 KiB cap`);
  }
  const idx = (bus - r.poolGpa) / IO_TLB_SIZE;
  if (!Number.isInteger(idx) || idx < 0 || idx + n > r.slots) {
    fail("swiotlb-invariant", `bus ${hex(bus)} is not a slot start of ${n} slots in the pool`);
  }
  if (Math.floor(idx / IO_TLB_SEGSIZE) !== Math.floor((idx + n - 1) / IO_TLB_SEGSIZE)) {
    fail(
      "swiotlb-invariant",
      `slots ${idx}..${idx + n - 1} cross a ${IO_TLB_SEGSIZE}-slot segment`,
    );
  }
  if (idx % stride !== 0) {
    fail("swiotlb-invariant", `${len}-byte mapping at odd slot ${idx} (not page-aligned)`);
  }
  const o = overlaps(taken, idx, idx + n - 1);
  if (o !== undefined) {
    fail(
      "swiotlb-invariant",
      `slots ${idx}..${idx + n - 1} overlap live slots ${o[0]}..${o[1]}`,
    );
  }
  if (len > 0) {
    const k = Math.min(len, 64);
    if (!sameBytes(readBytes(r.memory, gpa, k), readBytes(r.memory, bus, k))) {
      fail("swiotlb-invariant", `slot ${idx} does not hold the buffer's bytes`);
    }
  }
  live.push({ bus, gpa, len, dir, idx, n, direct: false });
}

/**
 * Step 2: Linux swiotlb_sync_single_for_{cpu,device}: slot -> original unless TO_DEVICE,
 * original -> slot unless FROM_DEVICE (a direct mapping shares its bytes: nothing to copy).
 */
function swiotlbSyncStep(r: SwiotlbRun, a: number, b: number): void {
  const { sw, memory, live } = r;
  if (live.length === 0) return;
  const m = live[a % live.length];
  const k = Math.min(m.len, 64);
  if (k === 0) return;
  const before = readBytes(memory, m.gpa, k);
  const mark = before.map((v, i) => (v + 1 + ((b + i) % 251)) & 255);
  memory.write(m.bus, mark); // the device wrote the slot
  sw.syncForCpu(m.bus, m.len, m.dir);
  const cpu = readBytes(memory, m.gpa, k);
  if (!sameBytes(cpu, m.direct || m.dir !== 1 ? mark : before)) {
    fail("swiotlb-invariant", `syncForCpu of the ${swiotlbWhere(r, m)}: the original is wrong`);
  }
  const mark2 = cpu.map((v) => (v + 77) & 255);
  memory.write(m.gpa, mark2); // the CPU wrote the original
  sw.syncForDevice(m.bus, m.len, m.dir);
  if (!sameBytes(readBytes(memory, m.bus, k), m.direct || m.dir !== 2 ? mark2 : mark)) {
    fail("swiotlb-invariant", `syncForDevice of the ${swiotlbWhere(r, m)}: the slot is wrong`);
  }
}

/** Step 3: misuse: a sync past a mapping's end, of a freed slot, or of an address outside the pool. */
function swiotlbMisuseStep(r: SwiotlbRun, a: number, b: number, c: number): void {
  const { sw, live } = r;
  const v = b % 3;
  const m = v === 1 ? r.dead : live[a % Math.max(live.length, 1)];
  if (v !== 2 && (m === undefined || m === null || m.len === 0)) return;
  const bus = v === 2 ? r.poolGpa - 4096 : m!.bus;
  const len = v === 0 ? m!.len + 1 : Math.max(m?.len ?? 1, 1);
  const dir = (c % 3) as DmaDirection;
  let got = "ok";
  try {
    if (c % 2 === 0) sw.syncForCpu(bus, len, dir);
    else sw.syncForDevice(bus, len, dir);
  } catch (e) {
    if (!(e instanceof DmaMapError)) throw e;
    got = e.reason;
  }
  // forced: every sync must name a live bounce slot; as a fallback, an address outside the
  // pool is a direct mapping's (nothing to do), one inside it is checked as when forced
  const expect = (v === 2 ? r.bits === 0 : !m!.direct) ? "not-mapped" : "ok";
  const what = ["past the end of", "after the unmap of", "outside the pool, near"][v];
  if (got !== expect) {
    fail(
      "swiotlb-invariant",
      `a sync of ${len} bytes at ${hex(bus)} ${what} ${
        m ? swiotlbWhere(r, m) : "the pool"
      }: ${got}`,
    );
  }
}

const BYPASS_POOL_GPA = 0x10_0000; // 1 MiB: below every fallback mask drawn (2^21 and up)
const BYPASS_BUF_GPA = 0x20_0000; // buffers from 2 MiB: below and above the mask
let bypassMemory: GuestMemory | null = null;
const bypassMem = (): GuestMemory => (bypassMemory ??= GuestMemory.flat(MEM_SIZE));

// ---------------------------------------------------------------------------------- window part

const U64_TOP = 2n ** 64n;
const WINDOW_LENGTHS = [1, 2, 8, 64, 4095, 4096, 4097, 65536];
const canon = (b: bigint): number | bigint => b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : b;

/**
 * Buffer GPAs at the edges of a window's CPU range for a buffer of `len` bytes: its start, the
 * last fit, one byte past it, just before the window, just after it, its middle.
 */
function windowEdgeGpas(w: { cpu: number; size: number }, len: number): number[] {
  return [
    w.cpu,
    w.cpu + w.size - len,
    w.cpu + w.size - len + 1,
    w.cpu - 1,
    w.cpu + w.size,
    w.cpu + (w.size >> 1),
  ];
}

function runWindow(input: WindowPart, engine: DmaInvariantsEngine): void {
  const wins: DmaWindow[] = input.windows.map(([t, a]) => {
    const size = 2 ** (12 + (a % 20)) + (a % 3 === 2 ? 4096 : 0);
    const cpuStart = (a % 64) * 2 ** 20;
    const bus = t % 4 === 0
      ? BigInt(cpuStart) + BigInt(a % 5) * 2n ** 30n
      : t % 4 === 1
      ? 2n ** 63n + BigInt(a) * 4096n
      : t % 4 === 2
      ? U64_TOP - BigInt(size)
      : 2n ** 53n - BigInt(size / 2);
    return { cpuStart, busStart: canon(bus), size };
  });
  const { space, table } = engine.newWindows(wins);
  const ref = wins.map((w) => ({ cpu: w.cpuStart, bus: BigInt(w.busStart), size: w.size }));
  const out = new DmaTranslation();
  for (const [device, wi, edge, li] of input.probes) {
    const w = ref[wi % ref.length];
    const len = WINDOW_LENGTHS[li % WINDOW_LENGTHS.length];
    if (device) {
      const end = w.bus + BigInt(w.size);
      const edges = [
        w.bus - 1n,
        w.bus,
        w.bus + BigInt(w.size >> 1),
        end - 1n,
        end,
        end - BigInt(len),
        U64_TOP - BigInt(len),
        U64_TOP - BigInt(len) + 1n,
        U64_TOP - 1n,
        2n ** 53n - 1n,
        2n ** 53n,
        0n,
        w.bus + 4096n,
        end - 4096n,
        2n ** 63n - 1n,
        2n ** 63n,
      ];
      const b = edges[edge % edges.length];
      if (b < 0n || b >= U64_TOP) continue;
      let expect = "";
      const hit = ref.find((r) => b >= r.bus && b < r.bus + BigInt(r.size));
      if (hit !== undefined) {
        const off = Number(b - hit.bus);
        expect = `ok:${hit.cpu + off}+${Math.min(len, hit.size - off)}`;
      } else expect = b + BigInt(len) - 1n > U64_TOP - 1n ? "wrap" : "out-of-window";
      let got: string;
      try {
        space.translate(canon(b), len, DMA_ACCESS_READ, out);
        got = `ok:${out.gpa}+${out.length}`;
      } catch (e) {
        if (!(e instanceof DmaFault)) throw e;
        got = e.reason;
      }
      if (got !== expect) {
        fail(
          "fault-reason",
          `window device access of ${len} at 0x${b.toString(16)}: expected ${expect}, got ${got}`,
        );
      }
      // translateContiguous (ring areas, virtio-iommu requests): the whole access in one piece,
      // else `not-contiguous` (a window ending inside it), else the translation's own fault
      // (only where a window starts the access: the faults are the same as translate's)
      if (hit === undefined) continue;
      const expectC = hit.size - Number(b - hit.bus) >= len
        ? `ok:${hit.cpu + Number(b - hit.bus)}`
        : "not-contiguous";
      let gotC: string;
      try {
        gotC = `ok:${translateContiguous(space, canon(b), len, DMA_ACCESS_READ, out)}`;
      } catch (e) {
        if (!(e instanceof DmaFault)) throw e;
        gotC = e.reason;
      }
      if (gotC !== expectC) {
        fail(
          "fault-reason",
          `window translateContiguous of ${len} at 0x${b.toString(16)}: expected ${expectC}, ` +
            `got ${gotC}`,
        );
      }
    } else {
      const gpas = windowEdgeGpas(w, len);
      const gpa = gpas[edge % gpas.length];
      if (gpa < 0) continue;
      const hit = ref.find((r) => gpa >= r.cpu && gpa < r.cpu + r.size);
      const expect = hit === undefined || gpa - hit.cpu + len > hit.size
        ? "null"
        : String(canon(hit.bus + BigInt(gpa - hit.cpu)));
      const got = table.physToBus(gpa, len);
      if (String(got) !== expect) {
        fail(
          "fault-reason",
          `window physToBus(0x${gpa.toString(16)}, ${len}): expected ${expect}, got ${got}`,
        );
      }
    }
  }
}

// ---------------------------------------------------------------------------------- api part

interface ApiLive {
  bus: number | bigint;
  gpa: number;
  len: number;
  dir: DmaDirection;
  coherent: boolean;
  direct: boolean;
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const API_NOWHERE = 2n ** 62n + 4096n; // below every window template, above every IOVA

/**
 * The `api` part: window-iommu's driver API (Linux alpha `pci_map_single_1`: dma-direct through
 * `dma-ranges` windows when the buffer fits below the mask, else the strict dma-iommu) against a
 * reference of dma-direct (`translate_phys_to_dma` over the first window holding the GPA, then
 * `dma_capable` against the mask) and the device view. Oracles: `dma-view` (the path and bus
 * address the reference predicts from `map`, `mapNumber` (-1 exactly when the window bus address
 * does not fit a safe integer) and `mapCoherent`; `accepts` agrees; `busToGpa` and the device's
 * translation give the GPA back; a direction the IOMMU mapping forbids faults with
 * `permission`; after unmap a window address still reverses, an IOVA faults `unmapped`) and
 * `fault-reason` (unmapping with the wrong kind, past the mapping's end or at a bus address no
 * path owns throws `not-mapped` and leaves the mapping live).
 */
function runApi(input: ApiPart, engine: DmaInvariantsEngine): void {
  const mask = input.maskBits === 64 ? U64_TOP - 1n : 2n ** BigInt(input.maskBits) - 1n;
  const ref = apiWindows(input.windows, mask);
  const wins: DmaWindow[] = ref.map((r) => ({
    cpuStart: r.cpu,
    busStart: canon(r.bus),
    size: r.size,
  }));
  const r = new ApiRun(engine.newWindowIommu(wins, canon(mask)), ref, mask);
  for (const [kind, wi, edge, x] of input.steps) {
    const w = ref[wi % ref.length];
    const len = WINDOW_LENGTHS[x % WINDOW_LENGTHS.length];
    const dir = (kind === 2 ? 0 : (x >> 3) % 3) as DmaDirection;
    const gpas = [
      ...windowEdgeGpas(w, len),
      w.cpu + 4096 - (len >> 1),
      // the buffer straddles the DMA mask (dma_capable checks the last byte, not the first)
      w.bus <= mask && mask - w.bus < BigInt(w.size)
        ? w.cpu + Number(mask - w.bus) - (len >> 1)
        : w.cpu,
    ];
    const gpa = gpas[edge % gpas.length];
    if (gpa < 0) continue;
    const path = r.direct(gpa, len);
    const what = `${["map", "mapNumber", "mapCoherent", "accepts", "unmap", "misuse"][kind]}(${
      hex(gpa)
    }, ${len}), mask ${input.maskBits} bits`;
    if (kind <= 2) r.mapStep(kind, gpa, len, dir, path, what);
    else if (kind === 3) {
      if (r.primary.accepts(gpa, len) !== (typeof path === "bigint")) {
        fail("dma-view", `${what}: accepts says ${r.primary.accepts(gpa, len)}, reference ${path}`);
      }
    } else if (kind === 4) r.unmapStep(what);
    else r.misuseStep(wi, edge);
  }
}

/** A window of the `api` part: CPU (GPA) start, bus start, size in bytes. */
interface ApiWindow {
  cpu: number;
  bus: bigint;
  size: number;
}

/** The drawn windows whose CPU and bus ranges overlap no earlier one (one meaning per address). */
function apiWindows(drawn: readonly (readonly number[])[], mask: bigint): ApiWindow[] {
  const ref: ApiWindow[] = [];
  for (const [t, a] of drawn) {
    const size = 2 ** (12 + (a % 20)) + (a % 3 === 2 ? 4096 : 0);
    const cpu = (a % 64) * 2 ** 20;
    const bus = t % 5 === 0
      ? 2n ** 31n + BigInt(cpu)
      : t % 5 === 1
      ? 2n ** 63n + BigInt(a) * 4096n
      : t % 5 === 2
      ? U64_TOP - BigInt(size)
      : t % 5 === 3
      ? 2n ** 53n - BigInt(size / 2)
      : [mask + 1n - BigInt(size / 2), 2n ** 31n, U64_TOP - BigInt(size)].sort((x, y) =>
        x < y ? -1 : x > y ? 1 : 0
      )[1]; // the middle one: across the mask, at or above 2 GiB, below 2^64
    const clash = ref.some((r) =>
      (cpu < r.cpu + r.size && r.cpu < cpu + size) ||
      (bus < r.bus + BigInt(r.size) && r.bus < bus + BigInt(size))
    );
    if (!clash) ref.push({ cpu, bus, size });
  }
  return ref;
}

const apiAccess = (dir: DmaDirection) => (dir === 2 ? DMA_ACCESS_WRITE : DMA_ACCESS_READ);

/** One run of the `api` part: window-iommu's driver API against the dma-direct reference. */
class ApiRun {
  readonly api: ReturnType<DmaInvariantsEngine["newWindowIommu"]>["api"];
  readonly primary: ReturnType<DmaInvariantsEngine["newWindowIommu"]>["primary"];
  readonly space: DmaAddressSpace;
  readonly stats: ReturnType<DmaInvariantsEngine["newWindowIommu"]>["stats"];
  /**
   * The path counters the reference predicts: one per map call, on the path it takes (a
   * `mapNumber` answering -1 maps nothing and counts nothing; its `map` counts; a fallback map
   * that throws counts, as `map` counts before calling the IOMMU).
   */
  readonly want = { direct: 0, fallback: 0 };
  /** The fallback IOMMU's IOVAs end here (at most 2 GiB, below the mask). */
  readonly sgLimit: number;
  readonly live: ApiLive[] = [];
  readonly out = new DmaTranslation();

  constructor(
    built: ReturnType<DmaInvariantsEngine["newWindowIommu"]>,
    readonly ref: readonly ApiWindow[],
    readonly mask: bigint,
  ) {
    this.api = built.api;
    this.primary = built.primary;
    this.space = built.space;
    this.stats = built.stats;
    this.sgLimit = mask < 0x7fff_ffffn ? Number(mask) : 0x7fff_ffff;
  }

  /** dma-direct's answer: the bus address, or why it refuses. */
  direct(gpa: number, len: number): bigint | "window" | "mask" {
    const w = this.ref.find((r) => gpa >= r.cpu && gpa < r.cpu + r.size);
    if (w === undefined || gpa - w.cpu + len > w.size) return "window";
    const bus = w.bus + BigInt(gpa - w.cpu);
    return bus + BigInt(len - 1) > this.mask ? "mask" : bus;
  }

  checkStats(what: string): void {
    const { stats, want } = this;
    if (stats !== undefined && (stats.direct !== want.direct || stats.fallback !== want.fallback)) {
      fail(
        "dma-view",
        `${what}: path counters direct ${stats.direct}, fallback ${stats.fallback}; the maps ` +
          `made give direct ${want.direct}, fallback ${want.fallback}`,
      );
    }
  }

  where(m: ApiLive): string {
    return `${m.direct ? "window" : "IOMMU"} mapping of ${m.len} at GPA ${hex(m.gpa)} (bus ${
      m.bus.toString(16)
    }, dir ${m.dir}${m.coherent ? ", coherent" : ""})`;
  }

  /** The device's access to the whole mapping: "ok", a wrong GPA, or the fault reason. */
  translates(m: ApiLive, acc: number): string {
    const out = this.out;
    try {
      this.space.translate(m.bus, m.len, acc, out);
      return out.gpa === m.gpa && out.length > 0 && out.length <= m.len
        ? "ok"
        : `ok:${hex(out.gpa)}+${out.length}`;
    } catch (e) {
      if (!(e instanceof DmaFault)) throw e;
      return e.reason;
    }
  }

  /** `busToGpa` and the device reach a live mapping; a forbidden direction faults `permission`. */
  check(m: ApiLive, what: string): void {
    const api = this.api;
    if (api.busToGpa(m.bus) !== m.gpa) {
      fail("dma-view", `${what}: busToGpa of the ${this.where(m)} gave ${api.busToGpa(m.bus)}`);
    }
    const got = this.translates(m, apiAccess(m.dir));
    if (got !== "ok") {
      fail("dma-view", `${what}: the device reaching the ${this.where(m)} got ${got}`);
    }
    if (!m.direct && m.dir !== 0) {
      const wrong = this.translates(m, m.dir === 1 ? DMA_ACCESS_WRITE : DMA_ACCESS_READ);
      if (wrong !== "permission") {
        fail("fault-reason", `${what}: forbidden access to the ${this.where(m)}: ${wrong}`);
      }
    }
  }

  /** Steps 0-2: `map`, `mapNumber`, `mapCoherent` on the path the reference predicts. */
  mapStep(
    kind: number,
    gpa: number,
    len: number,
    dir: DmaDirection,
    path: bigint | "window" | "mask",
    what: string,
  ): void {
    const api = this.api;
    let bus: number | bigint;
    if (typeof path === "bigint") this.want.direct++;
    else this.want.fallback++;
    try {
      if (kind === 1) {
        const n = api.mapNumber!(gpa, len, dir);
        const fits = typeof path === "bigint" && path + BigInt(len) <= MAX_SAFE;
        if (typeof path === "bigint" && (n === -1) === fits) {
          fail("dma-view", `${what}: ${n} for window bus 0x${path.toString(16)}`);
        }
        bus = n >= 0 ? n : api.map(gpa, len, dir); // -1: nothing mapped, `map` takes over
      } else bus = kind === 2 ? api.mapCoherent(gpa, len) : api.map(gpa, len, dir);
    } catch (e) {
      // the fallback IOMMU has at most 2 GiB of IOVAs below the mask
      if (typeof path !== "bigint" && e instanceof DmaMapError && e.reason === "iova-exhausted") {
        this.checkStats(what);
        return;
      }
      return fail("dma-view", `${what}: threw ${e}`, e);
    }
    if (
      typeof path === "bigint" ? bus !== canon(path) : !(typeof bus === "number" &&
        bus >= 4096 && bus + len - 1 <= this.sgLimit && bus % 4096 === gpa % 4096)
    ) {
      fail(
        "dma-view",
        `${what}: bus ${bus.toString(16)}, expected ${
          typeof path === "bigint" ? `window bus ${path.toString(16)}` : `an IOVA (${path})`
        }`,
      );
    }
    const m = { bus, gpa, len, dir, coherent: kind === 2, direct: typeof path === "bigint" };
    this.checkStats(what);
    this.check(m, what);
    this.live.push(m);
  }

  /** Step 4: unmap the oldest; a window address still reverses, an IOVA faults `unmapped`. */
  unmapStep(what: string): void {
    const api = this.api;
    const m = this.live.shift();
    if (m === undefined) return;
    if (m.coherent) api.unmapCoherent(m.bus, m.len);
    else {
      api.syncForCpu(m.bus, m.len, m.dir);
      api.syncForDevice(m.bus, m.len, m.dir);
      api.unmap(m.bus, m.len, m.dir);
    }
    if (m.direct) this.check(m, `${what} after unmap`); // dma-direct: windows are static
    else {
      const g = api.busToGpa(m.bus);
      const t = this.translates(m, apiAccess(m.dir));
      if (g !== -1 || t !== "unmapped") {
        fail("dma-view", `unmapped ${this.where(m)}: busToGpa ${g}, device ${t}`);
      }
    }
  }

  /**
   * Step 5: an unmap of the wrong kind, past the mapping's end, or at a bus address no path
   * owns: `not-mapped` (dma-direct tracks nothing), the mapping still live.
   */
  misuseStep(wi: number, edge: number): void {
    const { api, live } = this;
    if (live.length === 0) return;
    const m = live[wi % live.length];
    const v = edge % 3;
    const [bus, l] = v === 2 ? [API_NOWHERE, 1] : [m.bus, v === 1 ? m.len + 2 ** 20 : m.len];
    let got = "ok";
    try {
      if (v === 0 ? !m.coherent : m.coherent) api.unmapCoherent(bus, l);
      else api.unmap(bus, l, m.dir);
    } catch (e) {
      if (!(e instanceof DmaMapError)) throw e;
      got = e.reason;
    }
    // dma-direct tracks nothing (unmap is a no-op); a bus address no path owns, never mapped
    const expect = m.direct && v !== 2 ? "ok" : "not-mapped";
    const kindName = ["wrong-kind unmap", "unmap past the end", "unmap at 2^62+4096"][v];
    if (got !== expect) fail("fault-reason", `${kindName} of the ${this.where(m)}: ${got}`);
    if (v === 2 && api.busToGpa(API_NOWHERE) !== -1) {
      fail("dma-view", `busToGpa(2^62+4096) = ${api.busToGpa(API_NOWHERE)}, mapped nowhere`);
    }
    this.check(m, `after the ${kindName}`);
  }
}

// ------------------------------------------------------------------------- viommu-bounce part

/**
 * The `viommu-bounce` part: swiotlb bouncing over the virtio-iommu driver (a confidential guest
 * with a paravirtual IOMMU: Linux bounces into shared memory, then maps the slot with
 * virtio-iommu MAP requests), composed by `assembleDma` as the platform resolver composes it.
 * The virtio-iommu driver keeps no reverse map, so the assembly remembers each live mapping for
 * swiotlb. Oracles (`swiotlb-invariant`): the device reaches, at the bus address, the slot that
 * holds the buffer's bytes; a slot the device wrote is copied back by `syncForCpu` and by the
 * unmap of a mapping the device may write (not of a `DMA_TO_DEVICE` one); an interior bus address
 * of a live mapping reverses to the slot byte; after unmap the address reverses to nothing and
 * the device faults; an unmap at a bus address never mapped throws `not-mapped`.
 */
function runViommuBounce(input: ViommuBouncePart, engine: DmaInvariantsEngine): void {
  const memory = (vbMemory ??= GuestMemory.flat(VB_MEM)); // every byte read is written first
  const r: VbRun = {
    ...engine.newViommuBounce(memory, input.slots),
    memory,
    slots: input.slots,
    live: [],
    out: new DmaTranslation(),
  };
  const { api, live } = r;
  for (const [kind, a, b, c] of input.steps) {
    if (kind === 0 || kind === 1) vbMapStep(r, kind === 1, a, b, c);
    else if (kind === 2 || kind === 3) vbDeviceWriteStep(r, kind === 3, a, c);
    else {
      // an unmap at a bus address never mapped (a page of IOVA space no mapping touches)
      const bus = 0x3000_0000 + (a % 64) * 4096;
      if (live.some((m) => bus < m.bus + m.len + 4096 && m.bus < bus + 4096)) continue;
      let got = "ok";
      try {
        api.unmap(bus, 64, 0);
      } catch (e) {
        if (!(e instanceof DmaMapError)) throw e;
        got = e.reason;
      }
      if (got !== "not-mapped") {
        fail("swiotlb-invariant", `unmap at never-mapped bus ${hex(bus)}: ${got}`);
      }
    }
  }
  for (const m of live) {
    if (m.coherent) api.unmapCoherent(m.bus, m.len);
    else api.unmap(m.bus, m.len, m.dir);
  }
}

/** A live mapping of the `viommu-bounce` part. */
interface VbMapping {
  bus: number;
  gpa: number;
  len: number;
  dir: DmaDirection;
  coherent: boolean;
}

/** One run of the `viommu-bounce` part. */
type VbRun = ReturnType<DmaInvariantsEngine["newViommuBounce"]> & {
  readonly memory: GuestMemory;
  readonly slots: number;
  readonly live: VbMapping[];
  readonly out: DmaTranslation;
};

function vbDesc(m: VbMapping): string {
  return `${m.coherent ? "coherent" : `dir ${m.dir}`} mapping of ${m.len} at ${hex(m.gpa)}`;
}

/** The GPA the device reaches at the mapping's bus address (a fault fails the run). */
function vbSlotOf(r: VbRun, m: VbMapping, what: string): number {
  try {
    r.space.translate(m.bus, m.len, m.dir === 2 ? DMA_ACCESS_WRITE : DMA_ACCESS_READ, r.out);
  } catch (e) {
    if (!(e instanceof DmaFault)) throw e;
    return fail("swiotlb-invariant", `${what}: the device faults ${e.reason} at the mapping`);
  }
  return r.out.gpa;
}

/**
 * Steps 0 and 1: a streaming (bounced) or coherent map. The device reaches a pool slot holding
 * the buffer's bytes (coherent: the buffer itself); an interior bus address reverses to the slot
 * byte, one past the end to nothing unless another mapping holds it.
 */
function vbMapStep(r: VbRun, coherent: boolean, a: number, b: number, c: number): void {
  const { api, sw, memory, live } = r;
  const len = VB_LENGTHS[b % VB_LENGTHS.length];
  const gpa = coherent ? VB_COHERENT + (a % 64) * 4096 : (a % 512) * 4096 + (b % 9) * 200;
  const dir = (coherent ? 0 : c % 3) as DmaDirection;
  // the original's bytes: a pattern of this step
  memory.write(gpa, Uint8Array.from({ length: len }, (_, i) => (a + b + i * 7) & 255));
  let bus: number;
  try {
    bus = Number(coherent ? api.mapCoherent(gpa, len) : api.map(gpa, len, dir));
  } catch (e) {
    if (e instanceof DmaMapError && e.reason === "pool-exhausted" && !coherent) return;
    throw e;
  }
  const m: VbMapping = { bus, gpa, len, dir, coherent };
  const slot = vbSlotOf(r, m, `map of the ${vbDesc(m)}`);
  const inPool = slot >= VB_POOL && slot + len <= VB_POOL + r.slots * IO_TLB_SIZE;
  if (
    coherent
      ? slot !== gpa
      : !inPool || !sameBytes(readBytes(memory, slot, len), readBytes(memory, gpa, len))
  ) {
    fail(
      "swiotlb-invariant",
      `the ${vbDesc(m)}: the device reaches ${hex(slot)}, ${
        coherent ? "not the buffer (coherent memory is shared)" : "not a slot with its bytes"
      }`,
    );
  }
  if (!coherent && len > 1) {
    const mid = len >> 1;
    if (sw.busToGpa(bus + mid) !== slot + mid) {
      fail("swiotlb-invariant", `busToGpa of byte ${mid} of the ${vbDesc(m)}`);
    }
    // one past the end is not this mapping's (it reverses only when another one holds it)
    const end = bus + len;
    if (!live.some((o) => end >= o.bus && end < o.bus + o.len) && sw.busToGpa(end) !== -1) {
      fail("swiotlb-invariant", `busToGpa one past the end of the ${vbDesc(m)}`);
    }
  }
  live.push(m);
}

/**
 * Steps 2 and 3: the device writes a mapping's slot, then a sync (2) or the unmap (3) of the
 * mapping: the original gets the device's bytes unless the mapping is `DMA_TO_DEVICE`; after
 * the unmap the address reverses to nothing and the device faults.
 */
function vbDeviceWriteStep(r: VbRun, unmap: boolean, a: number, c: number): void {
  const { api, sw, memory, live } = r;
  if (live.length === 0) return;
  const i = a % live.length;
  const m = live[i];
  const slot = vbSlotOf(r, m, `the ${vbDesc(m)} before ${unmap ? "its unmap" : "a sync"}`);
  const mark = Uint8Array.from({ length: m.len }, (_, k) => (c + 3 + k * 11) & 255);
  const before = readBytes(memory, m.gpa, m.len);
  memory.write(slot, mark);
  if (!unmap) {
    if (m.coherent) return;
    api.syncForCpu(m.bus, m.len, m.dir);
    api.syncForDevice(m.bus, m.len, m.dir);
  } else {
    live.splice(i, 1);
    if (m.coherent) api.unmapCoherent(m.bus, m.len);
    else api.unmap(m.bus, m.len, m.dir);
    if (sw.busToGpa(m.bus) !== -1) {
      fail("swiotlb-invariant", `the unmapped ${vbDesc(m)} still reverses`);
    }
    let faulted = false;
    try {
      r.space.translate(m.bus, 1, DMA_ACCESS_READ, r.out);
    } catch (e) {
      if (!(e instanceof DmaFault)) throw e;
      faulted = true;
    }
    if (!faulted && !m.coherent) {
      fail("swiotlb-invariant", `the device still reaches the unmapped ${vbDesc(m)}`);
    }
  }
  const want = m.coherent || m.dir !== 1 ? mark : before;
  if (!sameBytes(readBytes(memory, m.gpa, m.len), want)) {
    fail(
      "swiotlb-invariant",
      `after the device wrote the slot and ${unmap ? "the unmap" : "a sync"}, the ` +
        `original of the ${vbDesc(m)} ${want === mark ? "lacks" : "has"} the device's bytes`,
    );
  }
}

const VB_MEM = 8 * 1024 * 1024;
let vbMemory: GuestMemory | null = null;
const VB_POOL = 4 * 1024 * 1024; // the shared bounce pool
const VB_COHERENT = 6 * 1024 * 1024; // coherent (ring) memory, mapped without bouncing
const VB_STAGING = 7 * 1024 * 1024; // the virtio-iommu driver's staging area
const VB_LENGTHS = [1, 64, 2047, 2048, 2049, 4095, 4096, 4097, 9000];

/**
 * The `viommu-bounce` views (see {@link DmaInvariantsEngine.newViommuBounce}) built by `assemble`
 * (the real `assembleDma` by default; a planted copy in tests).
 */
export function viommuBounceWith(
  assemble: typeof assembleDma = assembleDma,
): DmaInvariantsEngine["newViommuBounce"] {
  return (memory, slots) => realViommuBounce(memory, slots, assemble);
}

function realViommuBounce(memory: GuestMemory, slots: number, assemble = assembleDma) {
  const stack = createViommuStack({ memory, stagingGpa: VB_STAGING, transport: "direct" });
  const a = assemble(memory, {
    driver: [
      { kind: "bounce", name: "swiotlb", poolGpa: VB_POOL, poolSize: slots * IO_TLB_SIZE },
      { kind: "api", make: () => stack.api },
    ],
    device: [{ kind: "space", make: () => stack.space }],
  });
  return { api: a.api, space: a.space, sw: a.bounce! };
}

// ---------------------------------------------------------------------------------- target

/** Planted bugs (each a realistic engine bug of one oracle's class, built outside `src/`). */
export const DMA_INVARIANTS_FAULTS = [
  "iova-not-size-aligned",
  "iova-limit-inclusive",
  "iommu-32bit-bus",
  "map-ignores-direction",
  "window-ignores-mask",
  "map-number-rounds",
] as const;

function plantedEngine(fault: string): DmaInvariantsEngine {
  switch (fault) {
    case "iova-not-size-aligned": // alloc_iova(..., size_aligned = false)
      return {
        ...REAL_DMA_INVARIANTS_ENGINE,
        newAllocator: (s) => new IovaAllocator({ startPfn: s, sizeAligned: false }),
      };
    case "iova-limit-inclusive": // limit_pfn taken as inclusive (the pre-4.15 convention)
      return {
        ...REAL_DMA_INVARIANTS_ENGINE,
        newAllocator: (s) => {
          const a = new IovaAllocator({ startPfn: s });
          return {
            alloc: (p: number, l: number, x?: number, y?: number) => a.alloc(p, l + 1, x, y),
            free: (p: number) => a.free(p),
            reserve: (lo: number, hi: number) => a.reserve(lo, hi),
          };
        },
      };
    case "iommu-32bit-bus": // a device model that keeps a bus address in 32 bits
      return {
        ...REAL_DMA_INVARIANTS_ENGINE,
        wrapIommu: (api, space) => ({
          api,
          space: {
            name: space.name,
            translate: (bus, len, acc, out) =>
              space.translate(Number(bus) % 2 ** 32, len, acc, out),
          } as DmaAddressSpace,
        }),
      };
    case "map-ignores-direction": // a driver that maps everything DMA_BIDIRECTIONAL
      return {
        ...REAL_DMA_INVARIANTS_ENGINE,
        wrapIommu: (api, space) => ({
          api: Object.assign(Object.create(api), {
            map: (gpa: number, len: number) => api.map(gpa, len, DMA_BIDIRECTIONAL),
            unmap: (bus: bigint | number, len: number) => api.unmap(bus, len, DMA_BIDIRECTIONAL),
          }) as DmaApi,
          space,
        }),
      };
    case "window-ignores-mask": // dma-direct's window path without dma_capable()
      return {
        ...REAL_DMA_INVARIANTS_ENGINE,
        newWindowIommu: (windows) => REAL_DMA_INVARIANTS_ENGINE.newWindowIommu(windows, U64_MAX),
      };
    case "map-number-rounds": // a bus address >= 2^53 returned as a rounded number, not -1
      return {
        ...REAL_DMA_INVARIANTS_ENGINE,
        newWindowIommu: (windows, mask) => {
          const r = REAL_DMA_INVARIANTS_ENGINE.newWindowIommu(windows, mask);
          const api = r.api;
          return {
            ...r,
            api: Object.assign(Object.create(api), {
              mapNumber: (gpa: number, len: number, dir: DmaDirection) =>
                Number(api.map(gpa, len, dir)),
            }) as ReversibleDmaApi,
          };
        },
      };
    default:
      throw new Error(`unknown planted fault ${fault}`);
  }
}

/**
 * Builds the target over `engine` (the real one by default).
 * @param engine the engine pieces to drive.
 */
export function makeDmaInvariantsTarget(
  engine: DmaInvariantsEngine = REAL_DMA_INVARIANTS_ENGINE,
): FuzzTarget<DmaInvariantsInput> {
  return {
    name: "dma-invariants",
    description:
      "IOVA allocator, dma-iommu, swiotlb (forced and fallback), window-iommu's API and swiotlb over virtio-iommu against Linux invariants and a reference translation (64-bit masks, non-power-of-2 sizes, aliasing probes, fault reasons, misuse)",
    arbitrary: () =>
      fc.oneof(
        // the iommu part keeps the share of runs it had before the api and viommu-bounce parts
        // (its probes kill mutants the 20 s kill tests replay); viommu-bounce costs ~10x a run
        { arbitrary: iommuPart, weight: 4 },
        { arbitrary: iovaPart, weight: 3 },
        { arbitrary: swiotlbPart, weight: 3 },
        { arbitrary: windowPart, weight: 2 },
        { arbitrary: apiPart, weight: 3 },
        { arbitrary: viommuBouncePart, weight: 1 },
      ) as fc.Arbitrary<DmaInvariantsInput>,
    run(input) {
      if (input.part === "iommu") runIommu(input, engine);
      else if (input.part === "iova") runIova(input, engine);
      else if (input.part === "window") runWindow(input, engine);
      else if (input.part === "api") runApi(input, engine);
      else if (input.part === "viommu-bounce") runViommuBounce(input, engine);
      else runSwiotlb(input, engine);
    },
    encode: (input) => input,
    decode: (json) => DmaInvariantsInputSchema.parse(json) as DmaInvariantsInput,
    plantedFaults: DMA_INVARIANTS_FAULTS,
    withPlantedFault: (fault) => makeDmaInvariantsTarget(plantedEngine(fault)),
  };
}

/** The registered instance. */
export const dmaInvariantsTarget: FuzzTarget<DmaInvariantsInput> = makeDmaInvariantsTarget();
