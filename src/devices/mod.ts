/**
 * Devices built on the engine: the {@link LoopbackDevice} (copies each chain's readable bytes
 * into its writable part) and virtio-iommu (device ID 23, virtio 1.3 §5.13): requests, probe
 * properties, events, per-endpoint address spaces, the device model and its driver-side API.
 *
 * @example A loopback device answering one request
 * ```ts
 * import { LoopbackDevice } from "@virtq-lab/virtq-lab/devices";
 * import { createQueuePair, SgList } from "@virtq-lab/virtq-lab/virtio";
 * import { assertEquals } from "@std/assert";
 *
 * const { memory, driver, device, dataGpa } = createQueuePair<string>({ layout: "packed", size: 8 });
 * const loopback = new LoopbackDevice(device);
 * memory.write(dataGpa, new TextEncoder().encode("echo"));
 * driver.add(SgList.of([dataGpa, 4]), SgList.of([dataGpa + 0x100, 4]), "r1");
 * if (driver.kick()) loopback.process();
 *
 * assertEquals(driver.getUsed(), "r1");
 * assertEquals(new TextDecoder().decode(memory.view(dataGpa + 0x100, driver.usedLen)), "echo");
 * ```
 *
 * @module
 */

export * from "./loopback.ts";
export * from "./virtio_iommu/constants.ts";
export {
  defaultViommuConfig,
  viommuGranule,
  VIRTIO_IOMMU_CONFIG_BYPASS,
  VIRTIO_IOMMU_CONFIG_DOMAIN_END,
  VIRTIO_IOMMU_CONFIG_DOMAIN_START,
  VIRTIO_IOMMU_CONFIG_INPUT_END,
  VIRTIO_IOMMU_CONFIG_INPUT_START,
  VIRTIO_IOMMU_CONFIG_PAGE_SIZE_MASK,
  VIRTIO_IOMMU_CONFIG_PROBE_SIZE,
  type VirtioIommuConfig,
} from "./virtio_iommu/config.ts";
export type {
  ViommuAttach,
  ViommuDecodeResult,
  ViommuDetach,
  ViommuMap,
  ViommuProbe,
  ViommuRequest,
  ViommuUnmap,
} from "./virtio_iommu/requests.ts";
export type { ViommuResvMem } from "./virtio_iommu/probe.ts";
export type { ViommuFaultReport } from "./virtio_iommu/events.ts";
export { type ViommuMapping, ViommuMappingTree } from "./virtio_iommu/mappings.ts";
export * from "./virtio_iommu/endpoint_space.ts";
export * from "./virtio_iommu/device.ts";
export * from "./virtio_iommu/transport.ts";
export * from "./virtio_iommu/driver_api.ts";
export * from "./virtio_iommu/queues.ts";
export * from "./virtio_iommu/stack.ts";
