/**
 * Packed virtqueue memory layout (spec §2.8 "Packed Virtqueues", §2.8.10, §2.8.13, §2.8.14).
 *
 * Three areas, each in guest memory the driver allocates:
 * - the descriptor ring (Descriptor Area): Queue Size descriptors of 16 bytes, aligned to 16;
 * - the driver event suppression structure (Driver Area): 4 bytes, aligned to 4, written by the
 *   driver, read by the device (it controls used buffer notifications);
 * - the device event suppression structure (Device Area): 4 bytes, aligned to 4, written by the
 *   device, read by the driver (it controls available buffer notifications).
 *
 * Packed descriptor (§2.8.13, all little-endian):
 * `le64 addr` at 0, `le32 len` at 8, `le16 id` (Buffer ID) at 12, `le16 flags` at 14.
 * Event suppression structure (§2.8.14): `le16 desc` = `off` (bits 0..14) | `wrap` (bit 15) at 0,
 * `le16 flags` (bits 0..1: `RING_EVENT_FLAGS_*`) at 2.
 *
 * @module
 */

import { VIRTQ_MAX_SIZE } from "../constants.ts";

/** Size in bytes of one packed descriptor (spec §2.8.13). */
export const PACKED_DESC_SIZE = 16;
/** Byte offset of `addr` (le64) in a packed descriptor. */
export const PACKED_DESC_ADDR_OFFSET = 0;
/** Byte offset of `len` (le32) in a packed descriptor. */
export const PACKED_DESC_LEN_OFFSET = 8;
/** Byte offset of `id`, the Buffer ID (le16), in a packed descriptor. */
export const PACKED_DESC_ID_OFFSET = 12;
/** Byte offset of `flags` (le16) in a packed descriptor. */
export const PACKED_DESC_FLAGS_OFFSET = 14;

/** Required alignment in bytes of the packed descriptor ring (spec §2.8.10.1 / §2.6 table). */
export const PACKED_DESC_RING_ALIGN = 16;
/** Required alignment in bytes of each event suppression structure (spec §2.6 table). */
export const PACKED_EVENT_ALIGN = 4;
/** Size in bytes of an event suppression structure (spec §2.8.14). */
export const PACKED_EVENT_SIZE = 4;
/** Byte offset of `desc` (off | wrap << 15, le16) in an event suppression structure. */
export const PACKED_EVENT_OFF_WRAP_OFFSET = 0;
/** Byte offset of `flags` (le16) in an event suppression structure. */
export const PACKED_EVENT_FLAGS_OFFSET = 2;
/** Bit of the wrap counter in the event suppression `desc` field (spec §2.8.14). */
export const PACKED_EVENT_WRAP_SHIFT = 15;
/** Mask of the descriptor offset in the event suppression `desc` field. */
export const PACKED_EVENT_OFF_MASK = 0x7fff;
/** Mask of the `flags` field bits that carry meaning (`RING_EVENT_FLAGS_*`, 2 bits). */
export const PACKED_EVENT_FLAGS_MASK = 3;

/** Bit number of `VIRTQ_DESC_F_AVAIL` in a packed descriptor's flags (spec §2.8.1). */
export const PACKED_DESC_F_AVAIL_SHIFT = 7;
/** Bit number of `VIRTQ_DESC_F_USED` in a packed descriptor's flags (spec §2.8.1). */
export const PACKED_DESC_F_USED_SHIFT = 15;

/**
 * True when `size` is a valid packed Queue Size: an integer 1..32768; powers of two are not
 * required (spec §2.8: "up to 2^15 entries"; HOSTILE_INPUTS #2).
 */
export function isValidPackedQueueSize(size: number): boolean {
  return Number.isInteger(size) && size >= 1 && size <= VIRTQ_MAX_SIZE;
}

/** Bytes of the packed descriptor ring for `size` descriptors: `16 * size` (spec §2.8.10.1). */
export function packedDescRingSize(size: number): number {
  return PACKED_DESC_SIZE * size;
}

/**
 * Flags a driver writes to make a descriptor available (spec §2.8.1): `VIRTQ_DESC_F_AVAIL` equal
 * to the driver's wrap counter, `VIRTQ_DESC_F_USED` its inverse.
 * @param wrap the driver's (avail) wrap counter, 0 or 1.
 * @returns the two flag bits to OR into the descriptor's other flags.
 */
export function packedAvailFlags(wrap: number): number {
  return wrap !== 0 ? 1 << PACKED_DESC_F_AVAIL_SHIFT : 1 << PACKED_DESC_F_USED_SHIFT;
}

/**
 * Flags a device writes to mark a descriptor used (spec §2.8.1): both `VIRTQ_DESC_F_AVAIL` and
 * `VIRTQ_DESC_F_USED` equal to the device's used wrap counter.
 * @param wrap the device's used wrap counter, 0 or 1.
 */
export function packedUsedFlags(wrap: number): number {
  return wrap !== 0 ? (1 << PACKED_DESC_F_AVAIL_SHIFT) | (1 << PACKED_DESC_F_USED_SHIFT) : 0;
}

/**
 * True when a descriptor with `flags` is available for a device whose avail wrap counter is
 * `wrap` (spec §2.8.1: AVAIL != USED and AVAIL == wrap). Inconsistent bits, both set or both clear,
 * or a stale wrap, mean "not available" (HOSTILE_INPUTS #31), never an error.
 */
