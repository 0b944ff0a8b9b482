/**
 * The packed chain walk (spec §2.8.6 descriptor lists, §2.8.7 indirect tables): reads each
 * descriptor of a list exactly once (HOSTILE_INPUTS #21), applies the descriptor rules of
 * `../rules.ts` and translates every buffer through the device's DMA view into the chain's
 * segments. The ring state (positions, wrap counters, used descriptors, event suppression) stays
 * in `device.ts`; a rule violation is thrown as a {@link VirtqError} that the device records as
 * its broken state.
 *
 * Allocation-free once the chain's arrays are warm.
 *
 * @module
 */

import type { GuestMemory } from "../../memory/guest_memory.ts";
import { type U64, u64Add, u64FromParts } from "../../memory/u64.ts";
import { DMA_ACCESS_READ, DMA_ACCESS_WRITE } from "../../dma/errors.ts";
import type { DmaAddressSpace, DmaTranslation } from "../../dma/types.ts";
import { translateContiguous } from "../../dma/types.ts";
import { IdentityAddressSpace } from "../../dma/identity.ts";
import type { Chain } from "../chain.ts";
import {
  VIRTQ_DESC_F_AVAIL,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_USED,
  VIRTQ_DESC_F_WRITE,
} from "../constants.ts";
import { VirtqError, type VirtqErrorCode } from "../errors.ts";
import type { ChainPolicy } from "../queue.ts";
import {
  addressWrapRule,
  chainBytesRule,
  chainLengthRule,
  framingRule,
  indirectDescriptorRule,
  indirectEntryRule,
  indirectInListRule,
  ruleDetail,
  type RuleSite,
  segmentLimitRule,
  unknownFlagsRule,
  zeroLengthRule,
} from "../rules.ts";

/** Flag bits a packed descriptor may carry (spec §2.8.1, §2.8.13); others are undefined. */
const KNOWN_FLAGS = VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_INDIRECT |
  VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED;
const TWO_POW_32 = 0x1_0000_0000;

/** Walks packed descriptor lists for one device queue (internal to the packed device). */
export class PackedChainWalk {
  /** Queue Size. */
  readonly size: number;
  /** The descriptor ring as u32 and u16 words (set at each activation). */
  d32: Uint32Array = new Uint32Array(0);
  /** See {@link d32}. */
  d16: Uint16Array = new Uint16Array(0);
  /** After {@link walk}: the ring slot after the list. */
  nextSlot = 0;
  /** After {@link walk}: the avail wrap counter at {@link nextSlot}. */
  nextWrap = 1;

  readonly #memory: GuestMemory;
  readonly #dma: DmaAddressSpace;
  readonly #tr: DmaTranslation;
  readonly #indirectOk: boolean;
  readonly #rejectZero: boolean;
  readonly #ignoreNext: boolean;
  readonly #rejectUnknown: boolean;
  private readonly maxSegments: number;
  /** Identity DMA: bus = GPA, so a buffer inside the last region used needs no translate call. */
  readonly #identity: boolean;
  /** GPA range of the region that backed the last translated segment (identity fast path). */
  private rgnStart = 0;
  private rgnEnd = 0;
  #chainBytes = 0;
  /** Records a violation as the device's broken state before it is thrown (cold path). */
  readonly #onFail: (e: VirtqError) => void;

  /**
   * @param size Queue Size.
   * @param memory guest memory.
   * @param dma the device's DMA view.
   * @param tr the queue's reusable translation result.
   * @param policy the effective chain policy.
   * @param indirectOk `VIRTIO_F_INDIRECT_DESC` negotiated.
   * @param onFail called with each violation just before it is thrown (the device breaks).
   */
  constructor(
    size: number,
    memory: GuestMemory,
    dma: DmaAddressSpace,
    tr: DmaTranslation,
    policy: ChainPolicy,
    indirectOk: boolean,
    onFail: (e: VirtqError) => void,
  ) {
    this.size = size;
    this.#memory = memory;
    this.#dma = dma;
    this.#tr = tr;
    this.#indirectOk = indirectOk;
    this.#rejectZero = policy.zeroLength === "reject";
    this.#ignoreNext = policy.indirectWithNext === "ignore-next";
    this.#rejectUnknown = policy.unknownFlags === "reject";
    this.maxSegments = policy.maxSegments;
    this.#identity = Object.getPrototypeOf(dma) === IdentityAddressSpace.prototype;
    this.#onFail = onFail;
  }

