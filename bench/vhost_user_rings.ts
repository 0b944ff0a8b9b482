/**
 * Hand-laid minimal rings for the `vhost-user` bench: the least a driver can do per buffer
 * (write a descriptor, publish it, read the used entry back), laid straight into the same ring
 * memory the engine's queue would use, with no DMA API, no bookkeeping and no hardening. Their
 * round trip against the same back-end is the denominator of the engine's overhead ratio.
 *
 * Callers pick descriptor ids and keep fewer buffers in flight than the queue size. Identity
 * DMA only (descriptor addresses are GPAs).
 *
 * @module
 */

import type { GuestMemory } from "../src/memory/mod.ts";

/** A device-writable descriptor flag (§2.7.5 VIRTQ_DESC_F_WRITE). */
export const DESC_F_WRITE = 2;
const DESC_F_NEXT = 1, DESC_F_AVAIL = 1 << 7, DESC_F_USED = 1 << 15;

/** One descriptor to lay: address, length, WRITE flag or 0. */
export type HandSegment = readonly [addr: number, len: number, flags: number];

/** The operations the bench needs from a minimal ring. */
export interface HandRing {
  /** Lays a chain of `segs` with buffer id `id` and makes it available. */
  post(id: number, segs: readonly HandSegment[]): void;
  /** True when the device wants a notification (its suppression flag is not set). */
  needKick(): boolean;
  /**
   * Asks for used buffer notifications (`true`) or for none (`false`), as the engine's
   * `enableCallbacks` / `disableCallbacks` do without EVENT_IDX.
   */
  callbacks(enable: boolean): void;
  /** The next used buffer id (and sets `usedLen`), or -1. */
  poll(): number;
  /** Written length of the last polled buffer. */
  usedLen: number;
}

/** Minimal split ring (virtio 1.2 §2.7): descriptor `id + k` for the k-th segment. */
export class HandSplitRing implements HandRing {
  readonly #desc: DataView;
  readonly #avail: DataView;
  readonly #used: DataView;
  readonly #size: number;
  #availIdx = 0;
  #lastUsed = 0;
  /** Written length of the last polled buffer. */
  usedLen = 0;

  /** Over ring areas at GPAs `desc`, `avail`, `used` of `mem`, Queue Size `size`. */
  constructor(mem: GuestMemory, desc: number, avail: number, used: number, size: number) {
    this.#size = size;
    this.#desc = mem.dataView(desc, 16 * size);
    this.#avail = mem.dataView(avail, 6 + 2 * size);
    this.#used = mem.dataView(used, 6 + 8 * size);
  }

  /** Lays `segs` at descriptors id, id+1, ... chained with NEXT, publishes head `id`. */
  post(id: number, segs: readonly HandSegment[]): void {
    const d = this.#desc;
    for (let k = 0; k < segs.length; k++) {
      const o = 16 * (id + k);
      d.setBigUint64(o, BigInt(segs[k][0]), true);
      d.setUint32(o + 8, segs[k][1], true);
      const last = k === segs.length - 1;
      d.setUint16(o + 12, segs[k][2] | (last ? 0 : DESC_F_NEXT), true);
      d.setUint16(o + 14, last ? 0 : id + k + 1, true);
    }
    this.#avail.setUint16(4 + 2 * (this.#availIdx % this.#size), id, true);
    this.#availIdx = (this.#availIdx + 1) & 0xffff;
    this.#avail.setUint16(2, this.#availIdx, true); // x86 TSO: stores stay in order
  }

  /** avail `flags`: 0 or VIRTQ_AVAIL_F_NO_INTERRUPT (§2.7.7). */
  callbacks(enable: boolean): void {
    this.#avail.setUint16(0, enable ? 0 : 1, true);
  }

  /** `!(used.flags & VIRTQ_USED_F_NO_NOTIFY)`. */
  needKick(): boolean {
    return (this.#used.getUint16(0, true) & 1) === 0;
  }

  /** Next used id or -1. */
  poll(): number {
    if (this.#used.getUint16(2, true) === this.#lastUsed) return -1;
    const o = 4 + 8 * (this.#lastUsed % this.#size);
    this.#lastUsed = (this.#lastUsed + 1) & 0xffff;
    this.usedLen = this.#used.getUint32(o + 4, true);
    return this.#used.getUint32(o, true);
  }
}

/** Minimal packed ring (virtio 1.2 §2.8), wrap counters from 1. */
export class HandPackedRing implements HandRing {
  readonly #desc: DataView;
  readonly #devEvent: DataView;
  readonly #drvEvent: DataView;
  readonly #size: number;
  #next = 0;
  #wrap = 1;
  #nextUsed = 0;
  #usedWrap = 1;
  /** Written length of the last polled buffer. */
  usedLen = 0;

  /**
   * Over the descriptor ring at `desc` and the driver and device event suppression areas at
   * `driver` and `device`.
   */
  constructor(mem: GuestMemory, desc: number, driver: number, device: number, size: number) {
    this.#size = size;
    this.#desc = mem.dataView(desc, 16 * size);
    this.#drvEvent = mem.dataView(driver, 4);
    this.#devEvent = mem.dataView(device, 4);
  }

  /** Driver event suppression `flags`: RING_EVENT_FLAGS_ENABLE or _DISABLE (§2.8.10). */
  callbacks(enable: boolean): void {
    this.#drvEvent.setUint16(2, enable ? 0 : 1, true);
  }

  #flags(): number {
    return this.#wrap ? DESC_F_AVAIL : DESC_F_USED;
  }

  /** Lays `segs` in ring order, buffer id on each, the head's flags written last. */
  post(id: number, segs: readonly HandSegment[]): void {
    const d = this.#desc;
    const head = this.#next, headFlags = this.#flags();
    for (let k = 0; k < segs.length; k++) {
      const o = 16 * this.#next;
      d.setBigUint64(o, BigInt(segs[k][0]), true);
      d.setUint32(o + 8, segs[k][1], true);
      d.setUint16(o + 12, id, true);
      const f = segs[k][2] | (k === segs.length - 1 ? 0 : DESC_F_NEXT);
      // the head stays unavailable (flags 0 reads as used or not yet available in either
      // wrap state) until every other descriptor is written
      d.setUint16(o + 14, k > 0 ? f | this.#flags() : 0, true);
      if (++this.#next === this.#size) {
        this.#next = 0;
        this.#wrap ^= 1;
      }
    }
    d.setUint16(16 * head + 14, segs[0][2] | (segs.length > 1 ? DESC_F_NEXT : 0) | headFlags, true);
  }

  /** Device event suppression flags != RING_EVENT_FLAGS_DISABLE. */
  needKick(): boolean {
    return (this.#devEvent.getUint16(2, true) & 3) !== 1;
  }

  /** Next used id or -1 (one used element per buffer; chains skip their length). */
  poll(): number {
    const o = 16 * this.#nextUsed;
    const f = this.#desc.getUint16(o + 14, true);
    const avail = (f >> 7) & 1, used = (f >> 15) & 1;
    if (avail !== used || used !== this.#usedWrap) return -1;
    this.usedLen = this.#desc.getUint32(o + 8, true);
    const id = this.#desc.getUint16(o + 12, true);
    if (++this.#nextUsed === this.#size) {
      this.#nextUsed = 0;
      this.#usedWrap ^= 1;
    }
    return id;
  }
}
