/**
 * The DMA-mode factory: one call builds a **consistent** driver view ({@link DmaApi}) and device
 * view ({@link DmaAddressSpace}) over one {@link GuestMemory}, for each mode a virtio device meets
 * on a real platform (DMA_MODES.md §6 (b) taxonomy):
 *
 * | name | driver (`api`) | device (`space`) | taxonomy |
 * |---|---|---|---|
 * | `none` | raw GPAs (ACCESS_PLATFORM not negotiated) | identity | M0 |
 * | `direct` | dma-direct, mask checked | identity | M1 |
 * | `window` | dma-direct through `dma-ranges` windows | windows | M2 (default: alpha CIA, 2 GiB at bus 2 GiB) |
 * | `window-high` | same, window at bus 2^63 | windows | M2 (POWER DDW, QEMU `SPAPR_PCI_DMA64_START`) |
 * | `iommu-strict` | dma-iommu, strict invalidation | IOMMU endpoint | M5 |
 * | `iommu-lazy` | dma-iommu, flush queue | IOMMU endpoint | M5 |
 * | `iommu-identity` | dma-direct | IOMMU identity domain | M6 |
 * | `swiotlb` | bounce via a pool, forced | identity | M4 |
 * | `confidential` | bounce via a shared pool | shared-only filter over identity | M4 (SEV/TDX) |
 * | `confidential-iommu` | bounce, slots mapped through dma-iommu | shared-only filter over an IOMMU endpoint | M4 inside M5 |
 * | `window-iommu` | direct window when the buffer fits, else dma-iommu (strict) | window, else IOMMU | M2 or M5 (alpha) |
 *
 * Consistent means: every bus address `api` hands out for a live mapping translates in `space`
 * to the bytes the driver meant (for bounce modes: to the slot that mirrors them).
 *
 * @module
 */

import { GuestMemory } from "../memory/guest_memory.ts";
import { createCopyableBacking } from "../memory/backing.ts";
import type { U64 } from "../memory/u64.ts";
import { assembleDma, type DmaAssemblySpec, type IommuLayerSpec } from "./assembly.ts";
import type { Clock } from "./clock.ts";
import { type Iommu, type IommuDomain, type ReservedRegion, X86_MSI_REGION } from "./iommu.ts";
import type { IommuDmaApi, IommuUnmapPolicy } from "./iommu_api.ts";
import type { SwiotlbDmaApi } from "./swiotlb.ts";
import type { DmaAddressSpace, DmaApi } from "./types.ts";
import { type DmaWindow, DmaWindowTable } from "./window.ts";

/** Every mode {@link createDmaMode} builds. */
export const DMA_MODE_NAMES = [
  "none",
  "direct",
  "window",
  "window-high",
  "iommu-strict",
  "iommu-lazy",
  "iommu-identity",
  "swiotlb",
  "confidential",
  "confidential-iommu",
  "window-iommu",
] as const;

/** Name of a DMA mode. */
export type DmaModeName = typeof DMA_MODE_NAMES[number];

/**
 * What the device can reach besides live mappings, for oracles:
 * - `none`: all guest RAM the view covers (no isolation);
 * - `page`: only pages of live mappings (IOMMU; sub-page bytes around a mapping are exposed, and
 *   in lazy mode unmapped pages stay reachable while {@link DmaMode.isStale});
 * - `shared-only`: all shared memory, never private memory.
 */
export type DmaIsolation = "none" | "page" | "shared-only";

