/**
 * The driver-side and device-side virtqueue interfaces shared by the split (§2.7) and packed
 * (§2.8) layouts, so every fuzz target, benchmark and test runs on either layout by a parameter.
 *
 * @module
 */

import type { GuestMemory } from "../memory/guest_memory.ts";
import type { U64 } from "../memory/u64.ts";
import type { DmaAddressSpace, DmaApi } from "../dma/types.ts";
import type { Chain } from "./chain.ts";
import type { VirtqError } from "./errors.ts";
import type { SgList } from "./sg_list.ts";

/** Ring layout: split (spec §2.7) or packed (spec §2.8, `VIRTIO_F_RING_PACKED`). */
export type RingLayout = "split" | "packed";

/**
 * The three bus addresses a driver programs for a queue (virtio-pci common config `queue_desc`,
 * `queue_driver`, `queue_device`, spec §4.1.4.3):
 * split: descriptor table, available ring, used ring;
 * packed: descriptor ring, driver event suppression, device event suppression.
 */
export interface VirtqueueAddresses {
  /** Descriptor area (descriptor table / descriptor ring). */
  readonly descAddr: U64;
  /** Driver area (available ring / driver event suppression structure). */
  readonly driverAddr: U64;
  /** Device area (used ring / device event suppression structure). */
  readonly deviceAddr: U64;
}

/**
 * Device-side validation policy for inputs where implementations disagree
 * (HOSTILE_INPUTS.md: "make the behaviour an explicit, documented policy with the spec-strict
 * choice as the default").
 */
export interface ChainPolicy {
  /** Zero-length descriptors: `"reject"` (default, `DESC_ZERO_LENGTH`) or `"allow"`. */
  zeroLength: "reject" | "allow";
  /**
   * A descriptor with both INDIRECT and NEXT: `"reject"` (default, `INDIRECT_WITH_NEXT`) or
   * `"ignore-next"` (QEMU / rust-vmm: the chain ends with the table).
   */
  indirectWithNext: "reject" | "ignore-next";
  /** Flag bits the spec does not define: `"ignore"` (default, spec) or `"reject"`. */
  unknownFlags: "ignore" | "reject";
  /** Most GPA segments one chain may have (`CHAIN_TOO_MANY_SEGMENTS`); default 65536. */
  maxSegments: number;
}

/** The default, spec-strict {@link ChainPolicy}. */
export const DEFAULT_CHAIN_POLICY: Readonly<ChainPolicy> = Object.freeze({
  zeroLength: "reject",
  indirectWithNext: "reject",
  unknownFlags: "ignore",
  maxSegments: 65536,
});

/** Options to create a device-side queue of either layout. */
export interface DeviceQueueOptions {
  /** Guest memory. */
  memory: GuestMemory;
  /** The device's DMA view; every ring area and buffer address goes through it. */
  dma: DmaAddressSpace;
  /** Queue Size in descriptors. */
  size: number;
  /** Ring area bus addresses as the driver programmed them. */
  addresses: VirtqueueAddresses;
  /** Negotiated feature bits. */
  features: bigint;
  /** Validation policy overrides (default {@link DEFAULT_CHAIN_POLICY}). */
  policy?: Partial<ChainPolicy>;
}

/**
 * The device's side of a virtqueue: consumes available buffers and returns used ones.
 *
 * Errors: a hostile driver makes `pop` throw a {@link VirtqError} with a `device`-side code; the
 * queue is then `broken` (device status `DEVICE_NEEDS_RESET`, spec §2.1.2) and every later `pop`
 * returns `null` without touching memory until `reset`. Buffers already used stay used.
 */
