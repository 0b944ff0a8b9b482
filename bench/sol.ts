/**
 * The speed-of-light loop: the same ring memory operations as a split-ring round trip (spec §2.7),
 * inlined on typed-array views of one buffer, with no engine in between. The engine's overhead is
 * its time divided by this loop's time for the same ring shape, measured in the same run.
 *
 * Per chain: the driver writes the descriptors (64-bit address as two u32, len, flags, next) from
 * its free list and an available ring entry; publishes the available `idx` once per batch. The
 * device reads the available `idx` and entry, walks the descriptors (bounds-checking index and
 * buffer), records the segments, copies the payload (readable part into writable part, as the
 * loopback device does), writes a used element; publishes the used `idx` once per batch. The
 * driver reads the used `idx` and elements, checks the id and returns the descriptors to its free
 * list. No allocation, no DataView, no BigInt.
 *
 * @module
 */

import { type CaseParams, chainShape, segmentSizes } from "./cases.ts";

const VIRTQ_DESC_F_NEXT = 1;
const VIRTQ_DESC_F_WRITE = 2;
const TWO_POW_32 = 0x1_0000_0000;

/** Bytes of guest memory a speed-of-light ring with these parameters uses. */
export function solFootprint(p: CaseParams): number {
  const ring = p.size * 16 + align4(6 + 2 * p.size) + 6 + 8 * p.size + 64;
  return align4096(ring) + align4096(p.payload) * (2 * p.batch + 1);
}

function align4(n: number): number {
  return (n + 3) & ~3;
}
function align4096(n: number): number {
  return Math.ceil(n / 4096) * 4096;
}

/** A split ring and its payload buffers in one `ArrayBuffer`, driven by inlined code. */
export class SolRing {
  /** Ring parameters. */
  readonly params: CaseParams;
  readonly #bytes: Uint8Array;
  readonly #u16: Uint16Array;
  readonly #u32: Uint32Array;
  readonly #mask: number;
  readonly #size: number;
  readonly #batch: number;
  /** u32 index of descriptor 0 (byte 0). */
  readonly #descU32 = 0;
  /** u16 index of the available ring's `flags`. */
  readonly #availU16: number;
  /** u16 index of the used ring's `flags`; u32 index of its first element. */
  readonly #usedU16: number;
  readonly #usedElemU32: number;
  /** Per-chain buffer layout: GPAs and lengths of each chain's segments. */
  readonly #segGpa: Float64Array;
  readonly #segLen: Uint32Array;
  readonly #nR: number;
  readonly #nW: number;
  readonly #srcGpa: number;
  readonly #payload: number;
  // driver state
  #freeHead = 0;
  #numFree: number;
  #availIdx = 0;
  #lastUsed = 0;
  readonly #token: Int32Array;
  // device state
  #lastAvail = 0;
  #usedIdx = 0;
  readonly #rGpa: Float64Array;
  readonly #rLen: Uint32Array;
  readonly #wGpa: Float64Array;
  readonly #wLen: Uint32Array;
  /** Bytes the device wrote in the last round trip (a sink, so nothing is optimised away). */
  written = 0;

