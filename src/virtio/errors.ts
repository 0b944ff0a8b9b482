/**
 * The catalogue of virtqueue errors: every hostile or invalid input either side can meet has one
 * stable code here, with the side that detects it, the spec rule it enforces, and the row of
 * `HOSTILE_INPUTS.md` it answers.
 *
 * A device queue that raises one of the `device` codes enters the broken state (device status
 * `DEVICE_NEEDS_RESET`, spec §2.1.2) and consumes nothing more until reset; a driver queue that
 * raises a `driver` code is marked broken as Linux's `BAD_RING` does. `api` codes are misuse by
 * the caller of this library (or ordinary conditions such as a full ring) and break nothing.
 *
 * @module
 */

/**
 * Which side detects an error: the device (hostile driver), the driver (hostile device), the API,
 * or the transport around the rings (registers, notifications, saved queue state; src/transport).
 */
export type VirtqErrorSide = "device" | "driver" | "api" | "transport";

/** A ring layout (spec §2.7 split, §2.8 packed). */
export type VirtqLayout = "split" | "packed";

/** One catalogue entry. */
export interface VirtqErrorInfo {
  /** Who detects it. */
  readonly side: VirtqErrorSide;
  /**
   * The ring layouts whose queues raise it. Per-layout code lists (class docs, tests, fuzz
   * oracles) are derived from this with {@link virtqErrorCodes}, never kept by hand.
   */
  readonly layouts: readonly VirtqLayout[];
  /** The spec section (and rule) or best practice the check enforces. */
  readonly spec: string;
  /** One line: what is wrong. */
  readonly summary: string;
  /** Row number(s) of `HOSTILE_INPUTS.md` (b) this answers, if any. */
  readonly hostile?: readonly number[];
}

const BOTH: readonly VirtqLayout[] = ["split", "packed"];
const SPLIT: readonly VirtqLayout[] = ["split"];
const PACKED: readonly VirtqLayout[] = ["packed"];

/**
 * Every virtqueue error code. Keys are the stable code strings carried by {@link VirtqError.code}.
 */
