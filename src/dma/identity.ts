/**
 * Identity DMA: bus address = GPA, on both sides.
 *
 * - {@link IdentityAddressSpace}: the device's view with no IOMMU (or IOMMU bypass): the device
 *   dereferences bus addresses as GPAs (DMA_MODES.md M0/M1; QEMU `address_space_memory`).
 * - {@link RawGpaDmaApi}: the driver's view when `VIRTIO_F_ACCESS_PLATFORM` is not negotiated,
 *   the "DMA quirk" (Linux `vring_use_dma_api()` false): descriptors carry raw GPAs (spec §6
 *   "Reserved Feature Bits": "the device ... uses physical addresses").
 *
 * @module
 */

import type { U64 } from "../memory/u64.ts";
import { type DmaAccess, DmaFault, DmaMapError } from "./errors.ts";
import type { DmaAddressSpace, DmaApi, DmaDirection, DmaTranslation } from "./types.ts";

/** Largest GPA + 1 any platform has (52 physical address bits). */
const GPA_LIMIT = 2 ** 52;

/**
 * Device view with no translation: GPA = bus address. Faults (`out-of-window`) only for addresses
 * at or beyond 2^52, which no guest memory can have; holes in RAM are the memory layer's concern.
 */
export class IdentityAddressSpace implements DmaAddressSpace {
  /** Layer name for faults. */
  readonly name: string;
  /** Creates the identity view.
   * @param name layer name, default `"identity"`. */
  constructor(name = "identity") {
    this.name = name;
  }
  /** See {@link DmaAddressSpace.translate}. @throws DmaFault (`out-of-window`, `wrap`) */
  translate(bus: U64, length: number, access: DmaAccess, out: DmaTranslation): void {
    if (typeof bus !== "number" || bus + length > GPA_LIMIT) {
      throw new DmaFault("out-of-window", bus, length, access, this.name, "beyond 2^52");
    }
    out.gpa = bus;
    out.length = length;
  }
}

/**
 * The driver's DMA API when `VIRTIO_F_ACCESS_PLATFORM` is not negotiated (mode `none`): every
 * map returns the GPA unchanged and nothing is tracked, so unmap/sync never fail.
 */
export class RawGpaDmaApi implements DmaApi {
  /** Mode name, `"none"`. */
  readonly name = "none";
  /** Returns `gpa` unchanged. @throws DmaMapError (`mask`) only for a range beyond 2^52. */
  map(gpa: number, length: number, _dir: DmaDirection): U64 {
    if (gpa + length > GPA_LIMIT) throw new DmaMapError("mask", gpa, length, this.name);
    return gpa;
  }
  /** {@link DmaApi.mapNumber}: the GPA itself. */
  mapNumber(gpa: number, length: number, dir: DmaDirection): number {
    return this.map(gpa, length, dir) as number;
  }
  /** No-op. */
  unmap(_bus: U64, _length: number, _dir: DmaDirection): void {}
  /** No-op. */
  syncForCpu(_bus: U64, _length: number, _dir: DmaDirection): void {}
  /** No-op. */
  syncForDevice(_bus: U64, _length: number, _dir: DmaDirection): void {}
  /** Returns `gpa` unchanged. */
  mapCoherent(gpa: number, length: number): U64 {
    return this.map(gpa, length, 0);
  }
  /** No-op. */
  unmapCoherent(_bus: U64, _length: number): void {}
}
