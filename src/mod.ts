/**
 * virtq-lab: a spec-exact virtio virtqueue engine (split and packed rings, driver and device
 * sides) with IOMMU/DMA models, for fuzzing and benchmarking.
 *
 * Layers (imports point down): memory <- dma <- virtio <- devices / inspect <- platform.
 * Each folder has its own face (`src/<folder>/mod.ts`); this face composes them.
 *
 * @module
 */

export * from "./memory/mod.ts";
export * from "./dma/mod.ts";
export * from "./virtio/mod.ts";
export * from "./devices/mod.ts";
export * from "./inspect/mod.ts";
export * from "./platform/mod.ts";
export * from "./vhost_user/mod.ts";