/** Options of {@link createDmaMode}. Every field is optional except where a mode needs it. */
export interface DmaModeOptions {
  /** The device's DMA mask (driver side), default 2^64 - 1. */
  mask?: U64;
  /** Windows for `window` / `window-high` (default: one window over all of RAM). */
  windows?: readonly DmaWindow[];
  /** The swiotlb pool (bounce modes; required there): GPA and size in bytes of shared memory. */
  pool?: { gpa: number; size: number };
  /** IOTLB capacity (IOMMU modes), default 1024. */
  iotlbCapacity?: number;
  /** Page-table levels (IOMMU modes), default 4. */
  levels?: 3 | 4;
  /** Reserved regions (IOMMU modes), default the x86 MSI window 0xFEE00000-0xFEEFFFFF. */
  reservedRegions?: readonly ReservedRegion[];
  /** Invalidation policy of `confidential-iommu`, default `strict`. */
  policy?: IommuUnmapPolicy;
  /** Flush-queue size (lazy), default 256. */
  fqSize?: number;
  /** Flush-queue timeout in ms (lazy), default 10. */
  fqTimeoutMs?: number;
  /** Clock for the flush queue (inject a `FakeClock` for determinism). */
  clock?: Clock;
  /** Try 32-bit IOVAs first (IOMMU modes), default `true`. */
  sacFirst?: boolean;
}

/** A consistent driver/device pair for one mode, plus the models behind it. */
export interface DmaMode {
  /** The mode's name. */
  readonly name: DmaModeName;
  /** The driver's DMA API. */
  readonly api: DmaApi;
  /** The device's address space. */
  readonly space: DmaAddressSpace;
  /** Guest memory both views work on. */
  readonly memory: GuestMemory;
  /** What the device can reach besides live mappings. */
  readonly isolation: DmaIsolation;
  /** The IOMMU (IOMMU modes), else `null`. */
  readonly iommu: Iommu | null;
  /** The device's domain (IOMMU modes), else `null`. */
  readonly domain: IommuDomain | null;
  /** The dma-iommu API (also the inner API of `confidential-iommu`), else `null`. */
  readonly iommuApi: IommuDmaApi | null;
  /** The bounce-buffer API (bounce modes), else `null`. */
  readonly swiotlb: SwiotlbDmaApi | null;
  /**
   * Whether the driver side tracks every mapping, so unmap/sync of a dead bus address throws
   * `not-mapped` (dma-iommu, swiotlb). dma-direct tracks nothing.
   */
  readonly tracksMappings: boolean;
  /**
   * True when `bus` is in the lazy-invalidation window: unmapped, but the IOTLB may still
   * translate it. Always `false` outside lazy modes.
   */
  isStale(bus: U64): boolean;
  /** Lets time act (runs the flush-queue timer); a no-op in modes without time. */
  tick(): void;
}

/**
 * Builds the driver/device pair for `name` over `memory`: describes the mode's layers
 * ({@link describeDmaMode}) and assembles them with {@link assembleDma}.
 * @throws RangeError for an unknown mode or a missing/invalid option (the message names it).
 */
export function createDmaMode(
  name: DmaModeName,
  memory: GuestMemory,
  options: DmaModeOptions = {},
): DmaMode {
  const a = assembleDma(memory, describeDmaMode(name, memory, options));
  const unit = a.units.get(IOMMU_UNIT) ?? null;
  const iommuApi = unit?.api ?? null;
  const lazyCapable = name === "iommu-strict" || name === "iommu-lazy" ||
    name === "confidential-iommu";
  return {
    name,
    memory,
    api: a.api,
    space: a.space,
    isolation: ISOLATION[name],
    iommu: unit?.iommu ?? null,
    domain: unit?.endpointDomain ?? null,
    iommuApi,
    swiotlb: a.bounce,
    tracksMappings: a.bounce !== null || (iommuApi !== null && name !== "window-iommu"),
    isStale: lazyCapable && iommuApi ? (bus: U64) => iommuApi.isStale(bus) : (_bus: U64) => false,
    tick: lazyCapable && iommuApi ? () => iommuApi.tick() : () => {},
  };
}

const ISOLATION: Readonly<Record<DmaModeName, DmaIsolation>> = {
  "none": "none",
  "direct": "none",
  "window": "none",
  "window-high": "none",
  "iommu-strict": "page",
  "iommu-lazy": "page",
  "iommu-identity": "none",
  "swiotlb": "none",
  "confidential": "shared-only",
  "confidential-iommu": "page",
  "window-iommu": "none",
};

/** Key of the one IOMMU unit a mode uses. */
const IOMMU_UNIT = "iommu";

