/**
 * Devices on the engine: the loopback device and virtio-iommu (device ID 23, virtio 1.3 §5.13).
 *
 * @module
 */

export * from "./loopback.ts";
export * from "./virtio_iommu/constants.ts";
export * from "./virtio_iommu/config.ts";
export * from "./virtio_iommu/requests.ts";
export * from "./virtio_iommu/probe.ts";
export * from "./virtio_iommu/events.ts";
export * from "./virtio_iommu/mappings.ts";
export * from "./virtio_iommu/endpoint_space.ts";
export * from "./virtio_iommu/device.ts";
export * from "./virtio_iommu/transport.ts";
export * from "./virtio_iommu/driver_api.ts";
export * from "./virtio_iommu/queues.ts";
export * from "./virtio_iommu/stack.ts";
