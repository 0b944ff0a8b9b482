/**
 * The DMA layer's error catalogue: {@link DmaFault} on the device's side (a bus address that the
 * platform does not translate for this access) and {@link DmaMapError} on the driver's side (a
 * mapping the DMA API cannot make). Both name the bus address, the length and the reason.
 *
 * @module
 */

import { hex64, type U64 } from "../memory/u64.ts";

/**
 * Why a device access failed translation (device view, {@link DmaAddressSpace}).
 * - `unmapped`: no translation for the bus address (IOMMU page not present, no window covers it).
 * - `permission`: a translation exists but does not allow this access (read or write).
 * - `out-of-window`: outside every fixed-offset DMA window / beyond the address width.
 * - `private-memory`: the GPA is confidential-guest private memory the device cannot reach.
 * - `reserved-region`: the bus address is in a reserved region (e.g. the MSI doorbell window).
 * - `not-contiguous`: a structure that must be one contiguous GPA range (a ring) is not.
 * - `wrap`: `bus + length` exceeds 2^64 - 1.
 * - `no-domain`: the endpoint is attached to no domain and bypass is off (virtio-iommu R_DOMAIN).
 */
export type DmaFaultReason = typeof DMA_FAULT_REASONS[number];

/** Every {@link DmaFaultReason}, in catalogue order (the single source of the list). */
export const DMA_FAULT_REASONS = [
  "unmapped",
  "permission",
  "out-of-window",
  "private-memory",
  "reserved-region",
  "not-contiguous",
  "wrap",
  "no-domain",
] as const;

/** Access direction of a device access, as a bit mask: {@link DMA_ACCESS_READ}, {@link DMA_ACCESS_WRITE}. */
export type DmaAccess = number;
/** The device reads guest memory (a device-readable buffer, the rings it consumes). */
export const DMA_ACCESS_READ = 1;
/** The device writes guest memory (a device-writable buffer, the used ring). */
export const DMA_ACCESS_WRITE = 2;

/** Thrown by a {@link DmaAddressSpace} when the device's access cannot be translated. */
export class DmaFault extends Error {
  /** Stable error code, `DMA_FAULT`. */
  readonly code = "DMA_FAULT" as const;
  /** Why the translation failed. */
  readonly reason: DmaFaultReason;
  /** The bus address (IOVA) of the first byte, exact. */
  readonly bus: U64;
  /** Length of the access in bytes. */
  readonly length: number;
  /** The access that was attempted ({@link DMA_ACCESS_READ} / {@link DMA_ACCESS_WRITE}). */
  readonly access: DmaAccess;
  /** Name of the address space (layer) that faulted, e.g. `"vt-d"`, `"identity"`. */
  readonly layer: string;

  /**
   * Creates a translation fault.
   * @param reason why the translation failed.
   * @param bus bus address of the first byte.
   * @param length access length in bytes.
   * @param access attempted access bits.
   * @param layer name of the faulting address space.
   * @param detail optional extra explanation appended to the message.
   */
  constructor(
    reason: DmaFaultReason,
    bus: U64,
    length: number,
    access: DmaAccess,
    layer: string,
    detail = "",
  ) {
    const acc = access === DMA_ACCESS_READ ? "read" : access === DMA_ACCESS_WRITE ? "write" : "rw";
    super(
      `DMA_FAULT(${reason}) in ${layer}: device ${acc} of ${length} bytes at bus address ` +
        `${hex64(bus)}${detail ? `: ${detail}` : ""}`,
    );
    this.name = "DmaFault";
    this.reason = reason;
    this.bus = bus;
    this.length = length;
    this.access = access;
    this.layer = layer;
  }
}

/**
 * Why the driver's DMA API could not map a buffer.
 * - `mask`: the buffer ends above the device's DMA mask / bus limit (dma-direct `dma_capable`).
 * - `window`: no DMA window covers the buffer.
 * - `pool-exhausted`: no free bounce slots (swiotlb); Linux returns `-ENOMEM` since f7728002c1c7.
 * - `too-large`: larger than one mapping can be (swiotlb: 128 slots x 2 KiB = 256 KiB).
 * - `iova-exhausted`: no free IOVA range below the DMA mask.
 * - `not-mapped`: unmap/sync of a bus address that is not a live mapping.
 * - `private-memory`: coherent memory that cannot be shared with the device.
 * - `reserved-region`: the range collides with a reserved region.
 * - `transport`: the IOMMU request itself failed (e.g. a virtio-iommu MAP answered an error).
 * - `overlap`: an I/O page-table map over a page that is already mapped (VT-d: "PTE already set";
 *   virtio-iommu MAP over an existing mapping answers INVAL).
 * - `misaligned`: an I/O page-table map/unmap whose IOVA, GPA or size is not page-granular.
 */
export type DmaMapErrorReason = typeof DMA_MAP_ERROR_REASONS[number];

/** Every {@link DmaMapErrorReason}, in catalogue order (the single source of the list). */
export const DMA_MAP_ERROR_REASONS = [
  "mask",
  "window",
  "pool-exhausted",
  "too-large",
  "iova-exhausted",
  "not-mapped",
  "private-memory",
  "reserved-region",
  "transport",
  "overlap",
  "misaligned",
] as const;

/** Thrown by a {@link DmaApi} when a mapping cannot be made, found or synced. Never silent. */
export class DmaMapError extends Error {
  /** Stable error code, `DMA_MAP_ERROR`. */
  readonly code = "DMA_MAP_ERROR" as const;
  /** Why the mapping failed. */
  readonly reason: DmaMapErrorReason;
  /** GPA (for map) or bus address (for unmap/sync) of the first byte. */
  readonly address: U64;
  /** Length in bytes. */
  readonly length: number;
  /** Name of the DMA API mode, e.g. `"swiotlb"`. */
  readonly mode: string;

  /**
   * Creates a mapping error.
   * @param reason why the mapping failed.
   * @param address GPA (map) or bus address (unmap, sync).
   * @param length length in bytes.
   * @param mode name of the DMA API mode.
   * @param detail optional extra explanation.
   */
  constructor(
    reason: DmaMapErrorReason,
    address: U64,
    length: number,
    mode: string,
    detail = "",
  ) {
    super(
      `DMA_MAP_ERROR(${reason}) in ${mode}: ${length} bytes at ${hex64(address)}` +
        (detail ? `: ${detail}` : ""),
    );
    this.name = "DmaMapError";
    this.reason = reason;
    this.address = address;
    this.length = length;
    this.mode = mode;
  }
}
