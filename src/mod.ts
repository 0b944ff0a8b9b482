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

// --- virtio-iommu (device ID 23, spec §5.13): device, endpoint DMA views, driver DmaApi -------
export * from "./devices/virtio_iommu/constants.ts";
export * from "./devices/virtio_iommu/config.ts";
export * from "./devices/virtio_iommu/requests.ts";
export * from "./devices/virtio_iommu/probe.ts";
export * from "./devices/virtio_iommu/events.ts";
export * from "./devices/virtio_iommu/mappings.ts";
export * from "./devices/virtio_iommu/endpoint_space.ts";
export * from "./devices/virtio_iommu/device.ts";
export * from "./devices/virtio_iommu/iova_allocator.ts";
export * from "./devices/virtio_iommu/transport.ts";
export * from "./devices/virtio_iommu/driver_api.ts";
export * from "./devices/virtio_iommu/stack.ts";
