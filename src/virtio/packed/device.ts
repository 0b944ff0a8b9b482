/**
 * The device side of a packed virtqueue (spec §2.8 "Packed Virtqueues"): consumes the descriptor
 * ring a (possibly hostile) driver fills and returns used descriptors.
 *
 * - Ring areas are translated once at activation through the device's {@link DmaAddressSpace}
 *   (`translateContiguous`: rings are DMA too) and then read through typed-array views with
 *   precomputed offsets. The host is assumed little-endian (x86-64, aarch64), as the views are.
 * - Every descriptor is read exactly once (HOSTILE_INPUTS #21); every packed hostile case of
 *   HOSTILE_INPUTS.md raises a distinct catalogued {@link VirtqError}, after which the queue is
 *   broken: `pop` returns `null` without touching memory until {@link PackedDeviceQueue.reset}.
 *   Chains popped before the violation can still be pushed and flushed (completed work stays
 *   completed).
 * - `pop`, `push` and `flush` allocate nothing once the chain pool is warm.
 *
 * @module
 */

import type { GuestMemory } from "../../memory/guest_memory.ts";
import { type U64, u64Add, u64Lo } from "../../memory/u64.ts";
import { DMA_ACCESS_READ, DMA_ACCESS_WRITE } from "../../dma/errors.ts";
import { type DmaAddressSpace, DmaTranslation, translateContiguous } from "../../dma/types.ts";
import { Chain } from "../chain.ts";
import {
  RING_EVENT_FLAGS_DESC,
  RING_EVENT_FLAGS_DISABLE,
  RING_EVENT_FLAGS_ENABLE,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
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
  isValidPackedQueueSize,
  PACKED_DESC_RING_ALIGN,
  PACKED_EVENT_ALIGN,
  PACKED_EVENT_FLAGS_MASK,
  PACKED_EVENT_SIZE,
  packedDescRingSize,
  packedEventOffWrap,
  packedNeedEvent,
} from "./layout.ts";
import { PackedChainWalk } from "./walk.ts";
import type { VirtqueueState } from "../queue.ts";

const CHAIN_FREE = 0;
const CHAIN_IN_FLIGHT = 1;

/** A pooled chain that remembers its owner queue and state (internal). */
class PackedChain extends Chain {
  owner: PackedDeviceQueue | null = null;
  poolIndex = 0;
  state = CHAIN_FREE;
}

/** Event suppression modes the device asked of the driver. */
const MODE_DISABLED = 0;
const MODE_ENABLED = 1;
const MODE_DESC = 2;

/** Throws `QUEUE_NOT_READY` (api side; nothing is broken). Cold path. */
function notReady(): never {
  throw new VirtqError(
    "QUEUE_NOT_READY",
    "packed device queue was reset and not re-activated; call activate()",
  );
}

/**
 * The device's side of a packed virtqueue (spec §2.8), implementing {@link DeviceQueue}.
 *
 * Construction activates the queue: it validates the Queue Size (1..32768, any value, spec §2.8),
 * the alignment of the ring areas (descriptor ring 16, event structures 4, spec §2.6) and
 * translates each area to one contiguous guest memory range.
 *
 * Features honoured: `VIRTIO_F_INDIRECT_DESC` (§2.8.7), `VIRTIO_F_EVENT_IDX` (the
 * `RING_EVENT_FLAGS_DESC` mode, §2.8.10), `VIRTIO_F_IN_ORDER` (§2.8.9: one used descriptor may
 * retire a batch; `push` must then follow pop order).
 */
export class PackedDeviceQueue implements DeviceQueue {
  /** Layout: `"packed"`. */
  readonly layout: RingLayout = "packed";
  /** Queue Size in descriptors. */
  readonly size: number;
  /** Ring area bus addresses as programmed by the driver. */
  readonly addresses: VirtqueueAddresses;

  readonly #memory: GuestMemory;
  readonly #dma: DmaAddressSpace;
  readonly #tr = new DmaTranslation();
  readonly #eventIdx: boolean;
  readonly #inOrder: boolean;
  /** The chain walk (direct and indirect), apart from the ring state kept here. */
  readonly #walker: PackedChainWalk;

