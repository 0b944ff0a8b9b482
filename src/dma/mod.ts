/**
 * DMA models, the layer above guest memory. Two views of every mode:
 *
 * - the driver's {@link DmaApi} (Linux `dma_map_single` and friends): a buffer's GPA becomes the
 *   bus address (IOVA) written into a descriptor;
 * - the device's {@link DmaAddressSpace}: a bus address becomes a GPA again (identity, offset
 *   windows, IOMMU page tables with an IOTLB, swiotlb bounce buffers, confidential-guest filters).
 *
 * {@link createDmaMode} builds a consistent pair for each name in {@link DMA_MODE_NAMES};
 * {@link createDmaLab} adds a standard guest memory layout. Failures are typed: {@link DmaMapError}
 * on the driver side, {@link DmaFault} on the device side. This folder knows nothing of virtio.
 *
 * @example Map a buffer through a strict IOMMU, translate it as the device, unmap it
 * ```ts
 * import {
 *   createDmaLab,
 *   DMA_ACCESS_READ,
 *   DMA_TO_DEVICE,
 *   DmaFault,
 *   DmaTranslation,
 * } from "@virtq-lab/virtq-lab/dma";
 * import { assertEquals, assertThrows } from "@std/assert";
 *
 * const { mode } = createDmaLab("iommu-strict");
 * const bus = mode.api.map(0x1000, 64, DMA_TO_DEVICE); // an IOVA, not the GPA
 * const out = new DmaTranslation();
 * mode.space.translate(bus, 64, DMA_ACCESS_READ, out);
 * assertEquals([out.gpa, out.length], [0x1000, 64]);
 *
 * mode.api.unmap(bus, 64, DMA_TO_DEVICE); // strict mode invalidates the IOTLB at once
 * assertThrows(() => mode.space.translate(bus, 64, DMA_ACCESS_READ, out), DmaFault);
 * ```
 *
 * @module
 */

export * from "./errors.ts";
export * from "./types.ts";
export * from "./identity.ts";
export * from "./clock.ts";
export * from "./window.ts";
export * from "./page_table.ts";
export * from "./iotlb.ts";
export * from "./iommu.ts";
export * from "./confidential.ts";
export * from "./compose.ts";
export * from "./iova_allocator.ts";
export * from "./flush_queue.ts";
export * from "./direct_api.ts";
export * from "./iommu_api.ts";
export * from "./swiotlb.ts";
export * from "./fallback_api.ts";
export * from "./assembly.ts";
export * from "./modes.ts";