export const VIRTQ_ERRORS = {
  // --- Queue configuration / activation (device side) -------------------------------------
  QUEUE_SIZE_INVALID: {
    side: "device",
    layouts: BOTH,
    spec: "§2.7 Split: Queue Size is a power of 2, at most 32768; §2.8 Packed: 1..32768 (not 0)",
    summary: "queue size is 0, above 32768, or (split) not a power of 2",
    hostile: [1, 2, 45],
  },
  RING_MISALIGNED: {
    side: "device",
    layouts: BOTH,
    spec:
      "§2.7 / §2.6 Virtqueue alignment: split desc 16, avail 2, used 4; packed desc 16, events 4",
    summary: "a ring area's bus address is not aligned as the spec requires",
    hostile: [3],
  },
  RING_UNMAPPED: {
    side: "device",
    layouts: BOTH,
    spec:
      "§2.7/§2.8 ring areas must be in memory the device can reach (QEMU: Cannot map desc/avail/used)",
    summary: "a ring area does not translate to one contiguous guest memory range, or overflows",
    hostile: [4],
  },
  QUEUE_NOT_READY: {
    side: "api",
    layouts: BOTH,
    spec:
      "§2.1.2 / §2.6 / §4.1.4.3.2 after a (queue) reset the device MUST NOT process the queue until it is re-enabled",
    summary:
      "pop() on a device queue that was reset and not re-activated (call activate() once the driver re-initialised the rings)",
    hostile: [5, 37],
  },
  // --- Available side, split (device side) ------------------------------------------------
  AVAIL_IDX_JUMP: {
    side: "device",
    layouts: SPLIT,
    spec: "§2.7.6 driver MUST NOT decrement idx; at most Queue Size buffers outstanding",
    summary: "avail idx moved by more than the queue size since the device's last position",
    hostile: [8],
  },
  AVAIL_HEAD_OUT_OF_RANGE: {
    side: "device",
    layouts: SPLIT,
    spec: "§2.7.6 avail ring entries are descriptor-table indices < Queue Size",
    summary: "an available ring entry (chain head) is not below the queue size",
    hostile: [9],
  },
  HEAD_IN_USE: {
    side: "device",
    layouts: BOTH,
    spec:
      "§2.7.13.1 a buffer is owned by the device until used; in-use count < Queue Size (CVE-2016-5403)",
    summary: "a chain head was made available again while the device still owns it",
    hostile: [10],
  },
  // --- Descriptor chains (device side) ----------------------------------------------------
  DESC_NEXT_OUT_OF_RANGE: {
    side: "device",
    layouts: SPLIT,
    spec: "§2.7.5 next is an index into the descriptor table (or indirect table)",
    summary: "a descriptor's next index is not below the table size",
    hostile: [12],
  },
  DESC_CHAIN_LOOP: {
    side: "device",
    layouts: BOTH,
    spec: "§2.7.5.2 loops are forbidden; a chain has at most Queue Size descriptors",
    summary: "a chain visits more descriptors than its table holds (a loop or an overlong chain)",
    hostile: [13],
  },
  CHAIN_TOO_MANY_BYTES: {
    side: "device",
    layouts: BOTH,
    spec:
      "§2.7.5.2 / §2.8.4.2 a chain MUST NOT exceed 2^32 bytes; policy: used len is le32; chains of 2^32 bytes are rejected",
    summary: "the chain's total length exceeds 2^32 - 1 bytes (the largest used len can report)",
    hostile: [14],
  },
  DESC_ADDR_WRAP: {
    side: "device",
    layouts: BOTH,
    spec: "§2.7.5 a buffer is [addr, addr + len); it cannot wrap the 64-bit address space",
    summary: "a descriptor's addr + len exceeds 2^64",
    hostile: [15],
  },
  DESC_BUFFER_FAULT: {
    side: "device",
    layouts: BOTH,
    spec:
      "§2.7.5 buffers are guest memory the device can reach through its DMA translation (§6 ACCESS_PLATFORM)",
    summary:
      "a descriptor's buffer does not translate (DMA fault) or is not backed by guest memory",
    hostile: [15, 46, 47],
  },
  DESC_ZERO_LENGTH: {
    side: "device",
    layouts: BOTH,
    spec: "policy (peers disagree; QEMU: zero sized buffers are not allowed): strict by default",
    summary: "a descriptor has len 0 (rejected under the default strict policy)",
    hostile: [16],
  },
  DESC_READABLE_AFTER_WRITABLE: {
    side: "device",
    layouts: BOTH,
    spec: "§2.7.4.2 / §2.8.4 Message Framing: device-writable descriptors come after readable ones",
    summary: "a device-readable descriptor follows a device-writable one in the chain",
    hostile: [17],
  },
  DESC_UNKNOWN_FLAGS: {
    side: "device",
    layouts: BOTH,
    spec: "policy: reserved flag bits are ignored by default (spec), rejected under strict flags",
    summary: "a descriptor sets flag bits the spec does not define (strict-flags policy only)",
    hostile: [19],
  },
  CHAIN_TOO_MANY_SEGMENTS: {
    side: "device",
    layouts: BOTH,
    spec: "§2.7.4 Message Framing: the device MAY limit descriptors per chain",
    summary: "the chain has more segments than the device's configured limit",
    hostile: [20],
  },
  IN_ORDER_VIOLATION: {
    side: "device",
    layouts: SPLIT,
    spec:
      "§2.7.5.2 with VIRTIO_F_IN_ORDER, next of descriptor x is x + 1 (wrapping) / table entries sequential",
    summary: "with IN_ORDER negotiated, a chain or head is not sequential",
  },
  // --- Indirect descriptors (device side) -------------------------------------------------
  INDIRECT_NOT_NEGOTIATED: {
    side: "device",
    layouts: BOTH,
    spec: "§2.7.5.3.1 driver MUST NOT set VIRTQ_DESC_F_INDIRECT unless VIRTIO_F_INDIRECT_DESC",
    summary: "an indirect descriptor appears but VIRTIO_F_INDIRECT_DESC was not negotiated",
    hostile: [22],
  },
  INDIRECT_LEN_MISALIGNED: {
    side: "device",
    layouts: BOTH,
    spec: "§2.7.5.3 / §2.8.7 the table holds len/16 descriptors",
    summary: "an indirect descriptor's len is not a multiple of 16",
    hostile: [23],
  },
  INDIRECT_LEN_ZERO: {
    side: "device",
    layouts: BOTH,
    spec: "§2.7.5.3 an indirect table holds at least one descriptor",
    summary: "an indirect descriptor's len is 0",
    hostile: [24],
  },
  INDIRECT_TABLE_TOO_LONG: {
    side: "device",
    layouts: BOTH,
    spec: "§2.7.5.3.1 a chain (including an indirect table) MUST NOT exceed Queue Size",
    summary: "an indirect table holds more descriptors than the queue size",
    hostile: [25],
  },
  INDIRECT_NESTED: {
    side: "device",
    layouts: BOTH,
    spec: "§2.7.5.3.1 / §2.8.7 driver MUST NOT set VIRTQ_DESC_F_INDIRECT inside an indirect table",
    summary: "an indirect table contains an indirect descriptor",
    hostile: [26],
  },
  INDIRECT_WITH_NEXT: {
    side: "device",
    layouts: BOTH,
    spec:
      "§2.7.5.3.1 driver MUST NOT set both INDIRECT and NEXT (policy: strict reject by default)",
    summary: "a descriptor sets both VIRTQ_DESC_F_INDIRECT and VIRTQ_DESC_F_NEXT",
    hostile: [27],
  },
  INDIRECT_TABLE_FAULT: {
    side: "device",
    layouts: BOTH,
    spec: "§2.7.5.3 the indirect table is guest memory the device can reach",
    summary: "the indirect table does not translate to one contiguous guest memory range",
    hostile: [30],
  },
  PACKED_INDIRECT_IN_LIST: {
    side: "device",
    layouts: PACKED,
    spec:
      "§2.8.7.1 driver MUST NOT set VIRTQ_DESC_F_INDIRECT on a descriptor of a NEXT-linked list",
    summary: "a packed chain contains an indirect descriptor linked with VIRTQ_DESC_F_NEXT",
    hostile: [27],
  },
  PACKED_CHAIN_UNAVAILABLE: {
    side: "device",
    layouts: PACKED,
    spec: "§2.8.6 driver makes the whole list available before the head (head flags written last)",
    summary: "a packed chain continues into a descriptor that is not available",
    hostile: [31],
  },
  // --- Used side (driver side: hostile device) --------------------------------------------
  USED_ID_OUT_OF_RANGE: {
    side: "driver",
    layouts: BOTH,
    spec: "§2.7.8 / §2.8.5 used id is a head index / buffer ID < Queue Size (Linux BAD_RING)",
    summary: "a used element names an id not below the queue size",
    hostile: [38],
  },
  USED_ID_NOT_HEAD: {
    side: "driver",
    layouts: BOTH,
    spec:
      "§2.7.8 / §2.8.5 used id names a buffer the driver made available (Linux: is not a head!)",
    summary: "a used element names an id that is not an outstanding chain head",
    hostile: [39],
  },
  USED_LEN_EXCEEDS_CAPACITY: {
    side: "driver",
    layouts: BOTH,
    spec:
      "§2.7.8.1 used len is the number of bytes written into the writable buffers (policy: reject)",
    summary: "a used length is larger than the chain's device-writable capacity",
    hostile: [40],
  },
  USED_IDX_JUMP: {
    side: "driver",
    layouts: SPLIT,
    spec: "§2.7.8 the device MUST NOT use more buffers than were made available",
    summary: "the used index moved by more than the number of outstanding buffers",
    hostile: [41],
  },
  // --- API (caller) errors ----------------------------------------------------------------
  RING_FULL: {
    side: "api",
    layouts: BOTH,
    spec: "§2.7.13 / §2.8.21 the driver needs free descriptors for the whole chain (-ENOSPC)",
    summary: "not enough free descriptors for the buffer",
  },
  QUEUE_BROKEN: {
    side: "api",
    layouts: BOTH,
    spec: "§2.1.2 after DEVICE_NEEDS_RESET the queue is unusable until reset (Linux: -EIO)",
    summary: "the queue is broken; reset it",
  },
  BUFFER_EMPTY: {
    side: "api",
    layouts: BOTH,
    spec: "§2.7.13 a buffer has at least one segment",
    summary: "add() was called with no segments, or a segment of length 0",
  },
  DMA_MAP_FAILED: {
    side: "api",
    layouts: BOTH,
    spec: "§6 VIRTIO_F_ACCESS_PLATFORM: buffers are mapped through the DMA API (Linux -ENOMEM)",
    summary: "the driver's DMA API could not map a buffer or table; nothing was added",
  },
  PUSH_INVALID: {
    side: "api",
    layouts: BOTH,
    spec: "§2.7.8.2 device returns only buffers it popped; len <= writable capacity",
    summary: "push() of a chain that is not outstanding, or with len beyond its writable bytes",
  },
  // --- Transport registers (device side: hostile driver writes, src/transport/) -----------
  // A rejected register write changes nothing (the register keeps its value) and never breaks
  // a running queue; the device records the code (`TransportDevice.rejections`).
  REGISTER_ACCESS_INVALID: {
    side: "transport",
    layouts: BOTH,
    spec:
      "§4.1.3.1 the driver MUST access each field with its natural width; §4.2.2.2 MMIO registers are 32-bit, aligned; writes to read-only fields are ignored",
    summary:
      "a register access at an unknown offset, with the wrong width, or a write to a read-only register",
  },
  STATUS_TRANSITION_INVALID: {
    side: "transport",
    layouts: BOTH,
    spec:
      "§2.1.2 the driver MUST NOT clear a device status bit (only a write of 0 resets); §3.1.1 bits are set in order ACKNOWLEDGE, DRIVER, FEATURES_OK, DRIVER_OK",
    summary:
      "a device_status write that clears a bit, skips a step of the initialization order, or sets DEVICE_NEEDS_RESET",
  },
  FEATURES_WRITE_INVALID: {
    side: "transport",
    layouts: BOTH,
    spec:
      "§3.1.1 features are written before FEATURES_OK and not changed after; §2.2.1 the driver MUST NOT accept a feature the device did not offer",
    summary:
      "driver_feature written after FEATURES_OK (or outside DRIVER), or FEATURES_OK asked for a feature set the device did not offer",
  },
  QUEUE_SELECT_OUT_OF_RANGE: {
    side: "transport",
    layouts: BOTH,
    spec:
      "§4.1.4.3 queue_select names a queue below num_queues; §4.2.2 QueueSel: QueueNumMax reads 0 for an unavailable queue",
    summary: "a queue register was written while queue_select names no queue",
  },
  QUEUE_SIZE_WRITE_INVALID: {
    side: "transport",
    layouts: BOTH,
    spec:
      "§4.1.4.3.2 the driver MAY reduce queue_size; it MUST NOT write a value that is not a power of 2 (split); §2.7/§2.8 size 1..32768; §4.2.2.2 QueueNum <= QueueNumMax",
    summary: "queue_size / QueueNum written as 0, above the maximum, or (split) not a power of 2",
  },
  QUEUE_CONFIG_WHILE_ENABLED: {
    side: "transport",
    layouts: BOTH,
    spec:
      "§4.1.4.3.2 the driver MUST configure the other virtqueue fields before enabling the virtqueue; §4.2.2.2 QueueNum/addresses only while QueueReady is 0",
    summary: "queue size, ring addresses or vector written while the queue is enabled",
  },
  QUEUE_ENABLE_INVALID: {
    side: "transport",
    layouts: BOTH,
    spec:
      "§4.1.4.3.2 the driver MUST NOT write a 0 to queue_enable; a queue is enabled once, after FEATURES_OK (§3.1.1 step 7)",
    summary:
      "queue_enable written with 0 or a value other than 1, on an enabled queue, or before FEATURES_OK",
  },
  QUEUE_RESET_INVALID: {
    side: "transport",
    layouts: BOTH,
    spec:
      "§4.1.4.3.2 / §4.2.2.2 queue_reset (QueueReset) is written only with 1, only when VIRTIO_F_RING_RESET was negotiated",
    summary: "queue_reset written without VIRTIO_F_RING_RESET, or with a value other than 1",
  },
  MSIX_VECTOR_INVALID: {
    side: "transport",
    layouts: BOTH,
    spec:
      "§4.1.5.1.2 a vector above the MSI-X table cannot be mapped: the device reads back NO_VECTOR (0xffff)",
    summary: "config_msix_vector / queue_msix_vector written with a vector outside the MSI-X table",
  },
  NOTIFY_QUEUE_INVALID: {
    side: "transport",
    layouts: BOTH,
    spec:
      "§4.1.5.2 / §4.2.2 an available buffer notification names an existing, enabled queue (QEMU ignores others)",
    summary:
      "a notification for a queue that does not exist, is not enabled, or (NOTIF_CONFIG_DATA) an unknown queue_notify_data",
  },
  NOTIFICATION_DATA_MISMATCH: {
    side: "transport",
    layouts: BOTH,
    spec:
      "§2.9 with VIRTIO_F_NOTIFICATION_DATA next_off/next_wrap give where the driver writes next: it cannot be behind the device or ahead of the ring",
    summary:
      "the notification's next_off / next_wrap disagree with the ring (the ring is authoritative)",
  },
  // --- Saved queue state (restore after migration / back-end reconnect) --------------------
  RESTORE_STATE_INVALID: {
    side: "transport",
    layouts: BOTH,
    spec:
      "vhost-user SET_VRING_BASE (split bits 0-15; packed bits 0-14 + wrap bit 15, used 16-30 + bit 31); §2.8.1 offsets below Queue Size, wrap counters 0/1",
    summary:
      "a saved queue state that is malformed in itself (offset beyond the size, in-flight heads out of range or repeated, more in flight than the ring holds)",
  },
  RESTORE_RING_MISMATCH: {
    side: "transport",
    layouts: BOTH,
    spec:
      "§2.7.6 / §2.7.8 the device's positions lie between used idx and avail idx (QEMU virtio_load: inuse <= vring.num); §2.8.1 the restored position holds a descriptor of the restored lap",
    summary:
      "a saved state the live rings contradict (last_avail_idx beyond avail.idx, used idx not the ring's, in-flight count or IN_ORDER heads not what the rings hold)",
  },
  PAIR_OPTIONS_INVALID: {
    side: "api",
    layouts: BOTH,
    spec: "§6 VIRTIO_F_RING_PACKED selects the packed layout; VIRTIO_F_ACCESS_PLATFORM makes the " +
      "device use the platform's DMA translation; features are a 64-bit mask",
    summary: "createQueuePair options contradict each other (layout vs features, a translating " +
      "DMA API without ACCESS_PLATFORM) or features is not a bigint",
  },
  SEGMENT_INVALID: {
    side: "api",
    layouts: BOTH,
    spec: "§2.7.5 / §2.8.13 a descriptor holds a 64-bit address and a 32-bit length",
    summary: "a scatter-gather segment with an address that is not a non-negative safe integer " +
      "or a length outside 0..2^32-1",
  },
} as const satisfies Record<string, VirtqErrorInfo>;

