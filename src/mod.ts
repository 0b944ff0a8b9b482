/**
 * virtq-lab: a spec-exact virtio virtqueue engine (split and packed rings, driver and device
 * sides) with IOMMU/DMA models, for fuzzing and benchmarking.
 *
 * Layers (imports point down): memory <- dma <- virtio rings <- devices <- platform.
 *
 * @module
 */

export * from "./memory/u64.ts";
export * from "./memory/fault.ts";
export * from "./memory/guest_memory.ts";
export * from "./dma/errors.ts";
export * from "./dma/types.ts";
export * from "./dma/identity.ts";
export * from "./virtio/constants.ts";
export * from "./virtio/features.ts";
export * from "./virtio/status.ts";
export * from "./virtio/errors.ts";
export * from "./virtio/sg_list.ts";
export * from "./virtio/chain.ts";
export * from "./virtio/queue.ts";

// --- platform topologies (issue #6): schema, presets, resolution, explanation ---
export * from "./platform/topology.ts";
export * from "./platform/policy.ts";
export * from "./platform/sparse_memory.ts";
export * from "./platform/resolve.ts";
export * from "./platform/explain.ts";
export * from "./platform/presets/mod.ts";