  /** Throws a catalogued error naming the offending slot or table entry and the rule. */
  #fail(code: VirtqErrorCode, detail: string, index: number, cause?: unknown): never {
    const e = new VirtqError(code, detail, { index, cause });
    this.#onFail(e);
    throw e;
  }

  /**
   * Walks the list whose head is at ring slot `headSlot` (flags `headFlags`, already seen
   * available with wrap counter `wrap`) into `chain`, reading each descriptor once; sets the
   * chain's Buffer ID and `ringDescriptors`, and {@link nextSlot} / {@link nextWrap}.
   *
   * Kept under V8's inlining limit (460 bytecode bytes) so that it is inlined into the device's
   * `pop`, as the split walk is: every rare case (reserved or INDIRECT flags, a zero-length
   * descriptor, a buffer off the identity fast path, a rule violation) is a call out of line.
   * Bytecode-lean on purpose: flag bits are literals (an imported binding costs bytecode on every
   * use), the rare cases are TS-private (not #private: no brand check).
   * @returns the list length in ring slots.
   * @throws VirtqError a device-side code of the packed layout (see `../rules.ts`).
   */
  walk(chain: Chain, headSlot: number, flags: number, wrap: number): number {
    const size = this.size;
    const d16 = this.d16;
    const d32 = this.d32;
    let pos = headSlot;
    let b = 0; // u32 index of the current descriptor (its u16 index is 2 * b)
    let count = 1;
    let seenWritable = false;
    let total = 0;
    chain.reset(0, headSlot);
    // The head (count 1) was seen available by the caller; every later descriptor is checked
    // at the loop's end, before it is read.
    for (;;) {
      b = pos << 2;
      const lo = d32[b];
      const hi = d32[b + 1];
      const len = d32[b + 2];
      // Recorded first (each descriptor is read once; the rare paths read it back from here).
      chain.addDescriptor(lo, hi, len, flags, false);
      // Flags beyond NEXT (1), WRITE (2), AVAIL (0x80), USED (0x8000): reserved, or INDIRECT
      // (true: its table ended the list, NEXT or not).
      if (flags & 0x7f7c && this.flagged(chain, count)) flags = 0;
      else {
        const write = (flags & 2) !== 0; // VIRTQ_DESC_F_WRITE
        // §2.8.4 Message Framing: device-writable descriptors after device-readable ones.
        if (framingRule(write, seenWritable) !== null) this.readableAfterWritable(pos);
        if (write) seenWritable = true;
        // §2.8.6 (as §2.7.5.2): a list is at most 2^32 - 1 bytes in total (#14); a zero-length
        // descriptor adds nothing, so its own rule (in addRecorded) keeps its place before this.
        total += len;
        if (chainBytesRule(total) !== null) this.tooManyBytes(pos, total);
        // Identity DMA, buffer inside the last region used, under the segment limit: inline (the
        // region stays empty under any other DMA view). A high word of 0 cannot wrap 2^64.
        if (
          hi === 0 && len !== 0 && lo >= this.rgnStart && lo + len <= this.rgnEnd &&
          chain.readableCount + chain.writableCount < this.maxSegments
        ) {
          if (write) chain.addWritable(lo, len);
          else chain.addReadable(lo, len);
        } else this.addRecorded(chain, pos);
      }
      // §2.8.6: a list may wrap the ring end; the wrap counter flips there (#32).
      if (++pos === size) {
        pos = 0;
        wrap ^= 1;
      }
      if (!(flags & 1)) break; // VIRTQ_DESC_F_NEXT
      // §2.8.6 / §2.8.7.1: a list is at most Queue Size descriptors (no loops; #13).
      if (chainLengthRule(++count, size) !== null) this.loop(headSlot, size);
      flags = d16[pos * 8 + 7];
      // §2.8.6: the driver makes the whole list available before the head (§2.8.1: AVAIL
      // (0x80) == the wrap counter, USED (0x8000) its inverse).
      if ((flags & 0x8080) !== 0x8000 >>> (wrap << 3)) this.unavailable(chain, flags);
    }
    // §2.8.6: the Buffer ID is the list's last descriptor's (read once, as each field).
    chain.id = d16[b * 2 + 6];
    chain.ringDescriptors = count;
    this.nextSlot = pos;
    this.nextWrap = wrap;
    return count;
  }

  /**
   * Out of line from {@link PackedChainWalk.walk}: the chain's last recorded descriptor, number
   * `count` of its list, carries flags beyond NEXT, WRITE, AVAIL and USED. Applies the
   * reserved-flags rule; an INDIRECT descriptor ends the list with its table.
   * @returns true when the list ended with an indirect table.
   */
  private flagged(chain: Chain, count: number): boolean {
    const k = chain.descCount - 1;
    // The list so far is recorded, one descriptor per slot from the head.
    const pos = (chain.headSlot + k) % this.size;
    const flags = chain.descFlags[k];
    if (unknownFlagsRule(flags, KNOWN_FLAGS, this.#rejectUnknown) !== null) {
      this.#unknownFlags("slot", pos, flags);
    }
    if ((flags & VIRTQ_DESC_F_INDIRECT) === 0) return false;
    // §2.8.7.1: INDIRECT is never part of a NEXT-linked list.
    const inList = indirectInListRule(count);
    if (inList !== null) this.#fail(inList, ruleDetail(inList, "slot", pos, count), pos);
    // §2.8.7: WRITE on the indirect descriptor itself is reserved and ignored (#29).
    chain.indirect = true;
    this.#chainBytes = 0; // the table starts the list (count 1)
    this.#parseIndirect(chain, k, pos);
    return true;
  }

  /**
   * Out of line from {@link PackedChainWalk.addRecorded}: record `k` (ring descriptor `pos`, of
   * non-zero length) under identity DMA or with a high address word at or above 2^20: the
   * 64-bit wrap rule, then {@link #translate}.
   */
  #addRecordedGeneral(chain: Chain, k: number, pos: number): void {
    // A buffer [addr, addr + len) cannot wrap the 64-bit address space (#15).
    const len = chain.descLen[k];
    if (addressWrapRule(chain.descAddrLo[k], chain.descAddrHi[k], len) !== null) {
      this.#fail("DESC_ADDR_WRAP", ruleDetail("DESC_ADDR_WRAP", "slot", pos, len), pos);
    }
    this.#translate(chain, k, (chain.descFlags[k] & VIRTQ_DESC_F_WRITE) !== 0, pos);
  }

  private loop(headSlot: number, size: number): never {
    const code = "DESC_CHAIN_LOOP";
    this.#fail(code, `list at ${ruleDetail(code, "slot", headSlot, 0, size)}`, headSlot);
  }
  /** The list of `chain` continues into a descriptor (`flags`) that is not available. */
  private unavailable(chain: Chain, flags: number): never {
    // The direct list so far is recorded, one descriptor per slot from the head.
    const headSlot = chain.headSlot;
    const pos = (headSlot + chain.descCount) % this.size;
    this.#fail(
      "PACKED_CHAIN_UNAVAILABLE",
      `list at slot ${headSlot} continues into slot ${pos}, not available (flags 0x${
        flags.toString(16)
      })`,
      pos,
    );
  }
  #unknownFlags(site: RuleSite, index: number, flags: number): never {
    this.#fail("DESC_UNKNOWN_FLAGS", ruleDetail("DESC_UNKNOWN_FLAGS", site, index, flags), index);
  }
  private readableAfterWritable(pos: number): never {
    this.#readableAfterWritable("slot", pos);
  }
  #readableAfterWritable(site: RuleSite, index: number): never {
    const code = "DESC_READABLE_AFTER_WRITABLE";
    this.#fail(code, ruleDetail(code, site, index), index);
  }
  private tooManyBytes(pos: number, total: number): never {
    const code = "CHAIN_TOO_MANY_BYTES";
    this.#fail(code, ruleDetail(code, "slot", pos, total), pos);
  }

  #parseIndirect(chain: Chain, rec: number, slot: number): void {
    const lo = chain.descAddrLo[rec];
    const hi = chain.descAddrHi[rec];
    const len = chain.descLen[rec];
    const flags = chain.descFlags[rec];
    // §2.8.7 / §2.8.7.1 (#22 to #25; policy "ignore-next" ends the list with the table).
    const v = indirectDescriptorRule(
      flags,
      lo,
      hi,
      len,
      this.#indirectOk,
      !this.#ignoreNext,
      this.size,
      true,
    );
    if (v !== null) this.#fail(v, ruleDetail(v, "slot", slot, len, this.size), slot);
    const n = len / 16;
    if (addressWrapRule(lo, hi, len) !== null) {
      this.#fail("DESC_ADDR_WRAP", ruleDetail("DESC_ADDR_WRAP", "slot", slot, len), slot);
    }
    const bus = hi <= 0x1f_ffff ? hi * TWO_POW_32 + lo : u64FromParts(lo, hi);
    const mem = this.#memory;
    let gpa: number;
    let region;
    try {
      gpa = translateContiguous(this.#dma, bus, len, DMA_ACCESS_READ, this.#tr);
      region = mem.resolve(gpa, len);
    } catch (cause) {
      this.#fail(
        "INDIRECT_TABLE_FAULT",
        `indirect table of slot ${slot} (${len} bytes) is not reachable`,
        slot,
        cause,
      );
    }
    if (mem.observer !== null) mem.observer.onRead(gpa, len);
    const dv = region.view;
    let o = gpa - region.gpa;
    let seenWritable = false;
    for (let i = 0; i < n; i++, o += 16) {
      const alo = dv.getUint32(o, true);
      const ahi = dv.getUint32(o + 4, true);
      const l = dv.getUint32(o + 8, true);
      const f = dv.getUint16(o + 14, true);
      if (unknownFlagsRule(f, KNOWN_FLAGS, this.#rejectUnknown) !== null) {
        this.#unknownFlags("indirect entry", i, f);
      }
      // §2.8.7.1: no INDIRECT inside a table (#26). Other flags but WRITE (NEXT, AVAIL, USED)
      // and the Buffer ID are reserved in a table and ignored (§2.8.7, #34).
      const nested = indirectEntryRule(f);
      if (nested !== null) {
        this.#fail(nested, `${ruleDetail(nested, "indirect entry", i)} (slot ${slot})`, i);
      }
      const k = chain.descCount;
      if (k === chain.descLen.length) chain.addDescriptor(alo, ahi, l, f, true);
      else {
        chain.descAddrLo[k] = alo;
        chain.descAddrHi[k] = ahi;
        chain.descLen[k] = l;
        chain.descFlags[k] = f;
        chain.descInIndirect[k] = 1;
        chain.descCount = k + 1;
      }
      const write = (f & VIRTQ_DESC_F_WRITE) !== 0;
      if (framingRule(write, seenWritable) !== null) {
        this.#readableAfterWritable("indirect entry", i);
      }
      if (write) seenWritable = true;
      if (this.#checkBuffer(chain, k, "indirect entry", i)) {
        // Identity DMA, buffer inside the last region used, under the segment limit: inline, as
        // in the list walk above (#translate's own identity path otherwise).
        if (
          this.#identity && ahi === 0 && alo >= this.rgnStart && alo + l <= this.rgnEnd &&
          chain.readableCount + chain.writableCount < this.maxSegments
        ) {
          if (write) chain.addWritable(alo, l);
          else chain.addReadable(alo, l);
        } else this.#translate(chain, k, write, i);
      }
    }
  }

  /**
   * Checks one buffer descriptor before translation: length policy, chain total, 64-bit wrap.
   * @returns false for an allowed zero-length descriptor (nothing to translate).
   */
  #checkBuffer(chain: Chain, rec: number, site: RuleSite, index: number): boolean {
    const len = chain.descLen[rec];
    if (len === 0) {
      if (zeroLengthRule(len, this.#rejectZero) === null) return false;
      this.#fail("DESC_ZERO_LENGTH", ruleDetail("DESC_ZERO_LENGTH", site, index), index);
    }
    // §2.8.6 (as §2.7.5.2): a list is at most 2^32 - 1 bytes in total (#14).
    const total = this.#chainBytes + len;
    if (chainBytesRule(total) !== null) {
      const code = "CHAIN_TOO_MANY_BYTES";
      this.#fail(code, ruleDetail(code, site, index, total), index);
    }
    this.#chainBytes = total;
    // A buffer [addr, addr + len) cannot wrap the 64-bit address space (#15).
    if (addressWrapRule(chain.descAddrLo[rec], chain.descAddrHi[rec], len) !== null) {
      this.#fail("DESC_ADDR_WRAP", ruleDetail("DESC_ADDR_WRAP", site, index, len), index);
    }
    return true;
  }

  #translate(chain: Chain, rec: number, write: boolean, index: number): void {
    const lo = chain.descAddrLo[rec];
    const hi = chain.descAddrHi[rec];
    const len = chain.descLen[rec];
    // Fast path: identity DMA and the whole buffer inside the region used last (no calls).
    if (this.#identity && hi < 0x10_0000) {
      const g = hi * TWO_POW_32 + lo;
      if (g >= this.rgnStart && g + len <= this.rgnEnd) {
        if (
          segmentLimitRule(chain.readableCount + chain.writableCount, this.maxSegments) !== null
        ) this.#tooManySegments(index);
        if (write) chain.addWritable(g, len);
        else chain.addReadable(g, len);
        return;
      }
    }
    if (hi > 0x1f_ff00) {
      this.#translateWide(chain, lo, hi, len, write, index);
      return;
    }
    // Number path: the whole buffer is below 2^53, so the arithmetic is exact and `bus` stays
    // an unboxed double (a number|bigint variable would be boxed: an allocation per buffer).
    let bus = hi * TWO_POW_32 + lo;
    const access = write ? DMA_ACCESS_WRITE : DMA_ACCESS_READ;
    const tr = this.#tr;
    let remaining = len;
    // A buffer may span several translations (IOMMU pages, windows; HOSTILE_INPUTS #46) and
    // adjacent guest memory regions: one segment per contiguous piece.
    while (remaining > 0) {
      // Only the translate call sits in a try block (its handler needs nothing but the cause):
      // with the whole loop inside one, the bus address (at or above 2^31 under an IOMMU) could
      // be boxed per buffer. #addPiece raises its own catalogued errors (already recorded).
      try {
        this.#dma.translate(bus, remaining, access, tr);
      } catch (cause) {
        this.#bufferFault(cause, index);
      }
      const n = this.#addPiece(chain, tr, remaining, write, index);
      remaining -= n;
      bus += n;
    }
  }

  /** Cold path of {@link #translate} for bus addresses near or above 2^53 (exact u64 arithmetic). */
  #translateWide(
    chain: Chain,
    lo: number,
    hi: number,
    len: number,
    write: boolean,
    index: number,
  ): void {
    let bus: U64 = u64FromParts(lo, hi);
    const access = write ? DMA_ACCESS_WRITE : DMA_ACCESS_READ;
    let remaining = len;
    try {
      while (remaining > 0) {
        this.#dma.translate(bus, remaining, access, this.#tr);
        const n = this.#addPiece(chain, this.#tr, remaining, write, index);
        remaining -= n;
        if (remaining > 0) bus = u64Add(bus, n) as U64;
      }
    } catch (cause) {
      this.#bufferFault(cause, index);
    }
  }

  /** Adds one translated piece as a segment (clipped to its region); returns its length. */
  #addPiece(
    chain: Chain,
    tr: DmaTranslation,
    remaining: number,
    write: boolean,
    index: number,
  ): number {
    const gpa = tr.gpa;
    let n = tr.length;
    // The region of the last piece, cached as two numbers (guest memory regions never overlap
    // and are never removed, so a cached region holding the GPA is the one `regionAt` would
    // return); else the lookup, out of line, which faults for a GPA outside guest memory.
    if (!(n >= 1 && n <= remaining && gpa >= this.#trStart && gpa < this.#trEnd)) {
      this.#pieceRegion(gpa, n, remaining, index);
    }
    const end = this.#trEnd;
    if (gpa + n > end) n = end - gpa;
    if (
      segmentLimitRule(chain.readableCount + chain.writableCount, this.maxSegments) !== null
    ) this.#tooManySegments(index);
    if (write) chain.addWritable(gpa, n);
    else chain.addReadable(gpa, n);
    return n;
  }

  /** GPA range of the region that backed the last translated piece (any DMA view). */
  #trStart = 0;
  #trEnd = 0;

  /**
   * Out of line from {@link #addPiece}: the region of a piece outside the cached one. Caches it
   * (for the identity fast paths too, under identity DMA), or raises DESC_BUFFER_FAULT (not
   * guest memory, or a piece of no bytes or more than asked for).
   */
  #pieceRegion(gpa: number, n: number, remaining: number, index: number): void {
    const region = this.#memory.regionAt(gpa);
    if (region === undefined || !(n >= 1 && n <= remaining)) {
      this.#fail(
        "DESC_BUFFER_FAULT",
        `descriptor ${index}: GPA ${gpa} (${n} bytes) is not backed by guest memory`,
        index,
      );
    }
    this.#trStart = region.gpa;
    this.#trEnd = region.end;
    if (this.#identity) {
      // The identity fast paths use the region; it stays empty under any other DMA view.
      this.rgnStart = region.gpa;
      this.rgnEnd = region.end;
    }
  }

  #tooManySegments(index: number): never {
    const code = "CHAIN_TOO_MANY_SEGMENTS";
    this.#fail(code, ruleDetail(code, "descriptor", index, 0, this.maxSegments), index);
  }

  /** A translation fault (or a catalogued error already raised by {@link #fail}). */
  #bufferFault(cause: unknown, index: number): never {
    if (cause instanceof VirtqError) {
      this.#onFail(cause);
      throw cause;
    }
    this.#fail("DESC_BUFFER_FAULT", `descriptor ${index}: ${String(cause)}`, index, cause);
  }

  /**
   * Out of line from {@link PackedChainWalk.walk}: ring descriptor `pos`, the chain's last
   * recorded descriptor (read back from the record, once, not from the ring: no double fetch),
   * off the identity fast path: the zero-length policy, then its buffer as segments.
   *
   * The translated path (any DMA view but identity, high address word below 2^20) is written
   * out here, as the split walk's `addRecorded` is, rather than being a second call: the record
   * is read once, the 64-bit wrap rule is not asked (a buffer below 2^52 + 2^32 cannot wrap
   * 2^64), and the bus address is an untagged double passed to nothing but the DMA view's
   * `translate`. At over V8's 460-byte inlining limit this method is never inlined into the
   * walk (whose budget stays for `pop`) and is compiled on its own, with a whole budget for the
   * IOMMU's translate, translatePage and IOTLB probe: keep it over the limit (a test checks).
   * Identity DMA, a high word at or above 2^20, a fault, a region change and the segment limit
   * go out of line, to {@link #addRecordedGeneral} or the helpers of {@link #translate}.
   */
  private addRecorded(chain: Chain, pos: number): void {
    const k = chain.descCount - 1;
    const len = chain.descLen[k];
    if (len === 0) {
      // Policy: a zero-length descriptor is rejected, or skipped (nothing to translate; #16).
      if (zeroLengthRule(len, this.#rejectZero) === null) return;
      this.#fail("DESC_ZERO_LENGTH", ruleDetail("DESC_ZERO_LENGTH", "slot", pos), pos);
    }
    const hi = chain.descAddrHi[k];
    if (hi >= 0x10_0000 || this.#identity) {
      this.#addRecordedGeneral(chain, k, pos);
      return;
    }
    const w = (chain.descFlags[k] & 2) !== 0; // VIRTQ_DESC_F_WRITE
    // Number path: the whole buffer is below 2^52 + 2^32, so the arithmetic is exact. 2^32 as a
    // literal (an imported or module binding is a chain of dependent loads in optimised code).
    let bus = hi * 0x1_0000_0000 + chain.descAddrLo[k];
    const access = w ? 2 : 1; // DMA_ACCESS_WRITE : DMA_ACCESS_READ
    const tr = this.#tr;
    const dma = this.#dma;
    let remaining = len;
    // A buffer may span several translations (IOMMU pages, windows; HOSTILE_INPUTS #46) and
    // adjacent guest memory regions: one segment per contiguous piece (as #translate).
    for (;;) {
      // Only the call sits in the try block, and its handler needs nothing but the cause: `bus`
      // is not live into it, so it stays an untagged double (no heap number at or above 2^31).
      try {
        dma.translate(bus, remaining, access, tr);
      } catch (cause) {
        this.#bufferFault(cause, pos);
      }
      const gpa = tr.gpa;
      let n = tr.length;
      // The region of the last piece, else the lookup out of line (as #addPiece).
      if (!(n >= 1 && n <= remaining && gpa >= this.#trStart && gpa < this.#trEnd)) {
        this.#pieceRegion(gpa, n, remaining, pos);
      }
      const end = this.#trEnd;
      if (gpa + n > end) n = end - gpa;
      if (
        segmentLimitRule(chain.readableCount + chain.writableCount, this.maxSegments) !== null
      ) this.#tooManySegments(pos);
      if (w) chain.addWritable(gpa, n);
      else chain.addReadable(gpa, n);
      remaining -= n;
      if (remaining <= 0) return;
      bus += n;
    }
  }
}