/** A stable virtqueue error code: a key of {@link VIRTQ_ERRORS}. */
export type VirtqErrorCode = keyof typeof VIRTQ_ERRORS;

/** All codes, in catalogue order. */
export const VIRTQ_ERROR_CODES: readonly VirtqErrorCode[] = Object.keys(
  VIRTQ_ERRORS,
) as VirtqErrorCode[];

/**
 * The catalogue codes a layout raises, optionally only one side's, in catalogue order: the one
 * source of per-layout code lists (for example the codes a packed device raises for a hostile
 * driver are `virtqErrorCodes("packed", "device")`).
 * @param layout the ring layout.
 * @param side only codes detected by this side, when given.
 */
export function virtqErrorCodes(layout: VirtqLayout, side?: VirtqErrorSide): VirtqErrorCode[] {
  return VIRTQ_ERROR_CODES.filter((c) => {
    const info: VirtqErrorInfo = VIRTQ_ERRORS[c];
    return info.layouts.includes(layout) && (side === undefined || info.side === side);
  });
}

/** Optional location details of a {@link VirtqError}. */
export interface VirtqErrorDetails {
  /** The offending descriptor / ring / buffer index. */
  index?: number;
  /** The underlying fault (a `DmaFault`, `MemoryFault`, `DmaMapError`). */
  cause?: unknown;
}

