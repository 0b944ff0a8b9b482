/**
 * The device side of a split virtqueue (spec §2.7): consumes available chains from a possibly
 * hostile driver, validated and translated through the device's DMA view, and returns used
 * buffers.
 *
 * Every ring area is translated once at activation and viewed through typed arrays with
 * precomputed offsets; `pop`/`push`/`flush` allocate nothing once the chain pool is warm.
 * Each descriptor is read exactly once per pop (HOSTILE_INPUTS #21, no double fetch).
 *
 * @module
 */

import type { GuestMemory, MemoryRegion } from "../../memory/guest_memory.ts";
import { hex64, type U64, u64Lo } from "../../memory/u64.ts";
import { DMA_ACCESS_READ, DMA_ACCESS_WRITE, type DmaAccess } from "../../dma/errors.ts";
import { type DmaAddressSpace, DmaTranslation, translateContiguous } from "../../dma/types.ts";
import { Chain } from "../chain.ts";
import {
  VIRTQ_AVAIL_F_NO_INTERRUPT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_USED_F_NO_NOTIFY,
  vringNeedEvent,
} from "../constants.ts";
import { VirtqError, type VirtqErrorCode, virtqErrorCodes } from "../errors.ts";
import {
  hasFeature,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_IN_ORDER,
  VIRTIO_F_INDIRECT_DESC,
} from "../features.ts";
import {
  type ChainPolicy,
  DEFAULT_CHAIN_POLICY,
  type DeviceQueue,
  type DeviceQueueOptions,
  type RingLayout,
  type VirtqueueAddresses,
} from "../queue.ts";
import {
  isValidSplitQueueSize,
  SPLIT_AVAIL_ALIGN,
  SPLIT_DESC_ALIGN,
  SPLIT_USED_ALIGN,
  splitAvailRingSize,
  splitDescTableSize,
  splitUsedRingSize,
} from "./layout.ts";
import { SplitChainWalk } from "./walk.ts";
import type { VirtqueueState } from "../queue.ts";

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Throws `QUEUE_NOT_READY` (api side; nothing is broken). Cold path. */
function notReady(layout: RingLayout): never {
  throw new VirtqError(
    "QUEUE_NOT_READY",
    `${layout} device queue was reset and not re-activated; call activate()`,
  );
}

/**
 * Maps a ring area (bus address, bytes) to a region and byte offset, or throws the catalogued
 * activation error. Cold path (activation only).
 */
function mapRingArea(
  memory: GuestMemory,
  dma: DmaAddressSpace,
  name: string,
  bus: U64,
  length: number,
  align: number,
  access: DmaAccess,
  tr: DmaTranslation,
): { region: MemoryRegion; offset: number } {
  // §2.7 alignment table: desc 16, avail 2, used 4 (HOSTILE_INPUTS #3).
  if (u64Lo(bus) % align !== 0) {
    throw new VirtqError(
      "RING_MISALIGNED",
      `${name} at bus address ${hex64(bus)} is not ${align}-byte aligned`,
    );
  }
  let gpa: number;
  let region: MemoryRegion;
  try {
    // Rings are DMA too: one contiguous translation (HOSTILE_INPUTS #4, QEMU "Cannot map").
    gpa = translateContiguous(dma, bus, length, access, tr);
    region = memory.resolve(gpa, length);
  } catch (cause) {
    throw new VirtqError(
      "RING_UNMAPPED",
      `${name} (${length} bytes at bus address ${
        hex64(bus)
      }) is not one reachable guest memory range`,
      { cause },
    );
  }
  const offset = region.bytes.byteOffset + (gpa - region.gpa);
  if (offset % align !== 0) {
    throw new VirtqError(
      "RING_MISALIGNED",
      `${name} translates to GPA ${hex64(gpa)}, not ${align}-byte aligned`,
    );
  }
  return { region, offset };
}

