/**
 * Internals of the devices that the fuzz targets and tests use but the public face (`mod.ts`)
 * hides: the virtio-iommu wire encoders and decoders (requests, faults, probe properties, config
 * space) and the mapping tree's key comparison. No stability promise: import `mod.ts` unless you
 * are part of this project.
 *
 * @module
 */

export * from "./mod.ts";
export * from "./virtio_iommu/requests.ts";
export * from "./virtio_iommu/events.ts";
export * from "./virtio_iommu/probe.ts";
export * from "./virtio_iommu/config.ts";
export * from "./virtio_iommu/mappings.ts";
