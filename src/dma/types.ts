/**
 * The two views of DMA (see ARCHITECTURE.md):
 * - {@link DmaAddressSpace}: the **device's** view, bus address -> guest physical address (GPA),
 *   as the platform (IOMMU, windows, bounce pools) really translates it;
 * - {@link DmaApi}: the **driver's** view, GPA -> bus address, as the guest's DMA API
 *   (Linux `dma_map_*`) produces it.
 *
 * When both views are consistent a buffer's bytes arrive intact; when they disagree the data path
 * breaks, which is what the platform layer detects. Virtio reaches both through
 * `VIRTIO_F_ACCESS_PLATFORM` (spec §6 "Reserved Feature Bits"; without it the device uses raw
 * physical addresses).
 *
 * @module
 */

import type { U64 } from "../memory/u64.ts";
import { type DmaAccess, DmaFault } from "./errors.ts";

/**
 * Reusable out-parameter of {@link DmaAddressSpace.translate}, so that translation allocates
 * nothing on the hot path. Callers keep one instance per queue.
 */
export class DmaTranslation {
  /** GPA of the first translated byte. */
  gpa = 0;
  /** Bytes translated contiguously from `gpa` (1 .. requested length). */
  length = 0;
}

/**
 * The device's view of DMA: how a bus address it was handed becomes a GPA.
 *
 * Implementations: identity, offset windows, a paged IOMMU with an IOTLB, confidential-guest
 * filters, a virtio-iommu endpoint. The rings call `translate` on every descriptor buffer and once
 * per ring area at activation (rings are DMA too).
 */
export interface DmaAddressSpace {
  /** Short layer name used in faults and explanations, e.g. `"identity"`, `"vt-d"`. */
  readonly name: string;
  /**
   * Translates the longest prefix of `[bus, bus + length)` that maps to contiguous GPAs.
   * Writes the GPA and the prefix length (bytes, `1 <= out.length <= length`) into `out`; the
   * caller loops for the rest (a buffer may span several IOMMU mappings, HOSTILE_INPUTS #46).
   * Must not allocate on a hit.
   * @param bus bus address (IOVA) of the first byte, exact u64.
   * @param length bytes to translate, >= 1.
   * @param access {@link DMA_ACCESS_READ} and/or {@link DMA_ACCESS_WRITE}.
   * @param out receives the translation.
   * @throws DmaFault when the first byte cannot be translated for this access.
   */
  translate(bus: U64, length: number, access: DmaAccess, out: DmaTranslation): void;
}

/**
 * Translates `[bus, bus + length)` and requires it to be one contiguous GPA range, as a device
 * needs for a ring area (QEMU: "Cannot map desc/avail/used" when `address_space_cache_init`
 * returns less than the ring size).
 * @returns the GPA of the first byte.
 * @throws DmaFault (`not-contiguous` when translation splits, or the space's own fault).
 */
export function translateContiguous(
  space: DmaAddressSpace,
  bus: U64,
  length: number,
  access: DmaAccess,
  out: DmaTranslation,
): number {
  space.translate(bus, length, access, out);
  if (out.length < length) {
    throw new DmaFault(
      "not-contiguous",
      bus,
      length,
      access,
      space.name,
      `only ${out.length} bytes translate contiguously`,
    );
  }
  return out.gpa;
}

/**
 * Linux DMA direction of a mapping, from the CPU's point of view (`enum dma_data_direction`).
 * `DMA_BIDIRECTIONAL` = 0, `DMA_TO_DEVICE` = 1 (device-readable), `DMA_FROM_DEVICE` = 2
 * (device-writable). Numerically equal to the device access bits it permits, except 0 = both.
 */
export type DmaDirection = 0 | 1 | 2;
/** Both directions (`DMA_BIDIRECTIONAL`). */
export const DMA_BIDIRECTIONAL = 0;
/** CPU -> device: the device reads (`DMA_TO_DEVICE`). */
export const DMA_TO_DEVICE = 1;
/** Device -> CPU: the device writes (`DMA_FROM_DEVICE`). */
export const DMA_FROM_DEVICE = 2;

