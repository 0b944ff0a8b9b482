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