/**
 * Device side of a split virtqueue, implementing {@link DeviceQueue} (spec §2.7.13 "Supplying
 * Buffers to The Device" seen from the device; §2.7.8 "The Virtqueue Used Ring").
 *
 * Construction is queue activation: it validates the Queue Size and each area's alignment and
 * translates every area through the device's {@link DmaAddressSpace}.
 *
 * Errors from `pop`: {@link VirtqError} with a device-side code of {@link SPLIT_DEVICE_ERROR_CODES}
 * (derived from the catalogue, `src/virtio/errors.ts`); the rules behind them live in
 * `src/virtio/rules.ts`.
 * After one, the queue is {@link SplitDeviceQueue.broken} and `pop` returns `null` without
 * touching memory until {@link SplitDeviceQueue.reset}; chains popped earlier can still be pushed.
 *
 * Host requirement: a little-endian host (typed-array views are native-endian).
 */
export class SplitDeviceQueue implements DeviceQueue {
  /** Always `"split"`. */
  readonly layout: RingLayout = "split";
  /** Queue Size in descriptors. */
  readonly size: number;
  /** Guest memory the chains point into. */
  readonly memory: GuestMemory;
  /** Effective validation policy. */
  readonly policy: Readonly<ChainPolicy>;

  readonly #mask: number;
  readonly #dma: DmaAddressSpace;
  readonly #tr = new DmaTranslation();
  readonly #eventIdx: boolean;
  readonly #inOrder: boolean;
  /** The chain walk (direct and indirect), apart from the ring state kept here. */
  readonly #walker: SplitChainWalk;

  /** Ring area bus addresses as the driver programmed them (re-translated by `activate`). */
  readonly addresses: VirtqueueAddresses;

  // Ring views (created at activation).
  #desc32: Uint32Array = new Uint32Array(0);
  #avail16: Uint16Array = new Uint16Array(0);
  #used32: Uint32Array = new Uint32Array(0);
  #used16: Uint16Array = new Uint16Array(0);
  readonly #usedEventIdx: number; // index into #avail16
  readonly #availEventIdx: number; // index into #used16

  // State.
  /** Activated and not reset since (spec §2.1.2: no processing after reset until re-enabled). */
  #ready = false;
  #lastAvail = 0;
  #usedIdx = 0;
  #nextInOrderHead = 0;
  /** IN_ORDER: heads in pop order (ring buffer), front = oldest in flight. */
  readonly #order: Uint16Array;
  #orderFront = 0;
  #orderBack = 0;
  #notify = true;
  #broken: VirtqError | null = null;
  #inFlight = 0;
  readonly #byHead: (Chain | null)[];
  readonly #pool: Chain[] = [];
  // Pushed, not yet flushed.
  #pending = 0;
  readonly #pendId: Uint32Array;
  readonly #pendLen: Uint32Array;
  readonly #pendFull: Uint8Array;

  /**
   * Activates the queue.
   * @param opts memory, DMA view, Queue Size, ring bus addresses, negotiated features, policy.
   * @throws VirtqError `QUEUE_SIZE_INVALID` (not a power of 2 in 1..32768), `RING_MISALIGNED`
   * (bus address or translated GPA not aligned 16/2/4), `RING_UNMAPPED` (an area does not
   * translate to one contiguous guest memory range; `cause` holds the fault).
   */
  constructor(opts: DeviceQueueOptions) {
    const size = opts.size;
    // §2.7: Queue Size is a power of 2, max 32768 (HOSTILE_INPUTS #1).
    if (!isValidSplitQueueSize(size)) {
      throw new VirtqError(
        "QUEUE_SIZE_INVALID",
        `split queue size ${size} is not a power of 2 in 1..32768`,
      );
    }
    if (!LITTLE_ENDIAN) throw new Error("SplitDeviceQueue requires a little-endian host");
    this.size = size;
    this.#mask = size - 1;
    this.memory = opts.memory;
    this.#dma = opts.dma;
    this.policy = Object.freeze({ ...DEFAULT_CHAIN_POLICY, ...opts.policy });
    this.#eventIdx = hasFeature(opts.features, VIRTIO_F_EVENT_IDX);
    this.#inOrder = hasFeature(opts.features, VIRTIO_F_IN_ORDER);
    this.#walker = new SplitChainWalk(
      size,
      opts.memory,
      opts.dma,
      this.#tr,
      this.policy,
      this.#inOrder,
      hasFeature(opts.features, VIRTIO_F_INDIRECT_DESC),
      (e) => {
        this.#broken = e;
      },
    );

