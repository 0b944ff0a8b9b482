/**
 * `Chain`: one buffer popped by the device, as the descriptors described it and as guest memory
 * segments after DMA translation.
 *
 * A chain is reused: a device queue keeps a pool of chains and refills one per `pop`, so the hot
 * path allocates nothing once the pool is warm. A chain stays valid until it is pushed back
 * (`DeviceQueue.push`) or the queue is reset.
 *
 * @module
 */

import type { GuestMemory } from "../memory/guest_memory.ts";
import { type U64, u64FromParts } from "../memory/u64.ts";

/**
 * A device-side view of one available buffer (spec §2.7.13 / §2.8.21 "the device ... processes
 * the buffer"): its ordered descriptors, then its device-readable and device-writable guest
 * memory segments (Message Framing, §2.7.4: readable first).
 */
export class Chain {
  /** Memory the segments point into. */
  readonly memory: GuestMemory;
  /**
   * The id to return in the used ring: the head descriptor index (split, §2.7.8) or the buffer
   * ID (packed, §2.8.5).
   */
  id = 0;
  /** Ring slot of the head descriptor (split: == id; packed: the slot index). */
  headSlot = 0;
  /** Ring descriptors the chain occupies (packed: the used-descriptor skip count, §2.8.6). */
  ringDescriptors = 0;
  /** True when the chain went through an indirect table. */
  indirect = false;

  /** Number of descriptors recorded (direct ones and those inside an indirect table). */
  descCount = 0;
  /** Each descriptor's `addr`, low 32 bits. */
  descAddrLo: Uint32Array;
  /** Each descriptor's `addr`, high 32 bits. */
  descAddrHi: Uint32Array;
  /** Each descriptor's `len` in bytes. */
  descLen: Uint32Array;
  /** Each descriptor's `flags` as read (u16). */
  descFlags: Uint16Array;
  /** 1 when the descriptor came from an indirect table, else 0. */
  descInIndirect: Uint8Array;

  /** Number of device-readable GPA segments. */
  readableCount = 0;
  /** Number of device-writable GPA segments. */
  writableCount = 0;
  /** GPA of each readable segment. */
  readableGpa: Float64Array;
  /** Byte length of each readable segment. */
  readableLen: Uint32Array;
  /** GPA of each writable segment. */
  writableGpa: Float64Array;
  /** Byte length of each writable segment. */
  writableLen: Uint32Array;
  /** Total device-readable bytes. */
  readableBytes = 0;
  /** Total device-writable bytes (the most a used `len` may report). */
  writableBytes = 0;

  /**
   * Creates an empty chain.
   * @param memory guest memory the segments refer to.
   * @param capacity initial descriptor and segment capacity (grows on demand, cold path).
   */
  constructor(memory: GuestMemory, capacity = 8) {
    this.memory = memory;
    this.descAddrLo = new Uint32Array(capacity);
    this.descAddrHi = new Uint32Array(capacity);
    this.descLen = new Uint32Array(capacity);
    this.descFlags = new Uint16Array(capacity);
    this.descInIndirect = new Uint8Array(capacity);
    this.readableGpa = new Float64Array(capacity);
    this.readableLen = new Uint32Array(capacity);
    this.writableGpa = new Float64Array(capacity);
    this.writableLen = new Uint32Array(capacity);
  }

  /** Empties the chain for refilling by a ring implementation. */
  reset(id: number, headSlot: number): void {
    this.id = id;
    this.headSlot = headSlot;
    this.ringDescriptors = 0;
    this.indirect = false;
    this.descCount = 0;
    this.readableCount = 0;
    this.writableCount = 0;
    this.readableBytes = 0;
    this.writableBytes = 0;
  }

  /** Records a descriptor as read from the ring or table (for ring implementations). */
  addDescriptor(addrLo: number, addrHi: number, len: number, flags: number, inIndirect: boolean) {
    const i = this.descCount;
    if (i === this.descLen.length) this.#growDesc();
    this.descAddrLo[i] = addrLo;
    this.descAddrHi[i] = addrHi;
    this.descLen[i] = len;
    this.descFlags[i] = flags;
    this.descInIndirect[i] = inIndirect ? 1 : 0;
    this.descCount = i + 1;
  }

  /** Exact bus address of recorded descriptor `i`. */
  descAddr(i: number): U64 {
    return u64FromParts(this.descAddrLo[i], this.descAddrHi[i]);
  }