  #d32: Uint32Array = new Uint32Array(0);
  #d16: Uint16Array = new Uint16Array(0);
  #drvEv: Uint16Array = new Uint16Array(2);
  #devEv: Uint16Array = new Uint16Array(2);
  #ready = false;
  #broken: VirtqError | null = null;

  #nextAvail = 0;
  #availWrap = 1;
  #nextUsed = 0;
  #usedWrap = 1;
  /** Ring slots popped and not yet published as used. */
  #outstandingSlots = 0;
  #notifyMode = MODE_ENABLED;

  readonly #pool: PackedChain[] = [];
  #freeChains: Int32Array;
  #freeCount = 0;

  // Used descriptors filled by push since the last flush. Each is written whole at once but the
  // first, whose flags flush writes last (§2.8.22): the driver reads used descriptors in ring
  // order, so none of the batch is visible before that store.
  /** Ring slots the used descriptors pushed since the last flush retire (0: none pending). */
  #pendSlots = 0;
  /** IN_ORDER: used descriptors written since the last flush (a batch may retire several). */
  #pendCount = 0;
  /** Slot and flags of the first pending used descriptor (valid while `#pendSlots > 0`). */
  #pendSlot = 0;
  #pendFlags = 0;

  // IN_ORDER: pop order of in-flight chains, and the open batch of used buffers.
  #fifo: Int32Array;
  #fifoHead = 0;
  #fifoCount = 0;
  #gOpen = false;
  #gSlot = 0;
  #gWrap = 1;
  #gId = 0;
  #gLen = 0;
  #gWrite = 0;
  #gFull = false;

