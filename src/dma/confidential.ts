/**
 * The device's view in a confidential guest (SEV, TDX, s390 PV, CCA): the host can only reach
 * **shared** pages; private (encrypted) pages are unreachable to a device. Linux says it for x86:
 * "For SEV and TDX, all DMA has to occur via shared/unencrypted pages" (DMA_MODES.md §2.1), which
 * is why such guests bounce through a shared swiotlb pool and require ACCESS_PLATFORM.
 *
 * {@link ConfidentialAddressSpace} is a filter over any other device view (identity, windows, an
 * IOMMU endpoint): it translates through the inner view, then faults `private-memory` when the
 * resulting GPA lies in a region whose `private` flag is set. Shared/private is per
 * {@link MemoryRegion} (a region's flag may be flipped at run time to model a page-state change);
 * the translated prefix stops at the region's end so the next region is checked on its own.
 *
 * @module
 */

import type { GuestMemory } from "../memory/guest_memory.ts";
import { hex64, type U64 } from "../memory/u64.ts";
import { type DmaAccess, DmaFault } from "./errors.ts";
import type { DmaAddressSpace, DmaTranslation } from "./types.ts";

/** A confidential-guest filter: the inner view's translation, restricted to shared memory. */
export class ConfidentialAddressSpace implements DmaAddressSpace {
  /** Layer name for faults. */
  readonly name: string;
  /** The view whose GPAs are filtered. */
  readonly inner: DmaAddressSpace;
  /** Guest memory whose regions carry the `private` flag. */
  readonly memory: GuestMemory;

  /**
   * Creates the filter.
   * @param inner the device view underneath (what the host's IOMMU/windows do).
   * @param memory guest memory with private/shared regions.
   * @param name layer name, default `"confidential"`.
   */
  constructor(inner: DmaAddressSpace, memory: GuestMemory, name = "confidential") {
    this.inner = inner;
    this.memory = memory;
    this.name = name;
  }

  /**
   * See {@link DmaAddressSpace.translate}.
   * @throws DmaFault `private-memory`, or whatever the inner view throws.
   */
  translate(bus: U64, length: number, access: DmaAccess, out: DmaTranslation): void {
    this.inner.translate(bus, length, access, out);
    const r = this.memory.regionAt(out.gpa);
    if (r === undefined) return; // a hole: the memory layer faults on the access itself
    if (r.private) {
      throw new DmaFault(
        "private-memory",
        bus,
        length,
        access,
        this.name,
        `GPA ${hex64(out.gpa)} is in private region ${r.name}`,
      );
    }
    const room = r.end - out.gpa;
    if (out.length > room) out.length = room;
  }
}
