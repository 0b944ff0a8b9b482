/**
 * virtq-lab: a spec-exact virtio virtqueue engine (split and packed rings, driver and device
 * sides) with IOMMU/DMA models, for fuzzing and benchmarking.
 *
 * This face composes the folder faces, one per layer (imports point down):
 *
 * | layer | face | what |
 * | ----- | ---- | ---- |
 * | memory | `@virtq-lab/virtq-lab/memory` | guest memory, exact 64-bit accessors |
 * | dma | `@virtq-lab/virtq-lab/dma` | driver DMA APIs and device address spaces per DMA mode |
 * | virtio | `@virtq-lab/virtq-lab/virtio` | split and packed rings, both sides; the error catalogue |
 * | devices | `@virtq-lab/virtq-lab/devices` | loopback device, virtio-iommu |
 * | inspect | `@virtq-lab/virtq-lab/inspect` | decoding captured rings, QEMU comparison |
 * | platform | `@virtq-lab/virtq-lab/platform` | topologies, presets, end-to-end verdicts |
 *
 * @example A buffer through a split ring whose driver maps through a strict IOMMU
 * ```ts
 * import {
 *   createDmaLab,
 *   createQueuePair,
 *   featureMask,
 *   LoopbackDevice,
 *   SgList,
 *   VIRTIO_F_ACCESS_PLATFORM,
 *   VIRTIO_F_VERSION_1,
 * } from "@virtq-lab/virtq-lab";
 * import { assertEquals } from "@std/assert";
 *
 * const lab = createDmaLab("iommu-strict");
 * const { memory, driver, device } = createQueuePair<string>({
 *   layout: "split",
 *   size: 256,
 *   features: featureMask(VIRTIO_F_VERSION_1, VIRTIO_F_ACCESS_PLATFORM),
 *   memory: lab.memory,
 *   ringGpa: lab.ringGpa,
 *   dmaApi: lab.mode.api,
 *   dmaSpace: lab.mode.space,
 * });
 * const loopback = new LoopbackDevice(device);
 *
 * memory.write(0x1000, new TextEncoder().encode("hello, device"));
 * driver.add(SgList.of([0x1000, 13]), SgList.of([0x2000, 64]), "request-1");
 * if (driver.kick()) loopback.process();
 * assertEquals(driver.getUsed(), "request-1");
 * assertEquals(new TextDecoder().decode(memory.view(0x2000, driver.usedLen)), "hello, device");
 * ```
 *
 * @module
 */

export * from "./memory/mod.ts";
export * from "./dma/mod.ts";
export * from "./virtio/mod.ts";
export * from "./devices/mod.ts";
export * from "./inspect/mod.ts";
export * from "./platform/mod.ts";
export * from "./transport/mod.ts";
export * from "./vhost_user/mod.ts";