  /**
   * Lays out the ring and buffers.
   * @param p ring shape (size must be a power of 2; `batch * chainLen <= size`).
   * @throws RangeError when the batch does not fit the ring.
   */
  constructor(p: CaseParams) {
    if (p.batch * p.chainLen > p.size) {
      throw new RangeError(`sol: batch ${p.batch} x chain ${p.chainLen} exceeds queue ${p.size}`);
    }
    this.params = p;
    const size = p.size;
    const buf = new ArrayBuffer(solFootprint(p));
    this.#bytes = new Uint8Array(buf);
    this.#u16 = new Uint16Array(buf);
    this.#u32 = new Uint32Array(buf);
    this.#size = size;
    this.#mask = size - 1;
    this.#batch = p.batch;
    const availByte = size * 16;
    const usedByte = availByte + align4(6 + 2 * size);
    this.#availU16 = availByte >> 1;
    this.#usedU16 = usedByte >> 1;
    this.#usedElemU32 = (usedByte + 4) >> 2;
    const bufBase = align4096(usedByte + 6 + 8 * size);
    const slot = align4096(p.payload);
    const { readable, writable } = chainShape(p.chainLen);
    this.#nR = readable;
    this.#nW = writable;
    this.#payload = p.payload;
    const per = readable + writable;
    this.#segGpa = new Float64Array(p.batch * per);
    this.#segLen = new Uint32Array(p.batch * per);
    const rs = readable ? segmentSizes(p.payload, readable) : [];
    const ws = segmentSizes(p.payload, writable);
    for (let c = 0; c < p.batch; c++) {
      let g = bufBase + 2 * c * slot;
      for (let i = 0; i < readable; i++) {
        this.#segGpa[c * per + i] = g;
        this.#segLen[c * per + i] = rs[i];
        g += rs[i];
      }
      g = bufBase + (2 * c + 1) * slot;
      for (let i = 0; i < writable; i++) {
        this.#segGpa[c * per + readable + i] = g;
        this.#segLen[c * per + readable + i] = ws[i];
        g += ws[i];
      }
    }
    this.#srcGpa = bufBase + 2 * p.batch * slot;
    for (let i = 0; i < p.payload; i++) {
      this.#bytes[bufBase + i] = i & 0xff; // chain 0's readable part
      this.#bytes[this.#srcGpa + i] = i & 0xff; // the device's own buffer (chain length 1)
    }
    // descriptor free list: desc[i].next = i + 1
    for (let i = 0; i < size; i++) this.#u16[i * 8 + 7] = (i + 1) & this.#mask;
    this.#numFree = size;
    this.#token = new Int32Array(size).fill(-1);
    this.#rGpa = new Float64Array(Math.max(1, readable));
    this.#rLen = new Uint32Array(Math.max(1, readable));
    this.#wGpa = new Float64Array(writable);
    this.#wLen = new Uint32Array(writable);
  }

  /** One round trip of `batch` chains. @returns chains completed. */
  roundTrip(): number {
    this.#driverAdd();
    this.#device();
    return this.#driverGetUsed();
  }

