/**
 * The transport around the rings: device-side models of the virtio-pci modern common
 * configuration (spec §4.1.4.3) and of the virtio-mmio registers (§4.2.2) over one
 * transport-independent device ({@link TransportDevice}: status state machine, feature windows,
 * queue configuration, per-queue reset, MSI-X vectors, configuration generation, notifications
 * with VIRTIO_F_NOTIFICATION_DATA / VIRTIO_F_NOTIF_CONFIG_DATA), the driver side that programs
 * them, and saved queue state (vhost-user vring base, restore into a fresh device). Queues are
 * created by the registers and driven by the engines of `src/virtio`. Rejected register writes
 * never throw: they are recorded with a catalogue code. See docs/TRANSPORT.md.
 *
 * @example Bring a split queue up through virtio-pci registers and move one buffer
 * ```ts
 * import {
 *   createDriverQueue, driverQueueFootprint, featureMask, GuestMemory, IdentityAddressSpace,
 *   initializeDevice, driverOk, notifyQueue, RawGpaDmaApi, setupQueue, SgList, TransportDevice,
 *   VIRTIO_F_VERSION_1, VirtioPciCommonCfg,
 * } from "../mod.ts";
 *
 * const memory = GuestMemory.flat(1 << 20);
 * const features = featureMask(VIRTIO_F_VERSION_1);
 * const device = new TransportDevice({
 *   memory, dma: new IdentityAddressSpace(), deviceFeatures: features, queueSizeMax: [256],
 * });
 * const pci = new VirtioPciCommonCfg(device);
 * const negotiated = initializeDevice(pci, features)!;
 * const driver = createDriverQueue<string>("split", {
 *   memory, dma: new RawGpaDmaApi(), size: 64, features: negotiated, ringGpa: 0,
 * });
 * setupQueue(pci, 0, 64, driver.addresses);
 * driverOk(pci);
 * const data = driverQueueFootprint("split", 64, negotiated);
 * driver.add(SgList.of([data, 16]), SgList.of([data + 64, 16]), "req");
 * if (driver.kick()) notifyQueue(pci, 0, driver);
 * const engine = device.queue(0)!.engine!;
 * const chain = engine.pop()!;
 * engine.push(chain, chain.copyReadableToWritable());
 * engine.flush();
 * if (driver.getUsed() !== "req") throw new Error("the buffer did not come back");
 * pci.write(0x18, 2, 100); // queue_size while enabled: rejected, recorded, nothing breaks
 * if (device.rejections[0].code !== "QUEUE_CONFIG_WHILE_ENABLED") throw new Error("not rejected");
 * ```
 *
 * @module
 */

export * from "./constants.ts";
export * from "./notify.ts";
export * from "./device.ts";
export * from "./pci.ts";
export * from "./mmio.ts";
export * from "./driver.ts";
export * from "./queue_state.ts";