    this.addresses = opts.addresses;
    this.#usedEventIdx = 2 + size;
    this.#availEventIdx = 2 + 4 * size;
    this.#order = new Uint16Array(size);
    this.#byHead = new Array(size).fill(null);
    this.#pendId = new Uint32Array(size);
    this.#pendLen = new Uint32Array(size);
    this.#pendFull = new Uint8Array(size);
    this.#activate();
  }

  /**
   * (Re)activates the queue after {@link SplitDeviceQueue.reset}, once the driver has
   * re-initialised its rings and re-enabled the queue (spec §2.1.2, §4.1.4.3.2): re-validates the
   * Queue Size and the areas' alignment and re-translates the descriptor table, available ring and
   * used ring through the device's DMA view; positions are those left by `reset` (all zero).
   * @throws VirtqError `QUEUE_SIZE_INVALID`, `RING_MISALIGNED`, `RING_UNMAPPED` (`cause`
   * attached); the queue then stays not ready and {@link SplitDeviceQueue.broken} holds the error.
   */
  activate(): void {
    try {
      this.#activate();
    } catch (e) {
      if (e instanceof VirtqError) this.#broken = e;
      throw e;
    }
  }

  #activate(): void {
    this.#ready = false;
    const size = this.size;
    // §2.7: Queue Size is a power of 2, max 32768 (HOSTILE_INPUTS #1).
    if (!isValidSplitQueueSize(size)) {
      throw new VirtqError(
        "QUEUE_SIZE_INVALID",
        `split queue size ${size} is not a power of 2 in 1..32768`,
      );
    }
    const a = this.addresses;
    const tr = this.#tr;
    const memory = this.memory;
    const dma = this.#dma;
    const d = mapRingArea(
      memory,
      dma,
      "descriptor table",
      a.descAddr,
      splitDescTableSize(size),
      SPLIT_DESC_ALIGN,
      DMA_ACCESS_READ,
      tr,
    );
    const av = mapRingArea(
      memory,
      dma,
      "available ring",
      a.driverAddr,
      splitAvailRingSize(size),
      SPLIT_AVAIL_ALIGN,
      DMA_ACCESS_READ,
      tr,
    );
    const u = mapRingArea(
      memory,
      dma,
      "used ring",
      a.deviceAddr,
      splitUsedRingSize(size),
      SPLIT_USED_ALIGN,
      DMA_ACCESS_WRITE,
      tr,
    );
    this.#desc32 = new Uint32Array(d.region.bytes.buffer, d.offset, 4 * size);
    this.#walker.table = this.#desc32;
    this.#avail16 = new Uint16Array(av.region.bytes.buffer, av.offset, 3 + size);
    // used ring: flags,idx (u16) | size x {id u32, len u32} | avail_event (u16) = 3 + 4·size u16.
    this.#used32 = new Uint32Array(u.region.bytes.buffer, u.offset, 1 + 2 * size);
    this.#used16 = new Uint16Array(u.region.bytes.buffer, u.offset, 3 + 4 * size);
    this.#ready = true;
  }

  /** The error that broke the queue, or `null`. */
  get broken(): VirtqError | null {
    return this.#broken;
  }
  /** Chains popped and not yet pushed. */
  get inFlight(): number {
    return this.#inFlight;
  }
  /** True when activated and not reset since (`pop` throws `QUEUE_NOT_READY` otherwise). */
  get ready(): boolean {
    return this.#ready;
  }
  /** The device's next available-ring position (`last_avail_idx`, u16). */
  get lastAvailIdx(): number {
    return this.#lastAvail;
  }
  /** The used `idx` the device last published (u16). */
  get usedIdx(): number {
    return this.#usedIdx;
  }

  #fail(code: VirtqErrorCode, detail: string, index?: number, cause?: unknown): never {
    const e = new VirtqError(code, detail, { index, cause });
    this.#broken = e;
    throw e;
  }

  /**
   * Pops the next available chain (spec §2.7.13.4 / §2.7.6), or `null` when none is available
   * or the queue is broken. See the class doc for the errors.
   * @throws VirtqError (device side); the queue becomes broken.
   * @throws VirtqError `QUEUE_NOT_READY` (api side, breaks nothing, reads no memory) after
   * {@link SplitDeviceQueue.reset} until {@link SplitDeviceQueue.activate} (§2.1.2, §4.1.4.3.2).
   */
  pop(): Chain | null {
    if (this.#broken !== null) return null;
    if (!this.#ready) notReady("split");
    const avail16 = this.#avail16;
    const availIdx = avail16[1];
    const last = this.#lastAvail;
    if (availIdx === last) return null;
    const size = this.size;
    const mask = this.#mask;
    // §2.7.6 idx only grows; at most Queue Size buffers can be outstanding (HOSTILE_INPUTS #8).
    if (((availIdx - last) & 0xffff) > size) this.#availIdxJump(availIdx, last);
    const head = avail16[2 + (last & mask)];
    // §2.7.6 ring entries are descriptor indices (HOSTILE_INPUTS #9).
    if (head >= size) this.#headOutOfRange(last, head);
    // CVE-2016-5403: a head the device still owns (HOSTILE_INPUTS #10).
    if (this.#byHead[head] !== null) {
      this.#fail("HEAD_IN_USE", `head ${head} was made available again while in use`, head);
    }
    const inOrder = this.#inOrder;
    // §2.7.5.2 IN_ORDER: chains occupy the table in ring order.
    if (inOrder && head !== this.#nextInOrderHead) this.#inOrderHead(head);
    // Take the pool's top chain, but leave it there until the chain validates.
    const pool = this.#pool;
    if (pool.length === 0) pool.push(new Chain(this.memory));
    const chain = pool[pool.length - 1];
    chain.reset(head, head);

    // Walk and translate the chain (split/walk.ts); a violation breaks the queue.
    // (No try/catch here: the walk records its error through the hook given at construction;
    // a try block around the inlined walk costs the hot path.)
    this.#walker.walk(chain, head);

    pool.pop();
    const nl = (last + 1) & 0xffff;
    this.#lastAvail = nl;
    this.#byHead[head] = chain;
    this.#inFlight++;
    if (inOrder) {
      this.#nextInOrderHead = (head + chain.ringDescriptors) & mask;
      this.#order[this.#orderBack] = head;
      this.#orderBack = (this.#orderBack + 1) & mask;
    }
    // §2.7.10: keep avail_event at our position while notifications are wanted.
    if (this.#eventIdx && this.#notify) this.#used16[this.#availEventIdx] = nl;
    return chain;
  }

  #availIdxJump(availIdx: number, last: number): never {
    this.#fail(
      "AVAIL_IDX_JUMP",
      `avail idx ${availIdx} is ${(availIdx - last) & 0xffff} ahead of the device's ${last} ` +
        `(queue size ${this.size})`,
      availIdx,
    );
  }
  #headOutOfRange(last: number, head: number): never {
    this.#fail(
      "AVAIL_HEAD_OUT_OF_RANGE",
      `avail ring entry ${last & this.#mask} names head ${head}, queue size ${this.size}`,
      head,
    );
  }
  #inOrderHead(head: number): never {
    this.#fail(
      "IN_ORDER_VIOLATION",
      `head ${head} offered, in-order position is ${this.#nextInOrderHead}`,
      head,
    );
  }

  /**
   * Records `chain` as used with `written` bytes (spec §2.7.8); visible after {@link flush}.
   * With `VIRTIO_F_IN_ORDER`, chains must be pushed in the order they were popped.
   * @throws VirtqError `PUSH_INVALID` when the chain is not in flight, `written` is not an
   * integer in 0..`chain.writableBytes`, or (IN_ORDER) it is pushed out of order.
   */
  push(chain: Chain, written: number): void {
    const head = chain.id;
    if (head >= this.size || this.#byHead[head] !== chain) {
      throw new VirtqError("PUSH_INVALID", `chain with head ${head} is not in flight`, {
        index: head,
      });
    }
    // written is a u32 no larger than the writable capacity (spec §2.7.8 used len).
    if (!((written >>> 0) === written && written <= chain.writableBytes)) {
      throw new VirtqError(
        "PUSH_INVALID",
        `written ${written} is outside 0..${chain.writableBytes} for head ${head}`,
        { index: head },
      );
    }
    if (this.#inOrder) {
      // VIRTIO_F_IN_ORDER: buffers are used in the order they were made available.
      const expect = this.#order[this.#orderFront];
      if (head !== expect) {
        throw new VirtqError(
          "PUSH_INVALID",
          `IN_ORDER: head ${head} pushed before head ${expect}`,
          { index: head },
        );
      }
      this.#orderFront = (this.#orderFront + 1) & this.#mask;
    }
    const p = this.#pending;
    if (this.#inOrder) {
      // Kept until flush, which may publish a run as one element.
      this.#pendId[p] = head;
      this.#pendLen[p] = written;
      this.#pendFull[p] = written === chain.writableBytes ? 1 : 0;
    } else {
      // Fill the used element now (`len`, then `id`); flush publishes `idx` (§2.7.8.2).
      const w = 1 + (((this.#usedIdx + p) & this.#mask) << 1);
      this.#used32[w + 1] = written;
      this.#used32[w] = head;
    }
    this.#pending = p + 1;
    this.#byHead[head] = null;
    this.#inFlight--;
    this.#pool.push(chain);
  }

  /**
   * Publishes every pushed buffer: writes the used elements (`len` before `idx`, §2.7.8.2),
   * then the used `idx` once. With `VIRTIO_F_IN_ORDER`, a run of buffers each fully written
   * (written === writable bytes) except possibly the last is published as one used element (the
   * last buffer's id) and `idx` advances by the run length (§2.7.8 in-order batching).
   * @returns whether to send a used buffer notification: `vringNeedEvent(used_event, new, old)`
   * with `VIRTIO_F_EVENT_IDX`, else `VIRTQ_AVAIL_F_NO_INTERRUPT` clear (§2.7.7, §2.7.10).
   */
  flush(): boolean {
    const n = this.#pending;
    if (n === 0) return false;
    const used32 = this.#used32;
    const mask = this.#mask;
    const old = this.#usedIdx;
    let idx = old;
    const ids = this.#pendId;
    const lens = this.#pendLen;
    if (this.#inOrder) {
      const full = this.#pendFull;
      let i = 0;
      while (i < n) {
        let j = i;
        while (j < n - 1 && full[j] === 1) j++;
        const w = 1 + ((idx & mask) << 1);
        used32[w + 1] = lens[j];
        used32[w] = ids[j];
        idx = (idx + (j - i + 1)) & 0xffff;
        i = j + 1;
      }
    } else {
      idx = (idx + n) & 0xffff; // elements were filled by push
    }
    this.#pending = 0;
    this.#usedIdx = idx;
    const used16 = this.#used16;
    used16[1] = idx;
    if (this.#eventIdx) return vringNeedEvent(this.#avail16[this.#usedEventIdx], idx, old);
    return (this.#avail16[0] & VIRTQ_AVAIL_F_NO_INTERRUPT) === 0;
  }

  /**
   * Enables or disables available buffer notifications (spec §2.7.7 / §2.7.10): without
   * `VIRTIO_F_EVENT_IDX` writes used `flags` (`VIRTQ_USED_F_NO_NOTIFY` when disabled); with it
   * keeps used `flags` 0 and, when enabled, sets `avail_event` to the device's position (kept
   * current by `pop`); when disabled `avail_event` is left stale, as QEMU does.
   * @returns when enabling, whether buffers are already available (avail `idx` read after the
   * write, as Linux `vhost_enable_notify`): the driver may have added them while notifications
   * were off and will not notify, so the caller must poll again. `false` when disabling, broken
   * or not ready (no guest memory is touched before (re)activation).
   */
  setNotifications(enabled: boolean): boolean {
    this.#notify = enabled;
    if (!this.#ready || this.#broken !== null) return false;
    if (this.#eventIdx) {
      this.#used16[0] = 0;
      if (enabled) this.#used16[this.#availEventIdx] = this.#lastAvail;
    } else {
      this.#used16[0] = enabled ? 0 : VIRTQ_USED_F_NO_NOTIFY;
    }
    // (A full barrier between the write above and this read on real hardware, §2.7.10.)
    return enabled && this.#avail16[1] !== this.#lastAvail;
  }

  /**
   * Queue reset (spec §2.1.2, §4.1.4.3.2 RING_RESET): forgets all state (positions, in-flight
   * chains, pending pushes, the broken error) and leaves the queue NOT READY: guest memory is not
   * touched, `pop` throws `QUEUE_NOT_READY` until {@link SplitDeviceQueue.activate} (after the
   * driver re-initialised its rings), so stale available entries are never consumed.
   */
  reset(): void {
    this.#ready = false;
    this.#lastAvail = 0;
    this.#usedIdx = 0;
    this.#nextInOrderHead = 0;
    this.#orderFront = 0;
    this.#orderBack = 0;
    this.#notify = true;
    this.#broken = null;
    this.#pending = 0;
    this.#inFlight = 0;
    for (let i = 0; i < this.size; i++) {
      const c = this.#byHead[i];
      if (c !== null) {
        this.#pool.push(c);
        this.#byHead[i] = null;
      }
    }
  }

  // --- Saved queue state (migration / back-end reconnect; src/transport/queue_state.ts) -----

  /**
   * The state a VMM saves for this queue (see {@link VirtqueueState}): `last_avail_idx`, used
   * `idx` and the in-flight heads (pop order under VIRTIO_F_IN_ORDER, ascending otherwise).
   * Cold path. @throws Error when pushed buffers are not flushed yet (flush first).
   */
  saveState(): VirtqueueState {
    if (this.#pending !== 0) throw new Error("saveState: flush() the pushed used buffers first");
    const inFlight: number[] = [];
    if (this.#inOrder) {
      for (let i = 0, p = this.#orderFront; i < this.#inFlight; i++, p = (p + 1) & this.#mask) {
        inFlight.push(this.#order[p]);
      }
    } else {
      for (let h = 0; h < this.size; h++) if (this.#byHead[h] !== null) inFlight.push(h);
    }
    return {
      layout: "split",
      size: this.size,
      lastAvail: this.#lastAvail,
      availWrap: 0,
      used: this.#usedIdx,
      usedWrap: 0,
      inFlight,
    };
  }

  /**
   * Restores a saved state into this freshly activated queue (nothing popped yet), checking it
   * against the live rings first, and re-walks every in-flight head through `pop`'s own
   * validation (its descriptors are still the driver's, §2.7.13.1), as QEMU re-maps saved
   * elements. Cold path; the hot path is untouched.
   * @returns the in-flight chains, in the state's order, to be pushed as usual.
   * @throws VirtqError `RESTORE_STATE_INVALID` (size differs, an index outside u16, heads out of
   * range or repeated, more than Queue Size in flight), `RESTORE_RING_MISMATCH` (`last_avail_idx`
   * beyond avail `idx` or more than a ring behind it, used `idx` not the ring's, the in-flight
   * count not `last_avail_idx - used idx`, IN_ORDER heads not the available entries from used
   * `idx`, or an in-flight chain that no longer validates: `cause` holds pop's error); the queue
   * is then broken. @throws Error when the queue is not fresh (ready, nothing in flight).
   */
  restoreState(state: VirtqueueState): Chain[] {
    if (!this.#ready || this.#broken !== null || this.#inFlight !== 0 || this.#pending !== 0) {
      throw new Error("restoreState: the queue must be freshly activated with nothing in flight");
    }
    const size = this.size;
    const heads = state.inFlight;
    const u16 = (v: number) => Number.isInteger(v) && v >= 0 && v <= 0xffff;
    if (state.layout !== "split" || state.size !== size) {
      this.#fail(
        "RESTORE_STATE_INVALID",
        `saved ${state.layout} size ${state.size}, queue split ${size}`,
      );
    }
    if (!u16(state.lastAvail) || !u16(state.used) || heads.length > size) {
      this.#fail(
        "RESTORE_STATE_INVALID",
        `last_avail_idx ${state.lastAvail}, used idx ${state.used}, ${heads.length} in flight (size ${size})`,
      );
    }
    const seen = new Uint8Array(size);
    for (const h of heads) {
      if (!(Number.isInteger(h) && h >= 0 && h < size) || seen[h] !== 0) {
        this.#fail("RESTORE_STATE_INVALID", `in-flight head ${h} is out of range or repeated`, h);
      }
      seen[h] = 1;
    }
    const last = state.lastAvail;
    const used = state.used;
    const availIdx = this.#avail16[1];
    // §2.7.6: the device's position lies at most Queue Size behind avail idx, never ahead.
    if (((availIdx - last) & 0xffff) > size) {
      this.#fail(
        "RESTORE_RING_MISMATCH",
        `restored last_avail_idx ${last} is not within ${size} behind avail idx ${availIdx}`,
      );
    }
    if (this.#used16[1] !== used) {
      this.#fail(
        "RESTORE_RING_MISMATCH",
        `restored used idx ${used}, the used ring holds ${this.#used16[1]}`,
      );
    }
    // QEMU virtio_load: inuse = last_avail_idx - used_idx, at most the ring size.
    if (((last - used) & 0xffff) !== heads.length) {
      this.#fail(
        "RESTORE_RING_MISMATCH",
        `last_avail_idx ${last} - used idx ${used} = ${(last - used) & 0xffff} buffers in use, ` +
          `state lists ${heads.length} in flight`,
      );
    }
    const mask = this.#mask;
    if (this.#inOrder) {
      // IN_ORDER: the in-flight chains are the available entries from used idx on, in order.
      for (let i = 0; i < heads.length; i++) {
        const h = this.#avail16[2 + ((used + i) & mask)];
        if (h !== heads[i]) {
          this.#fail(
            "RESTORE_RING_MISMATCH",
            `IN_ORDER: in-flight #${i} is head ${heads[i]}, avail ring entry ${
              (used + i) & 0xffff
            } holds ${h}`,
            heads[i],
          );
        }
      }
      this.#nextInOrderHead = heads.length > 0 ? heads[0] : this.#inOrderNextAfterUsed(used);
    }
    // Re-walk each in-flight head through pop over a one-entry scratch available ring.
    const real = this.#avail16;
    const scratch = new Uint16Array(real.length);
    const savedEvent = this.#used16[this.#availEventIdx];
    const chains: Chain[] = [];
    this.#lastAvail = (last - heads.length) & 0xffff;
    try {
      for (const h of heads) {
        const pos = this.#lastAvail;
        scratch[1] = (pos + 1) & 0xffff;
        scratch[2 + (pos & mask)] = h;
        this.#avail16 = scratch;
        chains.push(this.pop()!);
      }
    } catch (cause) {
      this.#avail16 = real;
      this.#fail(
        "RESTORE_RING_MISMATCH",
        "an in-flight chain no longer validates",
        undefined,
        cause,
      );
    }
    this.#avail16 = real;
    this.#used16[this.#availEventIdx] = savedEvent;
    if (this.#eventIdx && this.#notify) this.#used16[this.#availEventIdx] = last;
    this.#lastAvail = last;
    this.#usedIdx = used;
    return chains;
  }

  /** IN_ORDER with nothing in flight: the head after the last used chain (walks its `next`s). */
  #inOrderNextAfterUsed(used: number): number {
    if (used === 0) return 0;
    const mask = this.#mask;
    const id = this.#used32[1 + (((used - 1) & mask) << 1)];
    if (id >= this.size) return 0;
    let idx = id;
    let n = 1;
    while (n <= this.size && (this.#desc32[(idx << 2) + 3] & VIRTQ_DESC_F_NEXT) !== 0) {
      idx = (idx + 1) & mask;
      n++;
    }
    return (id + n) & mask;
  }
}

/**
 * Codes the split device raises for a hostile driver (for tests and fuzz oracles), derived from
 * the catalogue's `layouts` and `side` (see {@link virtqErrorCodes}).
 */
export const SPLIT_DEVICE_ERROR_CODES: readonly VirtqErrorCode[] = virtqErrorCodes(
  "split",
  "device",
);
