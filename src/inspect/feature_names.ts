/**
 * Feature-bit numbers for the names QEMU prints in `x-query-virtio-status` (`"NAME: text"`), so a
 * fixture's negotiated features become the 64-bit mask the rings need (spec §6 "Reserved Feature
 * Bits" for the transport bits; §5.1.3, §5.2.3, §5.3.3, §5.4.3 for the device bits).
 * @module
 */

import { featureBit } from "../virtio/features.ts";

/** Transport (device-independent) feature names QEMU 7.2 prints, with their bit numbers. */
export const TRANSPORT_FEATURE_BITS: Readonly<Record<string, number>> = Object.freeze({
  VIRTIO_F_NOTIFY_ON_EMPTY: 24,
  VIRTIO_F_ANY_LAYOUT: 27,
  VIRTIO_RING_F_INDIRECT_DESC: 28,
  VIRTIO_RING_F_EVENT_IDX: 29,
  VHOST_USER_F_PROTOCOL_FEATURES: 30,
  VIRTIO_F_VERSION_1: 32,
  VIRTIO_F_IOMMU_PLATFORM: 33,
  VIRTIO_F_ACCESS_PLATFORM: 33,
  VIRTIO_F_RING_PACKED: 34,
  VIRTIO_F_IN_ORDER: 35,
  VIRTIO_F_ORDER_PLATFORM: 36,
  VIRTIO_F_SR_IOV: 37,
  VIRTIO_F_NOTIFICATION_DATA: 38,
  VIRTIO_F_RING_RESET: 40,
  VHOST_F_LOG_ALL: 26,
});

/** Device-specific feature names QEMU prints for the fixture devices, with their bit numbers. */
export const DEVICE_FEATURE_BITS: Readonly<Record<string, number>> = Object.freeze({
  // virtio-net (spec §5.1.3)
  VIRTIO_NET_F_CSUM: 0,
  VIRTIO_NET_F_GUEST_CSUM: 1,
  VIRTIO_NET_F_CTRL_GUEST_OFFLOADS: 2,
  VIRTIO_NET_F_MTU: 3,
  VIRTIO_NET_F_MAC: 5,
  VIRTIO_NET_F_GSO: 6,
  VIRTIO_NET_F_GUEST_TSO4: 7,
  VIRTIO_NET_F_GUEST_TSO6: 8,
  VIRTIO_NET_F_GUEST_ECN: 9,
  VIRTIO_NET_F_GUEST_UFO: 10,
  VIRTIO_NET_F_HOST_TSO4: 11,
  VIRTIO_NET_F_HOST_TSO6: 12,
  VIRTIO_NET_F_HOST_ECN: 13,
  VIRTIO_NET_F_HOST_UFO: 14,
  VIRTIO_NET_F_MRG_RXBUF: 15,
  VIRTIO_NET_F_STATUS: 16,
  VIRTIO_NET_F_CTRL_VQ: 17,
  VIRTIO_NET_F_CTRL_RX: 18,
  VIRTIO_NET_F_CTRL_VLAN: 19,
  VIRTIO_NET_F_CTRL_RX_EXTRA: 20,
  VIRTIO_NET_F_GUEST_ANNOUNCE: 21,
  VIRTIO_NET_F_MQ: 22,
  VIRTIO_NET_F_CTRL_MAC_ADDR: 23,
  VIRTIO_NET_F_HASH_REPORT: 57,
  VIRTIO_NET_F_RSS: 60,
  VIRTIO_NET_F_RSC_EXT: 61,
  VIRTIO_NET_F_STANDBY: 62,
  VIRTIO_NET_F_SPEED_DUPLEX: 63,
  // virtio-blk (spec §5.2.3)
  VIRTIO_BLK_F_BARRIER: 0,
  VIRTIO_BLK_F_SIZE_MAX: 1,
  VIRTIO_BLK_F_SEG_MAX: 2,
  VIRTIO_BLK_F_GEOMETRY: 4,
  VIRTIO_BLK_F_RO: 5,
  VIRTIO_BLK_F_BLK_SIZE: 6,
  VIRTIO_BLK_F_SCSI: 7,
  VIRTIO_BLK_F_FLUSH: 9,
  VIRTIO_BLK_F_TOPOLOGY: 10,
  VIRTIO_BLK_F_CONFIG_WCE: 11,
  VIRTIO_BLK_F_MQ: 12,
  VIRTIO_BLK_F_DISCARD: 13,
  VIRTIO_BLK_F_WRITE_ZEROES: 14,
  VIRTIO_BLK_F_LIFETIME: 15,
  VIRTIO_BLK_F_SECURE_ERASE: 16,
  VIRTIO_BLK_F_ZONED: 17,
  // virtio-console (spec §5.3.3)
  VIRTIO_CONSOLE_F_SIZE: 0,
  VIRTIO_CONSOLE_F_MULTIPORT: 1,
  VIRTIO_CONSOLE_F_EMERG_WRITE: 2,
});

/** QEMU's feature report: named transport and device bits, plus the bits it could not name. */
export interface QemuFeatureReport {
  /** `"NAME: description"` strings for transport bits. */
  transports: readonly string[];
  /** `"NAME: description"` strings for device bits. */
  "dev-features": readonly string[];
  /** Mask of bits QEMU has no name for (QEMU 7.2 puts `VIRTIO_F_RING_RESET`, bit 40, here). */
  "unknown-dev-features"?: number | bigint;
}

/**
 * Turns QEMU's feature report into a 64-bit mask.
 * @param report QEMU's `guest-features` (or `host-features`) object.
 * @returns the mask and the names it could not map (those bits are absent from the mask).
 */
export function featuresFromQemuReport(
  report: QemuFeatureReport,
): { mask: bigint; unknownNames: string[] } {
  let mask = 0n;
  const unknownNames: string[] = [];
  const add = (entry: string, table: Readonly<Record<string, number>>) => {
    const name = entry.split(":", 1)[0].trim();
    const bit = table[name];
    if (bit === undefined) unknownNames.push(name);
    else mask |= featureBit(bit);
  };
  for (const t of report.transports) add(t, TRANSPORT_FEATURE_BITS);
  for (const d of report["dev-features"]) add(d, DEVICE_FEATURE_BITS);
  const unknown = report["unknown-dev-features"];
  if (unknown !== undefined) mask |= BigInt(unknown);
  return { mask, unknownNames };
}