  /**
   * Creates and activates the device side of a packed queue.
   * @param options memory, DMA view, Queue Size, ring addresses, features, policy.
   * @throws VirtqError `QUEUE_SIZE_INVALID` (size 0 or above 32768), `RING_MISALIGNED`,
   * `RING_UNMAPPED` (a ring area does not translate to one contiguous guest memory range).
   */
  constructor(options: DeviceQueueOptions) {
    this.size = options.size;
    this.addresses = options.addresses;
    this.#memory = options.memory;
    this.#dma = options.dma;
    this.#eventIdx = hasFeature(options.features, VIRTIO_F_EVENT_IDX);
    this.#inOrder = hasFeature(options.features, VIRTIO_F_IN_ORDER);
    const policy: ChainPolicy = { ...DEFAULT_CHAIN_POLICY, ...options.policy };
    this.#walker = new PackedChainWalk(
      this.size,
      options.memory,
      options.dma,
      this.#tr,
      policy,
      hasFeature(options.features, VIRTIO_F_INDIRECT_DESC),
      (e) => {
        this.#broken = e;
      },
    );
    const n = isValidPackedQueueSize(this.size) ? this.size : 1;
    this.#freeChains = new Int32Array(n);
    this.#fifo = new Int32Array(n);
    this.activate();
  }

  /** The error that broke the queue, or `null`. */
  get broken(): VirtqError | null {
    return this.#broken;
  }

  /** True when activated and not reset since (`pop` throws `QUEUE_NOT_READY` otherwise). */
  get ready(): boolean {
    return this.#ready;
  }

  /** Chains popped and not yet pushed. */
  get inFlight(): number {
    // every pooled chain is free or in flight
    return this.#pool.length - this.#freeCount;
  }

  /** The device's next ring offset to read (0..size-1) and its avail wrap counter (§2.8.1). */
  get availPosition(): { offset: number; wrap: number } {
    return { offset: this.#nextAvail, wrap: this.#availWrap };
  }

  /** The device's next ring offset to write used and its used wrap counter (§2.8.1). */
  get usedPosition(): { offset: number; wrap: number } {
    return { offset: this.#nextUsed, wrap: this.#usedWrap };
  }

  /**
   * (Re)activates the queue: validates size and alignment and translates the ring areas once.
   * Called by the constructor, and by the owner after {@link PackedDeviceQueue.reset} once the
   * driver has re-initialised its rings and re-enabled the queue (§2.1.2, §4.1.4.3.2).
   * @throws VirtqError `QUEUE_SIZE_INVALID`, `RING_MISALIGNED`, `RING_UNMAPPED`; the queue is
   * then broken.
   */
  activate(): void {
    this.#ready = false;
    try {
      const size = this.size;
      // §2.8: up to 2^15 entries; not necessarily a power of 2 (HOSTILE_INPUTS #2).
      if (!isValidPackedQueueSize(size)) {
        throw new VirtqError("QUEUE_SIZE_INVALID", `packed queue size ${size} is not 1..32768`);
      }
      const a = this.addresses;
      const descBytes = packedDescRingSize(size);
      const descGpa = this.#mapArea(
        a.descAddr,
        descBytes,
        PACKED_DESC_RING_ALIGN,
        "descriptor ring",
      );
      const drvGpa = this.#mapArea(
        a.driverAddr,
        PACKED_EVENT_SIZE,
        PACKED_EVENT_ALIGN,
        "driver area",
      );
      const devGpa = this.#mapArea(
        a.deviceAddr,
        PACKED_EVENT_SIZE,
        PACKED_EVENT_ALIGN,
        "device area",
      );
      this.#d32 = this.#view32(descGpa, descBytes);
      this.#d16 = new Uint16Array(this.#d32.buffer, this.#d32.byteOffset, descBytes / 2);
      this.#walker.d32 = this.#d32;
      this.#walker.d16 = this.#d16;
      this.#drvEv = this.#view16(drvGpa);
      this.#devEv = this.#view16(devGpa);
      this.#ready = true;
    } catch (e) {
      if (e instanceof VirtqError) this.#broken = e;
      throw e;
    }
  }

  #mapArea(bus: U64, bytes: number, align: number, what: string): number {
    // §2.6 Virtqueue alignment: packed descriptor ring 16, event suppression structures 4.
    if (u64Lo(bus) % align !== 0) {
      throw new VirtqError(
        "RING_MISALIGNED",
        `${what} at bus ${String(bus)} is not ${align}-aligned`,
      );
    }
    if (u64Add(bus, bytes) === null) {
      throw new VirtqError("RING_UNMAPPED", `${what} at bus ${String(bus)} + ${bytes} wraps 2^64`);
    }
    let gpa: number;
    try {
      gpa = translateContiguous(
        this.#dma,
        bus,
        bytes,
        DMA_ACCESS_READ | DMA_ACCESS_WRITE,
        this.#tr,
      );
      this.#memory.resolve(gpa, bytes);
    } catch (cause) {
      throw new VirtqError("RING_UNMAPPED", `${what} (${bytes} bytes at bus ${String(bus)})`, {
        cause,
      });
    }
    if (gpa % align !== 0) {
      throw new VirtqError("RING_MISALIGNED", `${what} translates to unaligned GPA ${gpa}`);
    }
    return gpa;
  }

  #view32(gpa: number, bytes: number): Uint32Array {
    const r = this.#memory.resolve(gpa, bytes);
    return new Uint32Array(r.bytes.buffer, r.bytes.byteOffset + (gpa - r.gpa), bytes / 4);
  }

  #view16(gpa: number): Uint16Array {
    const r = this.#memory.resolve(gpa, PACKED_EVENT_SIZE);
    return new Uint16Array(r.bytes.buffer, r.bytes.byteOffset + (gpa - r.gpa), 2);
  }

  /**
   * Takes the next available chain (spec §2.8.6 / §2.8.21), fully validated and translated, or
   * `null` when the descriptor at the device's position is not available (AVAIL/USED bits
   * inconsistent or of another lap count as not available, HOSTILE_INPUTS #31), or the queue is
   * broken or not active. The chain's `id` is the Buffer ID of the list's last descriptor
   * (§2.8.6), echoed without checks (#33); `ringDescriptors` is the list length.
   * @throws VirtqError on a hostile driver (the queue becomes broken): a code of
   * {@link PACKED_DEVICE_ERROR_CODES} (derived from the catalogue; rules in `src/virtio/rules.ts`).
   * @throws VirtqError `QUEUE_NOT_READY` (api side, breaks nothing, reads no memory) after
   * {@link PackedDeviceQueue.reset} until {@link PackedDeviceQueue.activate} (§2.1.2, §4.1.4.3.2).
   */
  pop(): Chain | null {
    if (this.#broken !== null) return null;
    if (!this.#ready) notReady();
    const slot = this.#nextAvail;
    const wrap = this.#availWrap;
    const flags = this.#d16[slot * 8 + 7];
    // §2.8.1: available when AVAIL (0x80) == the device's avail wrap counter and USED (0x8000)
    // its inverse.
    if ((flags & 0x8080) !== 0x8000 >>> (wrap << 3)) return null;
    // The pool's top free chain, taken only once the list validates (nothing to undo on a
    // violation: the walk records it as the broken state through the hook given at
    // construction, so pop needs no try block).
    if (this.#freeCount === 0) this.#growPool();
    const chain = this.#pool[this.#freeChains[this.#freeCount - 1]];
    const walk = this.#walker;
    // Walk and translate the list (packed/walk.ts); a violation breaks the queue.
    const owned = this.#outstandingSlots + walk.walk(chain, slot, flags, wrap);
    // §2.8.21: at most Queue Size descriptors are owned by the device at once (#10).
    if (owned > this.size) this.#headInUse(slot, owned);
    this.#outstandingSlots = owned;
    this.#freeCount--;
    this.#nextAvail = walk.nextSlot;
    this.#availWrap = walk.nextWrap;
    chain.state = CHAIN_IN_FLIGHT;
    if (this.#inOrder) {
      let t = this.#fifoHead + this.#fifoCount;
      if (t >= this.size) t -= this.size;
      this.#fifo[t] = chain.poolIndex;
      this.#fifoCount++;
    }
    if (this.#notifyMode === MODE_DESC) {
      this.#devEv[0] = packedEventOffWrap(this.#nextAvail, this.#availWrap);
    }
    return chain;
  }

  /**
   * Breaks the queue with a catalogued error and throws it (the split device's idiom): `detail`
   * names the offending slot or table entry and the rule.
   */
  #fail(code: VirtqErrorCode, detail: string, index?: number, cause?: unknown): never {
    const e = new VirtqError(code, detail, { index, cause });
    this.#broken = e;
    throw e;
  }

  #headInUse(headSlot: number, owned: number): never {
    const count = owned - this.#outstandingSlots;
    this.#fail(
      "HEAD_IN_USE",
      `slot ${headSlot}: ${this.#outstandingSlots} slots still owned by the device, list of ${count}`,
      headSlot,
    );
  }
  /** Adds a new chain to the pool and to the (empty) free list. Cold path. */
  #growPool(): void {
    const c = new PackedChain(this.#memory);
    c.owner = this;
    c.poolIndex = this.#pool.length;
    this.#pool.push(c);
    this.#freeChains[this.#freeCount++] = c.poolIndex;
  }

  /**
   * Fills the used descriptor for `chain` (spec §2.8.5 / §2.8.22): Buffer ID = `chain.id`,
   * `len` = `written`, and `VIRTQ_DESC_F_WRITE` when the buffer has a writable part (`len` is
   * reserved otherwise). The used descriptor goes at the device's used position, which then
   * skips `chain.ringDescriptors` slots. Invisible to the driver until {@link flush}.
   * With `VIRTIO_F_IN_ORDER`, chains must be pushed in pop order; consecutive buffers whose
   * writable part was written in full are retired by one used descriptor (§2.8.9).
   * @throws VirtqError `PUSH_INVALID` (not in flight on this queue, `written` not an integer in
   * `0..chain.writableBytes`, or out of order under IN_ORDER).
   */
  push(chain: Chain, written: number): void {
    const pc = chain as PackedChain;
    const cap = chain.writableBytes;
    // In flight on this queue, and written a u32 no larger than the writable capacity (§2.8.5
    // used len): one test and one call out of line, which throws the error (push stays small).
    if (
      pc.owner !== this || pc.state !== CHAIN_IN_FLIGHT ||
      !((written >>> 0) === written && written <= cap)
    ) this.#badPush(pc, written);
    const slot = this.#nextUsed;
    const pend = this.#pendSlots;
    if (this.#inOrder) this.#pushInOrder(chain, written);
    else {
      // §2.8.5: len, Buffer ID, flags AVAIL = USED = the used wrap counter. §2.8.22: written
      // whole now (Buffer ID and flags in one store) but the first of a batch, whose flags
      // flush writes last.
      // VIRTQ_DESC_F_WRITE (2) when the buffer has a writable part (literals: a binding costs
      // bytecode).
      const d32 = this.#d32;
      const b = slot << 2;
      d32[b + 2] = written;
      const flags = (this.#usedWrap !== 0 ? 0x8080 : 0) | (cap > 0 ? 2 : 0);
      if (pend !== 0) d32[b + 3] = chain.id | flags << 16;
      else this.#holdUsed(slot, chain.id, flags);
    }
    const n = chain.ringDescriptors;
    const size = this.size;
    let u = slot + n;
    if (u >= size) {
      u -= size;
      this.#usedWrap ^= 1;
    }
    this.#nextUsed = u;
    this.#pendSlots = pend + n;
    pc.state = CHAIN_FREE;
    const fc = this.#freeCount;
    this.#freeChains[fc] = pc.poolIndex;
    this.#freeCount = fc + 1;
  }

  /** {@link push}'s errors, in its order: not in flight on this queue, then `written`. */
  #badPush(pc: PackedChain, written: number): never {
    if (pc.owner !== this || pc.state !== CHAIN_IN_FLIGHT) {
      throw new VirtqError("PUSH_INVALID", "the chain is not in flight on this queue");
    }
    this.#badWritten(pc, written);
  }

  #badWritten(chain: Chain, written: number): never {
    throw new VirtqError(
      "PUSH_INVALID",
      `written ${written} is not in 0..${chain.writableBytes}`,
      { index: chain.id },
    );
  }

  /**
   * Out of line from {@link push} under `VIRTIO_F_IN_ORDER` (§2.8.9): checks pop order, then
   * extends the open batch (its buffers so far written in full) or opens a new one.
   */
  #pushInOrder(chain: Chain, written: number): void {
    const wbit = chain.writableBytes > 0 ? VIRTQ_DESC_F_WRITE : 0;
    if (this.#pool[this.#fifo[this.#fifoHead]] !== chain) {
      throw new VirtqError("PUSH_INVALID", "VIRTIO_F_IN_ORDER: push in pop order", {
        index: chain.id,
      });
    }
    if (++this.#fifoHead === this.size) this.#fifoHead = 0;
    this.#fifoCount--;
    if (this.#gOpen && this.#gFull) {
      this.#gId = chain.id;
      this.#gLen = written;
      this.#gWrite = wbit;
    } else {
      if (this.#gOpen) this.#closeGroup();
      this.#gOpen = true;
      this.#gSlot = this.#nextUsed;
      this.#gWrap = this.#usedWrap;
      this.#gId = chain.id;
      this.#gLen = written;
      this.#gWrite = wbit;
    }
    this.#gFull = written === chain.writableBytes;
  }

  #closeGroup(): void {
    this.#fillUsed(
      this.#gSlot,
      this.#gId,
      this.#gLen,
      (this.#gWrap !== 0 ? 0x8080 : 0) | this.#gWrite,
    );
    this.#gOpen = false;
  }

  /**
   * The first used descriptor of a batch at `slot`: its Buffer ID now, its flags at
   * {@link flush} (§2.8.22). Out of line from {@link push} (once per batch).
   */
  #holdUsed(slot: number, id: number, flags: number): void {
    this.#d16[slot * 8 + 6] = id;
    this.#pendSlot = slot;
    this.#pendFlags = flags;
  }

  /**
   * IN_ORDER ({@link #closeGroup}): writes the used descriptor at `slot` (§2.8.5: Buffer ID,
   * `len`, flags AVAIL = USED = the used wrap counter), but the first of a batch without its
   * flags: {@link flush} writes those last.
   */
  #fillUsed(slot: number, id: number, len: number, flags: number): void {
    const d32 = this.#d32;
    d32[slot * 4 + 2] = len;
    const p = this.#pendCount;
    if (p === 0) {
      this.#d16[slot * 8 + 6] = id;
      this.#pendSlot = slot;
      this.#pendFlags = flags;
    } else d32[slot * 4 + 3] = id | flags << 16; // Buffer ID and flags in one store
    this.#pendCount = p + 1;
  }

  /**
   * Publishes the used descriptors filled since the last flush: their flags (AVAIL = USED = the
   * used wrap counter, §2.8.1), the first one's last so the batch appears at once (§2.8.22).
   * @returns whether to send a used buffer notification per the driver event suppression
   * structure (§2.8.10): `RING_EVENT_FLAGS_DISABLE` no; `RING_EVENT_FLAGS_DESC` (with
   * `VIRTIO_F_EVENT_IDX`) when the used position passed `off`/`wrap`; `RING_EVENT_FLAGS_ENABLE`,
   * and the reserved value 3 or DESC without EVENT_IDX (#35, treated as enable: a spurious
   * notification is harmless, a missing one hangs the driver) yes. `false` when nothing was filled.
   */
  flush(): boolean {
    if (this.#gOpen) this.#closeGroup();
    const advanced = this.#pendSlots;
    if (advanced === 0) return false;
    // §2.8.22: the first used descriptor's flags last (the others were written whole by push).
    this.#d16[this.#pendSlot * 8 + 7] = this.#pendFlags;
    this.#outstandingSlots -= advanced;
    this.#pendCount = 0;
    this.#pendSlots = 0;
    const flags = this.#drvEv[1] & PACKED_EVENT_FLAGS_MASK;
    if (flags === RING_EVENT_FLAGS_DISABLE) return false;
    if (flags === RING_EVENT_FLAGS_DESC && this.#eventIdx) {
      return packedNeedEvent(this.#drvEv[0], this.#nextUsed, advanced, this.#usedWrap, this.size);
    }
    return true;
  }

  /**
   * Writes the device event suppression structure (spec §2.8.10, §2.8.14): `false` →
   * `RING_EVENT_FLAGS_DISABLE`; `true` → `RING_EVENT_FLAGS_DESC` at the device's next avail
   * position and wrap counter when `VIRTIO_F_EVENT_IDX` is negotiated (kept current by `pop`),
   * else `RING_EVENT_FLAGS_ENABLE`. Touches no memory while broken or inactive.
   * @returns when enabling, whether the descriptor at the device's position is already
   * available (read after the write, as Linux `vhost_enable_notify`): the driver may have made
   * it available while notifications were off, so the caller must poll again. `false` when
   * disabling, broken or inactive.
   */
  setNotifications(enabled: boolean): boolean {
    if (this.#broken !== null || !this.#ready) return false;
    const ev = this.#devEv;
    if (!enabled) {
      this.#notifyMode = MODE_DISABLED;
      ev[1] = RING_EVENT_FLAGS_DISABLE;
    } else if (this.#eventIdx) {
      this.#notifyMode = MODE_DESC;
      ev[0] = packedEventOffWrap(this.#nextAvail, this.#availWrap);
      ev[1] = RING_EVENT_FLAGS_DESC;
    } else {
      this.#notifyMode = MODE_ENABLED;
      ev[1] = RING_EVENT_FLAGS_ENABLE;
    }
    if (!enabled) return false;
    // §2.8.1: available when AVAIL != USED and AVAIL == the device's avail wrap counter.
    const flags = this.#d16[this.#nextAvail * 8 + 7];
    const a = (flags >>> 7) & 1;
    return a !== ((flags >>> 15) & 1) && a === this.#availWrap;
  }

  /**
   * Device reset of this queue (spec §2.1.2, §4.1.4.3.2 RING_RESET): forgets every position,
   * in-flight chain and pending used descriptor, clears the broken state and leaves the queue NOT
   * READY: touches no guest memory, and `pop` throws `QUEUE_NOT_READY` until
   * {@link PackedDeviceQueue.activate}, so stale available descriptors are never consumed.
   */
  reset(): void {
    this.#ready = false;
    this.#broken = null;
    this.#nextAvail = 0;
    this.#availWrap = 1;
    this.#nextUsed = 0;
    this.#usedWrap = 1;
    this.#outstandingSlots = 0;
    this.#notifyMode = MODE_ENABLED;
    this.#pendCount = 0;
    this.#pendSlots = 0;
    this.#fifoHead = 0;
    this.#fifoCount = 0;
    this.#gOpen = false;
    this.#freeCount = 0;
    for (let i = this.#pool.length - 1; i >= 0; i--) {
      this.#pool[i].state = CHAIN_FREE;
      this.#freeChains[this.#freeCount++] = i;
    }
  }

  // --- Saved queue state (migration / back-end reconnect; src/transport/queue_state.ts) -----

  /**
   * The state a VMM saves for this queue (see {@link VirtqueueState}): next avail and used ring
   * offsets with their wrap counters (§2.8.1) and the in-flight Buffer IDs in pop order.
   * Cold path. @throws Error when pushed buffers are not flushed yet (flush first).
   */
  saveState(): VirtqueueState {
    if (this.#pendSlots !== 0 || this.#gOpen) {
      throw new Error("saveState: flush() the pushed used buffers first");
    }
    const inFlight: number[] = [];
    if (this.#inOrder) {
      for (let i = 0; i < this.#fifoCount; i++) {
        inFlight.push(this.#pool[this.#fifo[(this.#fifoHead + i) % this.size]].id);
      }
    } else {
      const live = this.#pool.filter((c) => c.state === CHAIN_IN_FLIGHT);
      live.sort((a, b) => this.#lapDistance(a.headSlot) - this.#lapDistance(b.headSlot));
      for (const c of live) inFlight.push(c.id);
    }
    return {
      layout: "packed",
      size: this.size,
      lastAvail: this.#nextAvail,
      availWrap: this.#availWrap,
      used: this.#nextUsed,
      usedWrap: this.#usedWrap,
      inFlight,
    };
  }

  /** Ring slots from the used position to `slot` (pop order of in-flight heads). */
  #lapDistance(slot: number): number {
    const d = slot - this.#nextUsed;
    return d < 0 ? d + this.size : d;
  }

  /**
   * Restores a saved state into this freshly activated queue (nothing popped yet), checking it
   * against the live ring, and re-walks the in-flight chains through `pop`'s own validation from
   * the used position: the descriptors between the used and the available position are the
   * in-flight lists, untouched by the device as long as it completed them in pop order (always
   * under VIRTIO_F_IN_ORDER); a chain overwritten by an out-of-order completion makes the IDs
   * disagree and is reported, never consumed. Cold path; the hot path is untouched.
   * @returns the in-flight chains, in the state's order, to be pushed as usual.
   * @throws VirtqError `RESTORE_STATE_INVALID` (size differs, an offset not below the size, a wrap
   * counter not 0/1, the available position more than a ring ahead of the used one, in-flight
   * IDs not u16 or more of them than outstanding slots), `RESTORE_RING_MISMATCH` (nothing in flight
   * but the descriptor at the restored position is one the device already used in this lap; an
   * in-flight chain not available, not validating (`cause`), or with another Buffer ID; the
   * lists not ending at the restored available position); the queue is then broken.
   * @throws Error when the queue is not fresh.
   */
  restoreState(state: VirtqueueState): Chain[] {
    if (!this.#ready || this.#broken !== null || this.inFlight !== 0 || this.#pendSlots !== 0) {
      throw new Error("restoreState: the queue must be freshly activated with nothing in flight");
    }
    const size = this.size;
    const bad = (detail: string): never => {
      this.#fail("RESTORE_STATE_INVALID", detail);
    };
    const mismatch = (detail: string, cause?: unknown): never => {
      this.#fail("RESTORE_RING_MISMATCH", detail, undefined, cause);
    };
    if (state.layout !== "packed" || state.size !== size) {
      bad(`saved ${state.layout} size ${state.size}, queue packed ${size}`);
    }
    const off = (v: number) => Number.isInteger(v) && v >= 0 && v < size;
    const bit = (v: number) => v === 0 || v === 1;
    if (
      !off(state.lastAvail) || !off(state.used) || !bit(state.availWrap) || !bit(state.usedWrap)
    ) {
      bad(
        `avail ${state.lastAvail}/${state.availWrap}, used ${state.used}/${state.usedWrap} (size ${size})`,
      );
    }
    // Linear positions modulo 2·size: the wrap counter starts at 1 (§2.8.1).
    const lin = (o: number, w: number) => o + (w === 1 ? 0 : size);
    const slots = (lin(state.lastAvail, state.availWrap) - lin(state.used, state.usedWrap) +
      2 * size) % (2 * size);
    const ids = state.inFlight;
    if (slots > size || ids.length > slots || (slots > 0) !== (ids.length > 0)) {
      bad(`${slots} outstanding slots between used and avail positions, ${ids.length} in flight`);
    }
    const seen = new Set<number>();
    for (const id of ids) {
      // §2.8.6: a Buffer ID names one outstanding buffer at a time.
      if (!(Number.isInteger(id) && id >= 0 && id <= 0xffff) || seen.has(id)) {
        bad(`in-flight Buffer ID ${id} is not a u16 or is repeated`);
      }
      seen.add(id);
    }
    if (ids.length === 0) {
      // §2.8.1: a used descriptor of the current lap at the restored position means the device
      // already went past it.
      const f = this.#d16[state.lastAvail * 8 + 7];
      const a = (f >>> 7) & 1;
      if (a === ((f >>> 15) & 1) && a === state.availWrap) {
        mismatch(
          `slot ${state.lastAvail} holds a used descriptor of wrap ${a}: the device is past it`,
        );
      }
    }
    // §2.8.6: the used position starts a list: the descriptor before it is not an available
    // descriptor of its lap that continues (NEXT) into it.
    const prev = state.used === 0 ? size - 1 : state.used - 1;
    const prevWrap = state.used === 0 ? state.usedWrap ^ 1 : state.usedWrap;
    const pf = this.#d16[prev * 8 + 7];
    const pa = (pf >>> 7) & 1;
    if (pa !== ((pf >>> 15) & 1) && pa === prevWrap && (pf & VIRTQ_DESC_F_NEXT) !== 0) {
      mismatch(
        `used position ${state.used}/${state.usedWrap} is inside the list continuing from slot ${prev}`,
      );
    }
    this.#nextUsed = state.used;
    this.#usedWrap = state.usedWrap;
    this.#nextAvail = state.used;
    this.#availWrap = state.usedWrap;
    const chains: Chain[] = [];
    for (let i = 0; i < ids.length; i++) {
      const at = this.#nextAvail;
      let c: Chain | null;
      try {
        c = this.pop();
      } catch (cause) {
        return mismatch(`in-flight chain #${i} at slot ${at} no longer validates`, cause);
      }
      if (c === null) {
        mismatch(`in-flight chain #${i} (ID ${ids[i]}) at slot ${at} is not available`);
      }
      if (c!.id !== ids[i]) {
        mismatch(
          `in-flight chain #${i} at slot ${at} has Buffer ID ${c!.id}, state says ${ids[i]}`,
        );
      }
      chains.push(c!);
    }
    if (this.#nextAvail !== state.lastAvail || this.#availWrap !== state.availWrap) {
      mismatch(
        `the in-flight lists end at ${this.#nextAvail}/${this.#availWrap}, restored avail ` +
          `position ${state.lastAvail}/${state.availWrap}`,
      );
    }
    if (this.#notifyMode === MODE_DESC) {
      this.#devEv[0] = packedEventOffWrap(this.#nextAvail, this.#availWrap);
    }
    return chains;
  }
}

/**
 * Codes the packed device raises for a hostile driver (for tests and fuzz oracles), derived from
 * the catalogue's `layouts` and `side` (see {@link virtqErrorCodes}).
 */
export const PACKED_DEVICE_ERROR_CODES: readonly VirtqErrorCode[] = virtqErrorCodes(
  "packed",
  "device",
);
