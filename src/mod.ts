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
// --- split virtqueue engine, factory, pair helper, loopback device (issue #2) ---------------
export * from "./virtio/split/layout.ts";
export * from "./virtio/split/device.ts";
export * from "./virtio/split/driver.ts";
export * from "./virtio/factory.ts";
export * from "./virtio/pair.ts";
export * from "./devices/loopback.ts";