/**
 * The layers of mode `name` over `memory` as a {@link DmaAssemblySpec} (DMA_MODES.md §6 (b)).
 * @throws RangeError for an unknown mode or a missing/invalid option (the message names it).
 */
export function describeDmaMode(
  name: DmaModeName,
  memory: GuestMemory,
  options: DmaModeOptions = {},
): DmaAssemblySpec {
  const o = options;
  const mask = o.mask;
  const ramEnd = memory.regions.length ? memory.regions[memory.regions.length - 1].end : 0;
  const units = {
    [IOMMU_UNIT]: {
      name: "iommu",
      iotlbCapacity: o.iotlbCapacity,
      levels: o.levels,
      reservedRegions: o.reservedRegions ?? [X86_MSI_REGION],
    },
  };
  const dmaIommu = (policy: IommuUnmapPolicy, m: U64 | undefined = mask): IommuLayerSpec => ({
    kind: "iommu",
    unit: IOMMU_UNIT,
    policy,
    mask: m,
    fqSize: o.fqSize,
    fqTimeoutMs: o.fqTimeoutMs,
    clock: o.clock,
    sacFirst: o.sacFirst,
  });
  const endpoint = { kind: "iommu", unit: IOMMU_UNIT, domain: "paged" } as const;
  switch (name) {
    case "none":
      return { driver: [{ kind: "raw-gpa" }], device: [{ kind: "identity" }] };
    case "direct":
      return { driver: [{ kind: "direct", mask }], device: [{ kind: "identity" }] };
    case "window":
    case "window-high": {
      const windows = o.windows ??
        [{ cpuStart: 0, busStart: name === "window" ? 0x8000_0000 : 2n ** 63n, size: ramEnd }];
      const table = new DmaWindowTable(windows);
      return {
        driver: [{ kind: "direct", mask, windows: table, name }],
        device: [{ kind: "window", windows: table, name }],
      };
    }
    case "iommu-strict":
    case "iommu-lazy":
      return {
        units,
        driver: [dmaIommu(name.slice(6) as IommuUnmapPolicy)],
        device: [endpoint],
      };
    case "iommu-identity":
      return {
        units,
        driver: [{ kind: "direct", mask, name }],
        device: [{ kind: "iommu", unit: IOMMU_UNIT, domain: "identity" }],
      };
    case "swiotlb":
    case "confidential": {
      const pool = needPool(name, o);
      return {
        driver: [
          { kind: "bounce", name, poolGpa: pool.gpa, poolSize: pool.size },
          { kind: "direct", mask },
        ],
        device: [
          name === "swiotlb"
            ? { kind: "identity" }
            : { kind: "confidential", inner: { kind: "identity" } },
        ],
      };
    }
    case "confidential-iommu": {
      const pool = needPool(name, o);
      return {
        units,
        driver: [
          { kind: "bounce", name, poolGpa: pool.gpa, poolSize: pool.size },
          dmaIommu(o.policy ?? "strict"),
        ],
        device: [{ kind: "confidential", inner: endpoint }],
      };
    }
    case "window-iommu": {
      // alpha CIA-like: a direct window at bus 2 GiB over the lower half of RAM, and a
      // scatter-gather IOMMU whose IOVAs stay below 2 GiB (outside the direct window).
      const half = Math.floor(ramEnd / 2 / 4096) * 4096;
      const windows = o.windows ?? [{ cpuStart: 0, busStart: 0x8000_0000, size: half || 4096 }];
      const table = new DmaWindowTable(windows);
      const sgMask = mask === undefined || BigInt(mask) > 0x7fff_ffffn ? 0x7fff_ffff : mask;
      return {
        units,
        driver: [{
          kind: "fallback",
          name,
          first: { kind: "direct", mask, windows: table, name: "window" },
          second: dmaIommu("strict", sgMask),
        }],
        device: [{ ...endpoint, window: { windows: table } }],
      };
    }
    default:
      throw new RangeError(
        `unknown DMA mode "${name as string}"; known: ${DMA_MODE_NAMES.join(", ")}`,
      );
  }
}

