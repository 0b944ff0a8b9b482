/**
 * Byte layout of a split virtqueue (spec §2.7 "Split Virtqueues"): the descriptor table, the
 * available ring (driver area) and the used ring (device area), their alignment, the Queue Size
 * rule, and the legacy single-block `vring_size` (spec §2.7.2 "Legacy Interfaces: A Note on
 * Virtqueue Layout").
 *
 * All sizes and offsets are in bytes. Ring sizes always include the event-index field
 * (`used_event` at the end of the available ring, `avail_event` at the end of the used ring),
 * as the spec's size table does.
 *
 * @module
 */

import { VIRTQ_DESC_SIZE, VIRTQ_MAX_SIZE } from "../constants.ts";

/** Required alignment in bytes of the descriptor table (spec §2.7 alignment table). */
export const SPLIT_DESC_ALIGN = 16;
/** Required alignment in bytes of the available ring (spec §2.7 alignment table). */
export const SPLIT_AVAIL_ALIGN = 2;
/** Required alignment in bytes of the used ring (spec §2.7 alignment table). */
export const SPLIT_USED_ALIGN = 4;

/** Offset in bytes of `flags` (le16) in the available ring (spec §2.7.6). */
export const SPLIT_AVAIL_FLAGS = 0;
/** Offset in bytes of `idx` (le16) in the available ring (spec §2.7.6). */
export const SPLIT_AVAIL_IDX = 2;
/** Offset in bytes of `ring[0]` (le16 entries) in the available ring (spec §2.7.6). */
export const SPLIT_AVAIL_RING = 4;
/** Offset in bytes of `flags` (le16) in the used ring (spec §2.7.8). */
export const SPLIT_USED_FLAGS = 0;
/** Offset in bytes of `idx` (le16) in the used ring (spec §2.7.8). */
export const SPLIT_USED_IDX = 2;
/** Offset in bytes of `ring[0]` in the used ring; each element is 8 bytes (spec §2.7.8). */
export const SPLIT_USED_RING = 4;
/** Size in bytes of one used element `struct virtq_used_elem { le32 id; le32 len; }`. */
export const SPLIT_USED_ELEM_SIZE = 8;

/**
 * True when `size` is a valid split Queue Size: a power of 2 from 1 to 32768 (spec §2.7:
 * "Queue Size value is always a power of 2. The maximum Queue Size value is 32768").
 */
export function isValidSplitQueueSize(size: number): boolean {
  return Number.isInteger(size) && size >= 1 && size <= VIRTQ_MAX_SIZE && (size & (size - 1)) === 0;
}

/** Bytes of the descriptor table for `size` descriptors: 16·size (spec §2.7). */
export function splitDescTableSize(size: number): number {
  return VIRTQ_DESC_SIZE * size;
}

/** Bytes of the available ring incl. `used_event`: 6 + 2·size (spec §2.7). */
export function splitAvailRingSize(size: number): number {
  return 6 + 2 * size;
}

/** Bytes of the used ring incl. `avail_event`: 6 + 8·size (spec §2.7). */
export function splitUsedRingSize(size: number): number {
  return 6 + SPLIT_USED_ELEM_SIZE * size;
}

/** Offset in bytes of `used_event` (le16, `avail->ring[size]`) in the available ring (§2.7.10). */
export function splitUsedEventOffset(size: number): number {
  return SPLIT_AVAIL_RING + 2 * size;
}

/** Offset in bytes of `avail_event` (le16, after `used->ring[size]`) in the used ring (§2.7.10). */
export function splitAvailEventOffset(size: number): number {
  return SPLIT_USED_RING + SPLIT_USED_ELEM_SIZE * size;
}

/** Rounds `value` up to a multiple of `align` (a power of 2). */
export function alignUp(value: number, align: number): number {
  return Math.ceil(value / align) * align;
}

/**
 * Legacy `vring_size(num, align)` (spec §2.7.2, Linux `vring_size`): one contiguous block with
 * the descriptor table and available ring first, the used ring starting at the next multiple of
 * `align` (4096 for legacy PCI).
 * @param num Queue Size in descriptors.
 * @param align alignment in bytes of the used ring, a power of 2.
 * @returns total bytes. Example: `vringSize(256, 4096) === 10246`.
 */
export function vringSize(num: number, align: number): number {
  return alignUp(splitDescTableSize(num) + splitAvailRingSize(num), align) +
    splitUsedRingSize(num);
}

/** Offsets (bytes from a base address) of the three areas of a split ring placed in one block. */
export interface SplitRingLayout {
  /** Queue Size in descriptors. */
  readonly size: number;
  /** Offset of the descriptor table (always 0). */
  readonly descOffset: number;
  /** Offset of the available ring. */
  readonly availOffset: number;
  /** Offset of the used ring. */
  readonly usedOffset: number;
  /** Bytes from the base to the end of the used ring. */
  readonly totalBytes: number;
}

/**
 * Places a split ring in one block: descriptor table at 0, available ring right after it, used
 * ring at the next multiple of `usedAlign` (default 4, the modern minimum; 4096 gives the legacy
 * layout, whose `totalBytes` equals {@link vringSize}).
 * @throws RangeError when `size` is not a valid split Queue Size.
 */
export function splitRingLayout(size: number, usedAlign = SPLIT_USED_ALIGN): SplitRingLayout {
  if (!isValidSplitQueueSize(size)) {
    throw new RangeError(`split queue size ${size} must be a power of 2 in 1..32768`);
  }
  const availOffset = splitDescTableSize(size);
  const usedOffset = alignUp(availOffset + splitAvailRingSize(size), usedAlign);
  return {
    size,
    descOffset: 0,
    availOffset,
    usedOffset,
    totalBytes: usedOffset + splitUsedRingSize(size),
  };
}
