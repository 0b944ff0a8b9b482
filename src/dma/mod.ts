/**
 * DMA models: device views (`DmaAddressSpace`: identity, windows, IOMMU page tables + IOTLB, swiotlb) and driver views (`DmaApi`), IOVA allocation, `DmaFault`, the mode factory.
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
