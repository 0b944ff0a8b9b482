/** Shared set-up of the transport tests: a device, its registers, and driver queues. */
import {
  createDriverQueue,
  type DriverQueue,
  featureMask,
  GuestMemory,
  IdentityAddressSpace,
  initializeDevice,
  RawGpaDmaApi,
  type RingLayout,
  TransportDevice,
  type TransportDeviceOptions,
  VIRTIO_F_RING_PACKED,
  VIRTIO_F_VERSION_1,
  VirtioMmioRegisters,
  VirtioPciCommonCfg,
} from "../../src/mod.ts";

/** GPA of the driver ring memory of queue `i` (64 KiB apart). */
export const ringGpa = (i: number): number => 0x10000 * (i + 1);
/** GPA of the data buffers. */
export const DATA = 0x80000;

/** A device with `queues` queues over 1 MiB of memory, and both front-ends. */
export function rig(
  layout: RingLayout,
  extra: bigint = 0n,
  opts: Partial<TransportDeviceOptions> = {},
  queues = 2,
) {
  const memory = GuestMemory.flat(1 << 20);
  const features = featureMask(VIRTIO_F_VERSION_1) | extra |
    (layout === "packed" ? featureMask(VIRTIO_F_RING_PACKED) : 0n);
  const device = new TransportDevice({
    memory,
    dma: new IdentityAddressSpace(),
    deviceFeatures: features,
    queueSizeMax: new Array(queues).fill(256),
    msixVectors: 4,
    ...opts,
  });
  const pci = new VirtioPciCommonCfg(device);
  return {
    memory,
    device,
    features,
    pci,
    mmio: new VirtioMmioRegisters(device, 1),
    init(t: VirtioPciCommonCfg | VirtioMmioRegisters = pci): bigint {
      const n = initializeDevice(t, features);
      if (n === null) throw new Error("FEATURES_OK refused");
      return n;
    },
    driver<T>(i: number, size: number, negotiated: bigint, gpa = ringGpa(i)): DriverQueue<T> {
      return createDriverQueue<T>(layout, {
        memory,
        dma: new RawGpaDmaApi(),
        size,
        features: negotiated,
        ringGpa: gpa,
      });
    },
  };
}

/** The codes recorded by the device since index `from`. */
export function codesSince(device: TransportDevice, from = 0): string[] {
  return device.rejections.slice(from).map((r) => r.code);
}