  #driverAdd(): void {
    const u16 = this.#u16, u32 = this.#u32, mask = this.#mask;
    const per = this.#nR + this.#nW, nR = this.#nR;
    const segGpa = this.#segGpa, segLen = this.#segLen;
    let idx = this.#availIdx;
    for (let c = 0; c < this.#batch; c++) {
      const head = this.#freeHead;
      let d = head;
      for (let i = 0; i < per; i++) {
        const gpa = segGpa[c * per + i];
        const w = d << 2;
        u32[w] = gpa >>> 0;
        u32[w + 1] = (gpa / TWO_POW_32) >>> 0;
        u32[w + 2] = segLen[c * per + i];
        u16[(d << 3) + 6] = (i < per - 1 ? VIRTQ_DESC_F_NEXT : 0) |
          (i >= nR ? VIRTQ_DESC_F_WRITE : 0);
        d = u16[(d << 3) + 7];
      }
      this.#freeHead = d;
      this.#numFree -= per;
      this.#token[head] = c;
      u16[this.#availU16 + 2 + (idx & mask)] = head;
      idx = (idx + 1) & 0xffff;
    }
    u16[this.#availU16 + 1] = idx; // publish avail idx once per batch
    this.#availIdx = idx;
  }

  #device(): void {
    const u16 = this.#u16, u32 = this.#u32, bytes = this.#bytes, mask = this.#mask;
    const size = this.#size, memSize = bytes.length;
    const availIdx = u16[this.#availU16 + 1];
    let last = this.#lastAvail, used = this.#usedIdx;
    const rGpa = this.#rGpa, rLen = this.#rLen, wGpa = this.#wGpa, wLen = this.#wLen;
    while (last !== availIdx) {
      const head = u16[this.#availU16 + 2 + (last & mask)];
      if (head >= size) throw new RangeError("sol: head out of table");
      let d = head, nr = 0, nw = 0, count = 0, flags = 0;
      do {
        if (++count > size) throw new RangeError("sol: descriptor loop");
        const w = d << 2;
        const gpa = u32[w] + u32[w + 1] * TWO_POW_32;
        const len = u32[w + 2];
        flags = u16[(d << 3) + 6];
        if (gpa + len > memSize) throw new RangeError("sol: buffer outside memory");
        if (flags & VIRTQ_DESC_F_WRITE) {
          wGpa[nw] = gpa;
          wLen[nw++] = len;
        } else {
          rGpa[nr] = gpa;
          rLen[nr++] = len;
        }
        d = u16[(d << 3) + 7];
        if (flags & VIRTQ_DESC_F_NEXT && d >= size) throw new RangeError("sol: next out of table");
      } while (flags & VIRTQ_DESC_F_NEXT);
      // payload copy: readable into writable (or the device's own buffer into writable)
      let total = 0;
      if (nr === 0) {
        const n = wLen[0] < this.#payload ? wLen[0] : this.#payload;
        bytes.copyWithin(wGpa[0], this.#srcGpa, this.#srcGpa + n);
        total = n;
      } else {
        let ri = 0, ro = 0, wi = 0, wo = 0;
        while (ri < nr && wi < nw) {
          const a = rLen[ri] - ro, b = wLen[wi] - wo;
          const n = a < b ? a : b;
          bytes.copyWithin(wGpa[wi] + wo, rGpa[ri] + ro, rGpa[ri] + ro + n);
          total += n;
          ro += n;
          wo += n;
          if (ro === rLen[ri]) (ri++, ro = 0);
          if (wo === wLen[wi]) (wi++, wo = 0);
        }
      }
      const e = this.#usedElemU32 + ((used & mask) << 1);
      u32[e] = head;
      u32[e + 1] = total;
      used = (used + 1) & 0xffff;
      last = (last + 1) & 0xffff;
      this.written = total;
    }
    this.#lastAvail = last;
    u16[this.#usedU16 + 1] = used; // publish used idx once per batch
    this.#usedIdx = used;
  }

  #driverGetUsed(): number {
    const u16 = this.#u16, u32 = this.#u32, mask = this.#mask, size = this.#size;
    const usedIdx = u16[this.#usedU16 + 1];
    let last = this.#lastUsed, n = 0;
    while (last !== usedIdx) {
      const e = this.#usedElemU32 + ((last & mask) << 1);
      const id = u32[e];
      const len = u32[e + 1];
      if (id >= size || this.#token[id] < 0) throw new RangeError("sol: bad used id");
      if (len > this.#payload) throw new RangeError("sol: used len exceeds capacity");
      this.#token[id] = -1;
      // detach: walk to the chain's tail, link it to the free list
      let d = id, k = 1;
      while (u16[(d << 3) + 6] & VIRTQ_DESC_F_NEXT) {
        d = u16[(d << 3) + 7];
        k++;
      }
      u16[(d << 3) + 7] = this.#freeHead;
      this.#freeHead = id;
      this.#numFree += k;
      last = (last + 1) & 0xffff;
      n++;
    }
    this.#lastUsed = last;
    return n;
  }

  /** Payload bytes at the first writable segment of chain 0 (for a correctness self-check). */
  firstWritten(n: number): Uint8Array {
    const g = this.#segGpa[this.#nR];
    return this.#bytes.slice(g, g + n);
  }
}

/**
 * The memcpy line: the payload copy alone, as the base-point round trip does it: `batch` copies
 * of `payload` bytes with `copyWithin` from the device's one source buffer into the writable
 * buffer of each chain (same buffer layout as the speed-of-light loop), so it is a lower bound
 * of the copy part of a round trip.
 */
export class MemcpyLine {
  readonly #bytes: Uint8Array;
  readonly #payload: number;
  readonly #batch: number;
  readonly #slot: number;
  readonly #src: number;
  /** Creates the buffers. @param p uses `payload` and `batch`. */
  constructor(p: CaseParams) {
    this.#payload = p.payload;
    this.#batch = p.batch;
    this.#slot = align4096(p.payload);
    this.#src = 2 * p.batch * this.#slot;
    this.#bytes = new Uint8Array(this.#slot * (2 * p.batch + 1));
  }
  /** Copies `batch` payloads. @returns bytes copied. */
  run(): number {
    const b = this.#bytes, n = this.#payload, s = this.#slot, src = this.#src;
    for (let c = 0; c < this.#batch; c++) b.copyWithin((2 * c + 1) * s, src, src + n);
    return n * this.#batch;
  }
}