export interface DeviceQueue {
  /** Layout. */
  readonly layout: RingLayout;
  /** Queue Size in descriptors. */
  readonly size: number;
  /** The error that broke the queue, or `null`. */
  readonly broken: VirtqError | null;
  /** Chains popped and not yet pushed. */
  readonly inFlight: number;
  /** True when the queue is activated (by construction or {@link DeviceQueue.activate}). */
  readonly ready: boolean;
  /**
   * Takes the next available chain, fully validated and translated, or `null` when none is
   * available (or the queue is broken). The returned chain is owned by the caller until `push`.
   * @throws VirtqError (device side) on a hostile driver; the queue becomes broken.
   * @throws VirtqError `QUEUE_NOT_READY` (api side, breaks nothing) after {@link DeviceQueue.reset}
   * until {@link DeviceQueue.activate} (spec §2.1.2, §4.1.4.3.2).
   */
  pop(): Chain | null;
  /**
   * Records `chain` as used with `written` bytes written to its writable part (spec §2.7.8 /
   * §2.8.5: "len = bytes written"). Not visible to the driver until {@link DeviceQueue.flush}.
   * @throws VirtqError `PUSH_INVALID` when the chain is not in flight or `written` exceeds
   * `chain.writableBytes`.
   */
  push(chain: Chain, written: number): void;
  /**
   * Publishes every pushed used buffer (split: used `idx`; packed: used descriptors' flags, the
   * first one last) and returns whether the driver must be notified (used buffer notification,
   * honouring `VIRTQ_AVAIL_F_NO_INTERRUPT` / `used_event` / the driver event suppression).
   */
  flush(): boolean;
  /**
   * Asks the driver for available buffer notifications (`true`) or not (`false`): split
   * `VIRTQ_USED_F_NO_NOTIFY` / `avail_event`, packed device event suppression (§2.7.10, §2.8.10).
   * @returns when enabling, whether buffers are already available (Linux `vhost_enable_notify`):
   * a driver that added them while notifications were off sends none, so the device must poll
   * again before sleeping. `false` when disabling, or while broken or not ready.
   */
  setNotifications(enabled: boolean): boolean;
  /**
   * Device reset of this queue (spec §2.1.2, §4.1.4.3.2 RING_RESET): forgets every position,
   * in-flight chain, pending used buffer and the broken state, touches no guest memory, and
   * leaves the queue NOT READY: `pop` throws `QUEUE_NOT_READY` until {@link DeviceQueue.activate}.
   */
  reset(): void;
  /**
   * (Re)activates the queue (the driver re-enabled it, e.g. `queue_enable` after re-initialising
   * the rings, spec §4.1.4.3.2): re-validates the Queue Size and the ring areas' alignment and
   * re-translates the ring areas through the device's DMA view, then makes the queue ready.
   * Positions are those left by construction or {@link DeviceQueue.reset}.
   * @throws VirtqError `QUEUE_SIZE_INVALID`, `RING_MISALIGNED`, `RING_UNMAPPED` (`cause`
   * attached); the queue then stays not ready and becomes broken with that error.
   */
  activate(): void;
}

/** Driver-side policy knobs. */
export interface DriverPolicy {
  /**
   * A used length above the chain's writable capacity: `"reject"` (default,
   * `USED_LEN_EXCEEDS_CAPACITY`, queue broken) or `"clamp"` (report the capacity, as MigTD does).
   */
  usedLenExceedsCapacity: "reject" | "clamp";
  /**
   * When to use an indirect table (needs `VIRTIO_F_INDIRECT_DESC`): `"never"`, `"always"` (for
   * any buffer of 2+ segments) or `"auto"` (default: 2+ segments and the ring lacks room, as
   * Linux does when `total_sg > 1 && num_free` is short).
   */
  indirect: "never" | "always" | "auto";
}

/** Options to create a driver-side queue of either layout. */
export interface DriverQueueOptions {
  /** Guest memory. */
  memory: GuestMemory;
  /** The driver's DMA API; ring areas are `mapCoherent`, buffers and indirect tables `map`. */
  dma: DmaApi;
  /** Queue Size in descriptors (split: a power of 2). */
  size: number;
  /** Negotiated feature bits. */
  features: bigint;
  /**
   * GPA of page-aligned guest memory the queue owns for its ring areas and its indirect-table
   * arena; `driverQueueFootprint` (per layout) gives the bytes needed.
   */
  ringGpa: number;
  /** Policy overrides. */
  policy?: Partial<DriverPolicy>;
}

/**
 * The driver's side of a virtqueue: adds buffers, notifies, and collects used buffers.
 *
 * Hardened against a hostile device as Linux `virtio_ring.c` is: `getUsed` throws a
 * {@link VirtqError} with a `driver`-side code, marks the queue broken and never returns a token
 * twice. Every descriptor address comes from the {@link DmaApi}.
 */
