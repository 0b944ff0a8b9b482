/**
 * What can be benchmarked on this branch, and how to build the {@link Benchable} of a case.
 * Ring layouts and DMA modes are added here as their implementations land on main.
 *
 * @module
 */

import type { Availability, CaseParams } from "./cases.ts";
import type { Benchable } from "./roundtrip.ts";
import { MemcpyLine, SolRing } from "./sol.ts";

/** Ring layouts and DMA modes present on this branch. */
export const AVAILABLE: Availability = {
  layouts: [],
  dmaModes: [],
};

/** Not yet on main, listed in the report so a reader knows what is missing. */
export const PENDING: readonly string[] = [
  "split ring (src/virtio/split, createQueuePair)",
  "packed ring",
  "DMA modes (window offset, IOMMU strict/lazy/pass-through, swiotlb)",
  "virtio-iommu",
];

/**
 * Builds the benchable of a case.
 * @throws Error when the case's engine or DMA mode is not available on this branch.
 */
export function createBenchable(p: CaseParams): Benchable {
  switch (p.engine) {
    case "sol": {
      const ring = new SolRing(p);
      return {
        chainsPerCall: p.batch,
        descriptorsPerCall: p.batch * p.chainLen,
        bytesPerCall: p.batch * p.payload,
        run: () => ring.roundTrip(),
      };
    }
    case "memcpy": {
      const line = new MemcpyLine(p);
      return {
        chainsPerCall: p.batch,
        descriptorsPerCall: 0,
        bytesPerCall: p.batch * p.payload,
        run: () => (line.run(), p.batch),
      };
    }
    default:
      throw new Error(`engine ${p.engine} is not on this branch yet (see PENDING)`);
  }
}
