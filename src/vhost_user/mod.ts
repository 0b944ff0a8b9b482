/**
 * vhost-user front-end: virtq-lab drives a real out-of-process virtio device (DPDK, QEMU's
 * storage daemon, any vhost-user back-end) with its own driver queues over memfd guest memory.
 *
 * Layers: libc through FFI (`libc.ts`, `socket.ts`), the message codec (`codec.ts`, pure and
 * zod-checked at the edge), the front-end connection (`frontend.ts`), memfd guest RAM
 * (`shared_memory.ts`), the device IOTLB fed from the project's IOMMU models
 * (`device_iotlb.ts`), a device session with `SplitDriverQueue` / `PackedDriverQueue`
 * (`device.ts`), and launchers for testpmd and qemu-storage-daemon (`backends.ts`).
 *
 * Importing needs no permission; talking to a back-end needs `--allow-ffi` (and `--allow-run`
 * to launch one). Every wait on the back-end has a deadline and ends in a typed outcome.
 *
 * @example Round-trip one frame through testpmd (needs the Debian packages and --allow-all)
 * ```ts ignore
 * import { SgList } from "../virtio/mod.ts";
 * import { startTestpmd, VhostUserDevice } from "./mod.ts";
 *
 * const be = await startTestpmd({ dir: "/tmp/vhu" });
 * const dev = VhostUserDevice.open({ socket: be.socket, layout: "packed", queues: 2 });
 * const [rx, tx] = dev.vrings;
 * rx.queue.add(SgList.of(), SgList.of([dev.bufferGpa, 2048]), 0);
 * dev.kick(0);
 * // write a virtio-net header + frame at dev.bufferGpa + 4096, then:
 * tx.queue.add(SgList.of([dev.bufferGpa + 4096, 12 + 60]), SgList.of(), 1);
 * dev.kick(1);
 * const got = dev.waitUsed(0, 2000); // { kind: "used", token: 0, len } or a typed outcome
 * console.log(got.kind);
 * dev.close();
 * await be.stop();
 * ```
 *
 * @module
 */

export * from "./errors.ts";
export * from "./protocol.ts";
export * from "./codec.ts";
export * from "./libc.ts";
export * from "./socket.ts";
export * from "./shared_memory.ts";
export * from "./frontend.ts";
export * from "./device_iotlb.ts";
export * from "./device.ts";
export * from "./backends.ts";
