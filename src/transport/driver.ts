/**
 * The driver side of the transports: device initialization through the registers (spec
 * §3.1.1), queue setup (§4.1.5.1.3 PCI, §4.2.3.2 MMIO), per-queue reset (§4.1.4.3.2,
 * VIRTIO_F_RING_RESET, Linux `vp_modern_set_queue_reset`) and available buffer notifications
 * (§4.1.5.2, §4.2.3.3) with or without VIRTIO_F_NOTIFICATION_DATA. Works over either
 * {@link VirtioPciCommonCfg} or {@link VirtioMmioRegisters}.
 *
 * @module
 */

import { u64Hi, u64Lo } from "../memory/mod.ts";
import {
  type DriverQueue,
  VIRTIO_CONFIG_S_ACKNOWLEDGE,
  VIRTIO_CONFIG_S_DRIVER,
  VIRTIO_CONFIG_S_DRIVER_OK,
  VIRTIO_CONFIG_S_FEATURES_OK,
  type VirtqueueAddresses,
} from "../virtio/mod.ts";
import { VirtioMmioRegisters } from "./mmio.ts";
import type { NotifyResult } from "./device.ts";
import { driverNotification } from "./notify.ts";
import type { VirtioPciCommonCfg } from "./pci.ts";

/** Either register front-end. */
export type TransportRegisters = VirtioPciCommonCfg | VirtioMmioRegisters;

/** Bounded polls of a register the driver waits on (device reset, queue reset). */
export const TRANSPORT_POLL_LIMIT = 1000;

const isMmio = (t: TransportRegisters): t is VirtioMmioRegisters =>
  t instanceof VirtioMmioRegisters;

function status(t: TransportRegisters): number {
  return isMmio(t) ? t.read(0x070) : t.read(0x14, 1);
}
function setStatus(t: TransportRegisters, v: number): void {
  if (isMmio(t)) t.write(0x070, v);
  else t.write(0x14, 1, v);
}

/**
 * §3.1.1 steps 1-6: reset (write 0, wait for 0), ACKNOWLEDGE, DRIVER, read the device features
 * (two 32-bit windows), write `wanted & offered`, FEATURES_OK, and re-read status.
 * @returns the features accepted when FEATURES_OK stuck, or `null` when the device refused them
 * (the driver then sets FAILED, §3.1.1 step 6) or did not finish its reset in
 * {@link TRANSPORT_POLL_LIMIT} reads.
 */
export function initializeDevice(t: TransportRegisters, wanted: bigint): bigint | null {
  setStatus(t, 0);
  let polls = 0;
  while (status(t) !== 0) if (++polls >= TRANSPORT_POLL_LIMIT) return null;
  setStatus(t, VIRTIO_CONFIG_S_ACKNOWLEDGE);
  setStatus(t, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
  let offered = 0n;
  for (let w = 0; w < 2; w++) {
    if (isMmio(t)) {
      t.write(0x014, w);
      offered |= BigInt(t.read(0x010)) << BigInt(32 * w);
    } else {
      t.write(0x00, 4, w);
      offered |= BigInt(t.read(0x04, 4)) << BigInt(32 * w);
    }
  }
  const accept = offered & wanted;
  for (let w = 0; w < 2; w++) {
    const v = Number((accept >> BigInt(32 * w)) & 0xffff_ffffn);
    if (isMmio(t)) {
      t.write(0x024, w);
      t.write(0x020, v);
    } else {
      t.write(0x08, 4, w);
      t.write(0x0c, 4, v);
    }
  }
  const s = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK;
  setStatus(t, s);
  if ((status(t) & VIRTIO_CONFIG_S_FEATURES_OK) === 0) return null;
  return accept;
}

/** §3.1.1 step 8: sets DRIVER_OK. */
export function driverOk(t: TransportRegisters): void {
  setStatus(t, status(t) | VIRTIO_CONFIG_S_DRIVER_OK);
}

/**
 * Programs and enables queue `index` (§4.1.5.1.3 / §4.2.3.2): select, size, ring addresses,
 * MSI-X vector (PCI, when given), enable; reads the enable bit back.
 * @returns whether the queue reads as enabled afterwards.
 */
export function setupQueue(
  t: TransportRegisters,
  index: number,
  size: number,
  addresses: VirtqueueAddresses,
  msixVector?: number,
): boolean {
  const a = [addresses.descAddr, addresses.driverAddr, addresses.deviceAddr];
  if (isMmio(t)) {
    t.write(0x030, index);
    t.write(0x038, size);
    for (let i = 0; i < 3; i++) {
      t.write(0x080 + 0x10 * i, u64Lo(a[i]));
      t.write(0x084 + 0x10 * i, u64Hi(a[i]));
    }
    t.write(0x044, 1);
    return t.read(0x044) === 1;
  }
  t.write(0x16, 2, index);
  t.write(0x18, 2, size);
  for (let i = 0; i < 3; i++) {
    t.write(0x20 + 8 * i, 4, u64Lo(a[i]));
    t.write(0x24 + 8 * i, 4, u64Hi(a[i]));
  }
  if (msixVector !== undefined) t.write(0x1a, 2, msixVector);
  t.write(0x1c, 2, 1);
  return t.read(0x1c, 2) === 1;
}

/**
 * Per-queue reset, driver side (VIRTIO_F_RING_RESET, §4.1.4.3.2 / §4.2.3.? QueueReset): writes 1
 * to `queue_reset`, waits (bounded) until it reads 0, then detaches every buffer the driver
 * queue still owns and re-initialises its rings (`resetRings`, Linux `virtqueue_reset`).
 * @returns the tokens detached, or `null` when the reset did not complete in
 * {@link TRANSPORT_POLL_LIMIT} reads.
 */
export function resetQueue<T>(
  t: TransportRegisters,
  index: number,
  queue?: DriverQueue<T>,
): T[] | null {
  const mmio = isMmio(t);
  if (mmio) {
    t.write(0x030, index);
    t.write(0x0c0, 1);
  } else {
    t.write(0x16, 2, index);
    t.write(0x3a, 2, 1);
  }
  let polls = 0;
  while ((mmio ? t.read(0x0c0) : t.read(0x3a, 2)) !== 0) {
    if (++polls >= TRANSPORT_POLL_LIMIT) return null;
  }
  const tokens: T[] = [];
  if (queue !== undefined) {
    for (let tok = queue.detachUnused(); tok !== undefined; tok = queue.detachUnused()) {
      tokens.push(tok);
    }
    queue.resetRings();
  }
  return tokens;
}

/**
 * Sends the available buffer notification for queue `index` after `queue.kick()` returned true:
 * the value of {@link driverNotification}, written to the queue's notification address (PCI) or
 * `QueueNotify` (MMIO).
 * @returns what the device made of it.
 */
export function notifyQueue(
  t: TransportRegisters,
  index: number,
  queue: Pick<DriverQueue<unknown>, "notificationNext">,
): NotifyResult {
  const d = t.device;
  const n = driverNotification(
    d.negotiated,
    isMmio(t) ? "mmio" : "pci",
    index,
    queue,
    d.queue(index)?.notifyData ?? index,
  );
  if (isMmio(t)) return t.write(0x050, n.value)!;
  return t.notify(t.notifyAddress(index) ?? 0, n.width, n.value);
}
