/**
 * Device-independent feature bits (spec §6 "Reserved Feature Bits") and helpers.
 *
 * Feature sets are 64-bit, so they are `bigint` masks (negotiation is a cold path); constants
 * named `VIRTIO_F_*` are **bit numbers**, as in the spec. Queues turn the bits they need into
 * booleans at construction.
 *
 * @module
 */

/** Bit 24, legacy: notify on empty avail ring. */
export const VIRTIO_F_NOTIFY_ON_EMPTY = 24;
/** Bit 27, legacy: arbitrary descriptor layouts. */
export const VIRTIO_F_ANY_LAYOUT = 27;
/** Bit 28: indirect descriptors (spec §2.7.5.3 / §2.8.7 "Indirect Descriptors"). */
export const VIRTIO_F_INDIRECT_DESC = 28;
/** Linux / legacy name of {@link VIRTIO_F_INDIRECT_DESC}. */
export const VIRTIO_RING_F_INDIRECT_DESC: number = VIRTIO_F_INDIRECT_DESC;
/** Bit 29: `used_event` / `avail_event` notification suppression (spec §2.7.7, §2.7.10). */
export const VIRTIO_F_EVENT_IDX = 29;
/** Linux / legacy name of {@link VIRTIO_F_EVENT_IDX}. */
export const VIRTIO_RING_F_EVENT_IDX: number = VIRTIO_F_EVENT_IDX;
/** Bit 32: virtio 1.x device. */
export const VIRTIO_F_VERSION_1 = 32;
/** Bit 33: the device is behind the platform's DMA translation (was `VIRTIO_F_IOMMU_PLATFORM`). */
export const VIRTIO_F_ACCESS_PLATFORM = 33;
/** Old name of {@link VIRTIO_F_ACCESS_PLATFORM}. */
export const VIRTIO_F_IOMMU_PLATFORM: number = VIRTIO_F_ACCESS_PLATFORM;
/** Bit 34: packed virtqueue layout (spec §2.8). */
export const VIRTIO_F_RING_PACKED = 34;
/** Bit 35: buffers are used in the order they are made available. */
export const VIRTIO_F_IN_ORDER = 35;
/** Bit 36: hardware-grade memory ordering required. */
export const VIRTIO_F_ORDER_PLATFORM = 36;
/** Bit 37: SR-IOV. */
export const VIRTIO_F_SR_IOV = 37;
/** Bit 38: notifications carry the next avail position. */
export const VIRTIO_F_NOTIFICATION_DATA = 38;
/** Bit 39: notification config data. */
export const VIRTIO_F_NOTIF_CONFIG_DATA = 39;
/** Bit 40: per-queue reset. */
export const VIRTIO_F_RING_RESET = 40;
/** Bit 41: admin virtqueue. */
export const VIRTIO_F_ADMIN_VQ = 41;

/** The single-bit mask of feature bit `bit`. */
export function featureBit(bit: number): bigint {
  return 1n << BigInt(bit);
}

/** True when feature bit `bit` is set in `features`. */
export function hasFeature(features: bigint, bit: number): boolean {
  return ((features >> BigInt(bit)) & 1n) === 1n;
}

/** A feature mask with all the given bits set. */
export function featureMask(...bits: number[]): bigint {
  let m = 0n;
  for (const b of bits) m |= featureBit(b);
  return m;
}