/**
 * The driver's view of DMA: the guest DMA API that turns a buffer's GPA into the bus address the
 * driver writes into a descriptor (Linux `dma_map_single`/`dma_unmap_single`/`dma_sync_*`).
 *
 * Streaming mappings (`map`) are per buffer; coherent mappings (`mapCoherent`) are for memory
 * both sides use concurrently for a long time (the rings, indirect tables are streaming).
 * Every failure is a thrown {@link DmaMapError}, never a silent wrong address.
 */
export interface DmaApi {
  /** Mode name, e.g. `"none"`, `"direct"`, `"iommu-strict"`, `"swiotlb"`. */
  readonly name: string;
  /**
   * Maps `length` bytes at `gpa` for `dir` and returns the bus address of the first byte
   * (exact u64; contiguous in bus space for the whole length).
   * @throws DmaMapError
   */
  map(gpa: number, length: number, dir: DmaDirection): U64;
  /**
   * Optional number-only fast path of {@link DmaApi.map}: when it can, maps exactly as `map`
   * would and returns the bus address as a number; otherwise (e.g. the bus address needs an exact
   * bigint, at or above 2^53) it returns -1 having mapped nothing, and the caller calls `map`.
   * Ring drivers use it so that a buffer's bus address stays an untagged double: `map`'s
   * `number | bigint` result is a tagged value, one 16-byte heap number per buffer at or above
   * 2^31 (windows at 2 GiB, IOVAs below 4 GiB).
   * @throws DmaMapError as `map`.
   */
  mapNumber?(gpa: number, length: number, dir: DmaDirection): number;
  /**
   * Ends a streaming mapping made by `map` with the same `length` and `dir` (bounce buffers copy
   * back device-written data here).
   * @throws DmaMapError (`not-mapped`)
   */
  unmap(bus: U64, length: number, dir: DmaDirection): void;
  /**
   * Optional number-only fast path of {@link DmaApi.unmap}: the bus address given as a 4 KiB page
   * number and the offset in that page (`bus = pfn * 4096 + offset`, integers, `0 <= offset <
   * 4096`), with exactly `unmap(bus, length, dir)`'s effect and errors. Both parts are small
   * integers for bus addresses below 2^42, so a ring driver passes no heap number even when V8
   * does not inline the call (one bus address at or above 2^30 passed as a number is a 16-byte
   * heap number per buffer: windows at 2 GiB, IOVAs below 4 GiB).
   * @throws DmaMapError (`not-mapped`) as `unmap`.
   */
  unmapPage?(pfn: number, offset: number, length: number, dir: DmaDirection): void;
  /** Makes device writes to a live mapping visible to the CPU. @throws DmaMapError */
  syncForCpu(bus: U64, length: number, dir: DmaDirection): void;
  /** Makes CPU writes to a live mapping visible to the device. @throws DmaMapError */
  syncForDevice(bus: U64, length: number, dir: DmaDirection): void;
  /**
   * Maps long-lived memory that both sides share without syncs (`dma_alloc_coherent`): the ring
   * areas. Never bounces; in a confidential guest the memory must be shared.
   * @throws DmaMapError
   */
  mapCoherent(gpa: number, length: number): U64;
  /** Ends a coherent mapping. @throws DmaMapError (`not-mapped`) */
  unmapCoherent(bus: U64, length: number): void;
}

/**
 * True when `api` has {@link DmaApi.unmapPage} from the same object as its `unmap` (nearest in the
 * prototype chain), so a caller may use the page-number form in place of `unmap`. A wrapper that
 * overrides only `unmap` (a subclass, or `Object.create(api)` with its own `unmap`) answers
 * `false`: its `unmap` must be the one called.
 */
export function hasUnmapPage(api: DmaApi): boolean {
  if (typeof api.unmapPage !== "function") return false;
  for (let o: object | null = api; o !== null; o = Object.getPrototypeOf(o)) {
    const u = Object.hasOwn(o, "unmap"), p = Object.hasOwn(o, "unmapPage");
    if (u || p) return u && p;
  }
  return false;
}