export function isPackedDescAvail(flags: number, wrap: number): boolean {
  const avail = (flags >>> PACKED_DESC_F_AVAIL_SHIFT) & 1;
  const used = (flags >>> PACKED_DESC_F_USED_SHIFT) & 1;
  return avail !== used && avail === wrap;
}

/**
 * True when a descriptor with `flags` is used for a driver whose used wrap counter is `wrap`
 * (spec §2.8.1: AVAIL == USED == wrap; Linux `is_used_desc_packed`). Anything else is "not used
 * yet" (HOSTILE_INPUTS #43), never an error.
 */
export function isPackedDescUsed(flags: number, wrap: number): boolean {
  const avail = (flags >>> PACKED_DESC_F_AVAIL_SHIFT) & 1;
  const used = (flags >>> PACKED_DESC_F_USED_SHIFT) & 1;
  return avail === used && used === wrap;
}

/** Encodes the event suppression `desc` field: `off` (0..32767) | `wrap` << 15 (spec §2.8.14). */
export function packedEventOffWrap(off: number, wrap: number): number {
  return (off & PACKED_EVENT_OFF_MASK) | ((wrap & 1) << PACKED_EVENT_WRAP_SHIFT);
}

/**
 * Whether an event suppression structure in `RING_EVENT_FLAGS_DESC` mode asks for a notification
 * after the ring position moved from `old` to `now` (QEMU `vring_packed_need_event`, Linux
 * `virtqueue_kick_prepare_packed`). Positions are linear: `now` is the current ring offset
 * (0..size-1) with wrap counter `wrap`; `old = now - advanced` may be negative when the move
 * crossed the ring end. An event whose wrap bit differs from `wrap` refers to the previous lap,
 * so its offset is shifted down by `size`. Then the split formula `vring_need_event` applies, as
 * u16 arithmetic. Allocation-free.
 * @param offWrap the structure's `desc` field.
 * @param now position after the move (0..size-1).
 * @param advanced slots advanced by the move (0..size).
 * @param wrap wrap counter belonging to `now`.
 * @param size Queue Size.
 */
export function packedNeedEvent(
  offWrap: number,
  now: number,
  advanced: number,
  wrap: number,
  size: number,
): boolean {
  let ev = offWrap & PACKED_EVENT_OFF_MASK;
  if ((offWrap >>> PACKED_EVENT_WRAP_SHIFT) !== wrap) ev -= size;
  const old = now - advanced;
  return ((now - ev - 1) & 0xffff) < ((now - old) & 0xffff);
}

/** Where each part of a packed queue lives inside a driver's ring memory, in bytes from its start. */
export interface PackedRingLayout {
  /** Queue Size. */
  readonly size: number;
  /** Offset of the descriptor ring (0). */
  readonly descOffset: number;
  /** Bytes of the descriptor ring (`16 * size`). */
  readonly descBytes: number;
  /** Offset of the driver event suppression structure (aligned to 4). */
  readonly driverEventOffset: number;
  /** Offset of the device event suppression structure (aligned to 4). */
  readonly deviceEventOffset: number;
  /** Offset of the indirect-table arena (aligned to 16); equals `ringBytes` when there is none. */
  readonly indirectOffset: number;
  /** Bytes of one buffer ID's indirect table in the arena (0 without indirect descriptors). */
  readonly indirectTableBytes: number;
  /** Bytes of the ring areas (descriptor ring and both event structures). */
  readonly ringBytes: number;
  /** Total bytes, rounded up to a 4096-byte page. */
  readonly totalBytes: number;
}

/** Most descriptors in one indirect table the packed driver builds (per buffer ID). */
export const PACKED_DRIVER_INDIRECT_MAX = 16;

/**
 * Computes the driver's placement of a packed queue: descriptor ring first, then the driver and
 * the device event suppression structures, then (when `indirect`) one indirect table of
 * {@link PACKED_DRIVER_INDIRECT_MAX} descriptors per buffer ID.
 * @param size Queue Size, 1..32768.
 * @param indirect whether `VIRTIO_F_INDIRECT_DESC` is negotiated.
 * @throws RangeError when `size` is not a valid packed Queue Size.
 */
export function packedRingLayout(size: number, indirect: boolean): PackedRingLayout {
  if (!isValidPackedQueueSize(size)) {
    throw new RangeError(`packed Queue Size ${size} is not in 1..32768 (spec §2.8)`);
  }
  const descBytes = packedDescRingSize(size);
  const driverEventOffset = descBytes; // a multiple of 16, hence of 4
  const deviceEventOffset = driverEventOffset + PACKED_EVENT_SIZE;
  const ringBytes = deviceEventOffset + PACKED_EVENT_SIZE;
  const indirectOffset = (ringBytes + 15) & ~15;
  const indirectTableBytes = indirect ? PACKED_DRIVER_INDIRECT_MAX * PACKED_DESC_SIZE : 0;
  const end = indirect ? indirectOffset + size * indirectTableBytes : ringBytes;
  return {
    size,
    descOffset: 0,
    descBytes,
    driverEventOffset,
    deviceEventOffset,
    indirectOffset: indirect ? indirectOffset : ringBytes,
    indirectTableBytes,
    ringBytes,
    totalBytes: Math.ceil(end / 4096) * 4096,
  };
}