  /** Appends a translated device-readable segment (for ring implementations). */
  addReadable(gpa: number, len: number): void {
    const i = this.readableCount;
    if (i === this.readableLen.length) this.#growReadable();
    this.readableGpa[i] = gpa;
    this.readableLen[i] = len;
    this.readableCount = i + 1;
    this.readableBytes += len;
  }

  /** Appends a translated device-writable segment (for ring implementations). */
  addWritable(gpa: number, len: number): void {
    const i = this.writableCount;
    if (i === this.writableLen.length) this.#growWritable();
    this.writableGpa[i] = gpa;
    this.writableLen[i] = len;
    this.writableCount = i + 1;
    this.writableBytes += len;
  }

  /** Total segments, readable plus writable. */
  get segmentCount(): number {
    return this.readableCount + this.writableCount;
  }

  /**
   * Copies device-readable bytes, starting `offset` bytes into the buffer, into `dst`.
   * @returns bytes copied (less than `dst.length` when the readable part is shorter).
   * @throws MemoryFault only if memory changed under the chain (segments were validated at pop).
   */
  readInto(dst: Uint8Array, offset = 0): number {
    let copied = 0;
    let skip = offset;
    for (let i = 0; i < this.readableCount && copied < dst.length; i++) {
      const len = this.readableLen[i];
      if (skip >= len) {
        skip -= len;
        continue;
      }
      const n = Math.min(len - skip, dst.length - copied);
      this.memory.read(this.readableGpa[i] + skip, dst.subarray(copied, copied + n));
      copied += n;
      skip = 0;
    }
    return copied;
  }

  /**
   * Writes `src` into the device-writable segments, starting `offset` bytes into the writable
   * part, up to its capacity.
   * @returns bytes written.
   * @throws MemoryFault only if memory changed under the chain.
   */
  writeFrom(src: Uint8Array, offset = 0): number {
    let written = 0;
    let skip = offset;
    for (let i = 0; i < this.writableCount && written < src.length; i++) {
      const len = this.writableLen[i];
      if (skip >= len) {
        skip -= len;
        continue;
      }
      const n = Math.min(len - skip, src.length - written);
      this.memory.write(this.writableGpa[i] + skip, src.subarray(written, written + n));
      written += n;
      skip = 0;
    }
    return written;
  }

  /**
   * Copies the readable bytes into the writable segments, guest memory to guest memory, up to
   * the writable capacity (what a loopback device does). Allocation-free.
   * @returns bytes written, `min(readableBytes, writableBytes)`.
   */
  copyReadableToWritable(): number {
    const mem = this.memory;
    let ri = 0, roff = 0, wi = 0, woff = 0, total = 0;
    while (ri < this.readableCount && wi < this.writableCount) {
      const rlen = this.readableLen[ri] - roff;
      const wlen = this.writableLen[wi] - woff;
      const n = rlen < wlen ? rlen : wlen;
      if (n > 0) mem.copy(this.writableGpa[wi] + woff, this.readableGpa[ri] + roff, n);
      total += n;
      roff += n;
      woff += n;
      if (roff === this.readableLen[ri]) {
        ri++;
        roff = 0;
      }
      if (woff === this.writableLen[wi]) {
        wi++;
        woff = 0;
      }
    }
    return total;
  }

  #growDesc(): void {
    const n = this.descLen.length * 2 || 8;
    this.descAddrLo = grow32(this.descAddrLo, n);
    this.descAddrHi = grow32(this.descAddrHi, n);
    this.descLen = grow32(this.descLen, n);
    const f = new Uint16Array(n);
    f.set(this.descFlags);
    this.descFlags = f;
    const x = new Uint8Array(n);
    x.set(this.descInIndirect);
    this.descInIndirect = x;
  }
  #growReadable(): void {
    const n = this.readableLen.length * 2 || 8;
    const g = new Float64Array(n);
    g.set(this.readableGpa);
    this.readableGpa = g;
    this.readableLen = grow32(this.readableLen, n);
  }
  #growWritable(): void {
    const n = this.writableLen.length * 2 || 8;
    const g = new Float64Array(n);
    g.set(this.writableGpa);
    this.writableGpa = g;
    this.writableLen = grow32(this.writableLen, n);
  }
}

function grow32(a: Uint32Array, n: number): Uint32Array {
  const b = new Uint32Array(n);
  b.set(a);
  return b;
}
