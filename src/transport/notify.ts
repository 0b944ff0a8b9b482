/**
 * Available buffer notifications (spec §2.9 "Driver Notifications", §4.1.5.2 PCI, §4.2.3.3
 * MMIO): the value a driver writes, with and without VIRTIO_F_NOTIFICATION_DATA and
 * VIRTIO_F_NOTIF_CONFIG_DATA, for either ring layout. The device side check lives in
 * {@link TransportDevice.notify}.
 *
 * @module
 */

import {
  type DriverQueue,
  hasFeature,
  VIRTIO_F_NOTIF_CONFIG_DATA,
  VIRTIO_F_NOTIFICATION_DATA,
} from "../virtio/mod.ts";

/**
 * A decoded VIRTIO_F_NOTIFICATION_DATA value (spec §2.9, le32):
 * bits 0-15 `vq_notif_config_data` (the queue index, or with VIRTIO_F_NOTIF_CONFIG_DATA the
 * device's `queue_notify_data`), bits 16-30 `next_off`, bit 31 `next_wrap`.
 * Split: `next_off`/`next_wrap` are bits 0-14 / bit 15 of the available `idx`; packed: the ring
 * offset of the next descriptor the driver will make available and its wrap counter.
 */
export interface NotificationData {
  /** Queue identifier: index, or `queue_notify_data` under VIRTIO_F_NOTIF_CONFIG_DATA. */
  vq: number;
  /** 15-bit offset (split: low 15 bits of avail idx; packed: ring offset). */
  nextOff: number;
  /** 1-bit wrap (split: bit 15 of avail idx; packed: the driver's wrap counter). */
  nextWrap: number;
}

/** Encodes a notification data word (spec §2.9). `next16` is `next_off | next_wrap << 15`. */
export function encodeNotificationData(vq: number, next16: number): number {
  return ((vq & 0xffff) | ((next16 & 0xffff) << 16)) >>> 0;
}

/** Decodes a notification data word (spec §2.9). */
export function decodeNotificationData(value: number): NotificationData {
  const v = value >>> 0;
  return { vq: v & 0xffff, nextOff: (v >>> 16) & 0x7fff, nextWrap: v >>> 31 };
}

/** What a driver writes to notify a queue: the value and its width in bytes. */
export interface DriverNotification {
  /** The value written to the notification address / `QueueNotify`. */
  value: number;
  /** 2 (queue identifier only, PCI) or 4 (MMIO, or notification data). */
  width: 2 | 4;
}

/**
 * The driver side of an available buffer notification (spec §2.9, §4.1.5.2, §4.2.3.3), built
 * after {@link DriverQueue.kick} returned `true`:
 * - without VIRTIO_F_NOTIFICATION_DATA the queue identifier alone (PCI: le16; MMIO: the 32-bit
 *   `QueueNotify` register);
 * - with it the le32 of {@link encodeNotificationData} with the driver's published position.
 *
 * The identifier is `queueIndex`, or `queueNotifyData` when VIRTIO_F_NOTIF_CONFIG_DATA was
 * negotiated (PCI `queue_notify_data`, §4.1.4.3).
 * @param negotiated the negotiated features.
 * @param transport `"pci"` or `"mmio"` (MMIO notifications are always 32-bit).
 */
export function driverNotification(
  negotiated: bigint,
  transport: "pci" | "mmio",
  queueIndex: number,
  queue: Pick<DriverQueue<unknown>, "notificationNext">,
  queueNotifyData = queueIndex,
): DriverNotification {
  const id = transport === "pci" && hasFeature(negotiated, VIRTIO_F_NOTIF_CONFIG_DATA)
    ? queueNotifyData
    : queueIndex;
  if (hasFeature(negotiated, VIRTIO_F_NOTIFICATION_DATA)) {
    return { value: encodeNotificationData(id, queue.notificationNext()), width: 4 };
  }
  return { value: id & 0xffff, width: transport === "pci" ? 2 : 4 };
}
