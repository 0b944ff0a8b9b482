/**
 * Ring constants with the spec's names (spec §2.7 "Split Virtqueues", §2.8 "Packed Virtqueues",
 * and the header `virtio_ring.h` reproduced in the spec's appendix).
 * @module
 */

/** Largest Queue Size of either layout: 32768 descriptors (spec §2.7, §2.8: "up to 2^15"). */
export const VIRTQ_MAX_SIZE = 32768;

/** Descriptor continues via the `next` field (split) / the next ring slot (packed). */
export const VIRTQ_DESC_F_NEXT = 1;
/** Buffer is device-writable (otherwise device-readable). */
export const VIRTQ_DESC_F_WRITE = 2;
/** Buffer holds a table of descriptors (spec §2.7.5.3, §2.8.7). */
export const VIRTQ_DESC_F_INDIRECT = 4;
/** Packed: available flag, bit 7 (spec §2.8.1). */
export const VIRTQ_DESC_F_AVAIL = 1 << 7;
/** Packed: used flag, bit 15 (spec §2.8.1). */
export const VIRTQ_DESC_F_USED = 1 << 15;

/** Split available ring flag: the driver asks for no used-buffer notifications (spec §2.7.6). */
export const VIRTQ_AVAIL_F_NO_INTERRUPT = 1;
/** Legacy name of {@link VIRTQ_AVAIL_F_NO_INTERRUPT}. */
export const VRING_AVAIL_F_NO_INTERRUPT: number = VIRTQ_AVAIL_F_NO_INTERRUPT;
/** Split used ring flag: the device asks for no available-buffer notifications (spec §2.7.8). */
export const VIRTQ_USED_F_NO_NOTIFY = 1;
/** Legacy name of {@link VIRTQ_USED_F_NO_NOTIFY}. */
export const VRING_USED_F_NO_NOTIFY: number = VIRTQ_USED_F_NO_NOTIFY;

/** Packed event suppression: notifications enabled (spec §2.8.10 `RING_EVENT_FLAGS_ENABLE`). */
export const RING_EVENT_FLAGS_ENABLE = 0;
/** Packed event suppression: notifications disabled. */
export const RING_EVENT_FLAGS_DISABLE = 1;
/** Packed event suppression: notify at a specific descriptor (needs `VIRTIO_F_EVENT_IDX`). */
export const RING_EVENT_FLAGS_DESC = 2;
/** Linux name of {@link RING_EVENT_FLAGS_ENABLE}. */
export const VRING_PACKED_EVENT_FLAG_ENABLE: number = RING_EVENT_FLAGS_ENABLE;
/** Linux name of {@link RING_EVENT_FLAGS_DISABLE}. */
export const VRING_PACKED_EVENT_FLAG_DISABLE: number = RING_EVENT_FLAGS_DISABLE;
/** Linux name of {@link RING_EVENT_FLAGS_DESC}. */
export const VRING_PACKED_EVENT_FLAG_DESC: number = RING_EVENT_FLAGS_DESC;

/** Size in bytes of one descriptor, split or packed (spec §2.7.5, §2.8.13). */
export const VIRTQ_DESC_SIZE = 16;

/**
 * `vring_need_event` (spec §2.7.10 / virtio_ring.h): true when moving an index from `oldIdx` to
 * `newIdx` passes the event index `eventIdx`, all as u16 with wrap-around. Allocation-free.
 */
export function vringNeedEvent(eventIdx: number, newIdx: number, oldIdx: number): boolean {
  return ((newIdx - eventIdx - 1) & 0xffff) < ((newIdx - oldIdx) & 0xffff);
}