function needPool(name: string, o: DmaModeOptions): { gpa: number; size: number } {
  if (o.pool === undefined) {
    throw new RangeError(
      `DMA mode "${name}" bounces: pass options.pool = { gpa, size } naming shared guest memory`,
    );
  }
  return o.pool;
}

/** Options of {@link createDmaLab}: a memory layout plus the mode's own options. */
export interface DmaLabOptions extends DmaModeOptions {
  /** Bytes of buffer memory at GPA 0 (private in confidential modes), default 8 MiB. */
  bufferSize?: number;
  /** Bytes of shared memory for rings and other coherent data, default 1 MiB. */
  ringSize?: number;
  /** Bytes of the swiotlb pool (shared), default 4 MiB (Linux's default is 64 MiB). */
  poolSize?: number;
  /**
   * Back the regions with a WebAssembly memory (`createCopyableBacking`), so that each bounce
   * copy of 128 B or more is one native memmove call: for benchmarks, default `false`. Creating
   * such a memory costs far more than an `ArrayBuffer` (it reserves its address space), so
   * fuzzing and tests, which build a lab per run, leave it off; the bytes are the same either way.
   */
  fastCopy?: boolean;
}

/** A ready-to-use guest memory layout with a mode built over it. */
export interface DmaLab {
  /** The mode. */
  mode: DmaMode;
  /** Guest memory: buffers `[0, bufferSize)`, then rings, then the pool (bounce modes). */
  memory: GuestMemory;
  /** GPA of the buffer area (0). */
  bufferGpa: number;
  /** Size of the buffer area in bytes. */
  bufferSize: number;
  /** GPA of the shared ring area (page-aligned). */
  ringGpa: number;
  /** Size of the ring area in bytes. */
  ringSize: number;
}

/**
 * Builds guest memory in a standard layout and a mode over it, for tests, fuzzing, benches:
 * region `buffers` at GPA 0 (private in `confidential*` modes), region `rings` (shared), and for
 * bounce modes a shared region `swiotlb` holding the pool.
 * @throws RangeError for sizes that are not positive multiples of 4 KiB (and as
 * {@link createDmaMode}).
 */
export function createDmaLab(name: DmaModeName, options: DmaLabOptions = {}): DmaLab {
  const bufferSize = options.bufferSize ?? 8 * 1024 * 1024;
  const ringSize = options.ringSize ?? 1024 * 1024;
  const poolSize = options.poolSize ?? 4 * 1024 * 1024;
  const confidential = name === "confidential" || name === "confidential-iommu";
  const bounce = confidential || name === "swiotlb";
  // One backing store for all regions, as a guest's RAM is one host mapping: a bounce between a
  // buffer and its slot is one copyWithin, or with `fastCopy` one WebAssembly memmove.
  // (Sizes the regions refuse get no shared store, so the regions' own errors are thrown.)
  const sizes = bounce ? [bufferSize, ringSize, poolSize] : [bufferSize, ringSize];
  const backing = sizes.every((n) => Number.isSafeInteger(n) && n > 0 && n % 4096 === 0)
    ? (options.fastCopy ? createCopyableBacking(sizes.reduce((a, b) => a + b, 0)) : null) ??
      new ArrayBuffer(sizes.reduce((a, b) => a + b, 0))
    : undefined;
  const memory = new GuestMemory([
    { gpa: 0, size: bufferSize, private: confidential, name: "buffers", backing },
    {
      gpa: bufferSize,
      size: ringSize,
      name: "rings",
      backing,
      backingOffset: backing && bufferSize,
    },
  ]);
  if (bounce) {
    memory.addRegion({
      gpa: bufferSize + ringSize,
      size: poolSize,
      name: "swiotlb",
      backing,
      backingOffset: backing && bufferSize + ringSize,
    });
  }
  const mode = createDmaMode(name, memory, {
    ...options,
    pool: options.pool ?? (bounce ? { gpa: bufferSize + ringSize, size: poolSize } : undefined),
  });
  return { mode, memory, bufferGpa: 0, bufferSize, ringGpa: bufferSize, ringSize };
}
