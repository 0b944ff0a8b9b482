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

// Packed virtqueue (spec §2.8): layout, driver side, device side.
export * from "./virtio/packed/layout.ts";
export * from "./virtio/packed/driver.ts";
export * from "./virtio/packed/device.ts";
// --- DMA models (issue #4): device views, driver DMA APIs, mode factory -----------------------
export * from "./dma/clock.ts";
export * from "./dma/window.ts";
export * from "./dma/page_table.ts";
export * from "./dma/iotlb.ts";
export * from "./dma/iommu.ts";
export * from "./dma/confidential.ts";
export * from "./dma/compose.ts";
export * from "./dma/iova_allocator.ts";
export * from "./dma/flush_queue.ts";
export * from "./dma/direct_api.ts";
export * from "./dma/iommu_api.ts";
export * from "./dma/swiotlb.ts";
export * from "./dma/fallback_api.ts";
export * from "./dma/modes.ts";

// --- virtio-iommu (device ID 23, spec §5.13): device, endpoint DMA views, driver DmaApi -------
export * from "./devices/virtio_iommu/constants.ts";
export * from "./devices/virtio_iommu/config.ts";
export * from "./devices/virtio_iommu/requests.ts";
export * from "./devices/virtio_iommu/probe.ts";
export * from "./devices/virtio_iommu/events.ts";
export * from "./devices/virtio_iommu/mappings.ts";
export * from "./devices/virtio_iommu/endpoint_space.ts";
export * from "./devices/virtio_iommu/device.ts";
export * from "./devices/virtio_iommu/transport.ts";
export * from "./devices/virtio_iommu/driver_api.ts";
export * from "./devices/virtio_iommu/queues.ts";
export * from "./devices/virtio_iommu/stack.ts";

// --- inspect: decode memory images of live virtqueues and compare with QEMU (issue #9) --------
export * from "./inspect/inspect_error.ts";
export * from "./inspect/exact_json.ts";
export * from "./inspect/feature_names.ts";
export * from "./inspect/fixture.ts";
export * from "./inspect/qemu_oracle.ts";
export * from "./inspect/decoded_chain.ts";
export * from "./inspect/split_view.ts";
export * from "./inspect/packed_view.ts";
export * from "./inspect/inspect_queue.ts";
export * from "./inspect/compare_qemu.ts";
export * from "./inspect/hex_dump.ts";
export * from "./inspect/report_json.ts";
export * from "./inspect/engine_decode.ts";
export * from "./inspect/seeds.ts";
export * from "./inspect/hmp_xp.ts";
// --- platform topologies (issue #6): schema, presets, resolution, explanation ---
export * from "./platform/topology.ts";
export * from "./platform/policy.ts";
export * from "./platform/sparse_memory.ts";
export * from "./platform/models.ts";
export * from "./platform/resolve.ts";
export * from "./platform/explain.ts";
export * from "./platform/presets/mod.ts";