/**
 * A catalogued virtqueue error. `message` is `CODE: detail (spec rule)` and names the offending
 * index or address; `code` is stable and documented in {@link VIRTQ_ERRORS}.
 */
export class VirtqError extends Error {
  /** Stable code. */
  readonly code: VirtqErrorCode;
  /** Which side detects it. */
  readonly side: VirtqErrorSide;
  /** The spec rule it enforces. */
  readonly spec: string;
  /** Offending index, when there is one. */
  readonly index: number | undefined;

  /**
   * Creates an error from its catalogue code.
   * @param code catalogue code.
   * @param detail what exactly was wrong: names the index/address/value.
   * @param details optional index and cause.
   */
  constructor(code: VirtqErrorCode, detail: string, details: VirtqErrorDetails = {}) {
    const info: VirtqErrorInfo = VIRTQ_ERRORS[code];
    super(`${code}: ${detail} (${info.spec})`, { cause: details.cause });
    this.name = "VirtqError";
    this.code = code;
    this.side = info.side;
    this.spec = info.spec;
    this.index = details.index;
  }
}

/** True when `e` is a {@link VirtqError}, optionally with the given code. */
export function isVirtqError(e: unknown, code?: VirtqErrorCode): e is VirtqError {
  return e instanceof VirtqError && (code === undefined || e.code === code);
}