export interface DriverQueue<T> {
  /** Layout. */
  readonly layout: RingLayout;
  /** Queue Size in descriptors. */
  readonly size: number;
  /** The error that broke the queue, or `null`. */
  readonly broken: VirtqError | null;
  /** Free descriptors (split) / free ring slots (packed). */
  readonly numFree: number;
  /** Buffers added and not yet returned by `getUsed` or `detachUnused`. */
  readonly outstanding: number;
  /** Bus addresses of the ring areas, to program into the device. */
  readonly addresses: VirtqueueAddresses;
  /** Written length (bytes) reported for the token last returned by `getUsed`. */
  readonly usedLen: number;
  /**
   * Adds a buffer of device-readable then device-writable segments with an opaque token.
   * Not visible to the device until {@link DriverQueue.kick}.
   * @throws VirtqError `RING_FULL`, `BUFFER_EMPTY`, `QUEUE_BROKEN`, `DMA_MAP_FAILED`.
   */
  add(readable: SgList, writable: SgList, token: T): void;
  /**
   * Publishes added buffers (split: avail `idx`; packed: the first head's flags last) and
   * returns whether to send an available buffer notification (Linux `virtqueue_kick_prepare`).
   */
  kick(): boolean;
  /**
   * Returns the token of the next used buffer (and sets `usedLen`), or `undefined`.
   * @throws VirtqError (driver side) on a hostile device; the queue becomes broken.
   */
  getUsed(): T | undefined;
  /** Asks for used buffer notifications; returns `false` when used buffers are already pending. */
  enableCallbacks(): boolean;
  /** Asks for no used buffer notifications. */
  disableCallbacks(): void;
  /** After a device reset: returns the token of one buffer still outstanding, or `undefined`. */
  detachUnused(): T | undefined;
  /**
   * Driver side of a device or queue reset (spec §2.1.2, §4.1.4.3.2 VIRTIO_F_RING_RESET, Linux
   * `virtqueue_reset`): once every buffer was detached with {@link DriverQueue.detachUnused},
   * zeroes the ring areas and restarts every position (packed: both wrap counters at 1), the
   * free list and the broken state; the ring bus addresses stay the same. To re-enable a reset
   * queue with a new size or new addresses, create a new driver queue instead.
   * @throws Error when buffers are still outstanding.
   */
  resetRings(): void;
  /**
   * The 16-bit next position this driver last published, as the high half of a
   * VIRTIO_F_NOTIFICATION_DATA notification carries it (spec §2.9): split, the available
   * `idx` (bits 0-14 `next_off`, bit 15 `next_wrap`); packed, the ring offset of the next
   * descriptor it will make available (bits 0-14) and its wrap counter (bit 15).
   */
  notificationNext(): number;
}

/**
 * The state a VMM saves for one device queue (migration, vhost-user back-end reconnect) and
 * restores into a fresh device ({@link SplitDeviceQueue.restoreState},
 * {@link PackedDeviceQueue.restoreState}).
 *
 * Split (§2.7): `lastAvail` is the device's free-running `last_avail_idx` (u16), `used` its used
 * `idx` (u16); the wrap counters are unused (0). Packed (§2.8.1): `lastAvail` / `used` are ring
 * offsets below the Queue Size, with their wrap counters (0 or 1). `inFlight` lists the chains the
 * device popped and has not used yet: split, their head indices; packed, their Buffer IDs; in
 * pop order (required with VIRTIO_F_IN_ORDER, and for packed).
 */
export interface VirtqueueState {
  /** Ring layout. */
  layout: RingLayout;
  /** Queue Size the state was saved at. */
  size: number;
  /** Next available position (split u16 index; packed ring offset). */
  lastAvail: number;
  /** Packed: the device's available wrap counter (0/1); split: 0. */
  availWrap: number;
  /** Next used position (split u16 used `idx`; packed ring offset). */
  used: number;
  /** Packed: the device's used wrap counter (0/1); split: 0. */
  usedWrap: number;
  /** In-flight chains in pop order (split: heads; packed: Buffer IDs). */
  inFlight: number[];
}
