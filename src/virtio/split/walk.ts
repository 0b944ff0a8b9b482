/**
 * The split chain walk (spec §2.7.5 direct chains, §2.7.5.3 indirect tables): reads each
 * descriptor of a chain exactly once (HOSTILE_INPUTS #21), applies the descriptor rules of
 * `../rules.ts` and translates every buffer through the device's DMA view into the chain's
 * segments. The ring state (positions, in-flight chains, used ring, notifications) stays in
 * `device.ts`; a rule violation is thrown as a {@link VirtqError} that the device records as its
 * broken state.
 *
 * Allocation-free once the chain's arrays are warm.
 *
 * @module
 */

import type { GuestMemory, MemoryRegion } from "../../memory/guest_memory.ts";
import { hex64, TWO_POW_32, type U64, u64Add, u64FromParts } from "../../memory/u64.ts";
import { DMA_ACCESS_READ, DMA_ACCESS_WRITE } from "../../dma/errors.ts";
import type { DmaAddressSpace, DmaTranslation } from "../../dma/types.ts";
import { translateContiguous } from "../../dma/types.ts";
import { IdentityAddressSpace } from "../../dma/identity.ts";
import type { Chain } from "../chain.ts";
import { VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from "../constants.ts";
import { VirtqError, type VirtqErrorCode } from "../errors.ts";
import type { ChainPolicy } from "../queue.ts";
import {
  addressWrapRule,
  chainBytesRule,
  chainLengthRule,
  framingRule,
  indirectDescriptorRule,
  indirectEntryRule,
  nextIndexRule,
  RULE_OK,
  ruleDetail,
  segmentLimitRule,
  unknownFlagsRule,
  zeroLengthRule,
} from "../rules.ts";

/** Flag bits a split descriptor may carry (spec §2.7.5); others are reserved. */
const KNOWN_DESC_FLAGS = VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_INDIRECT;

/**
 * Walks split chains for one device queue (internal to the split device).
 */
export class SplitChainWalk {
  /** Queue Size. */
  readonly size: number;
  /** Guest memory the buffers point into. */
  readonly memory: GuestMemory;
  /** The descriptor table, viewed as u32 words (set at each activation). */
  table: Uint32Array = new Uint32Array(0);

  readonly #mask: number;
  readonly #dma: DmaAddressSpace;
  readonly #tr: DmaTranslation;
  readonly #inOrder: boolean;
  readonly #indirectOk: boolean;
  readonly #rejectZero: boolean;
  readonly #rejectIndNext: boolean;
  readonly #rejectFlags: boolean;
  readonly #maxSegments: number;
  /** True when the DMA view is exactly {@link IdentityAddressSpace} (bus = GPA below 2^52). */
  readonly #identity: boolean;
  /** GPA range of the region that backed the last translated segment (identity fast path). */
  #rgnStart = 0;
  #rgnEnd = 0;
  /** Records a violation as the device's broken state before it is thrown (cold path). */
  readonly #onFail: (e: VirtqError) => void;

  /**
   * @param size Queue Size.
   * @param memory guest memory.
   * @param dma the device's DMA view.
   * @param tr the queue's reusable translation result.
   * @param policy the effective chain policy.
   * @param inOrder `VIRTIO_F_IN_ORDER` negotiated.
   * @param indirectOk `VIRTIO_F_INDIRECT_DESC` negotiated.
   * @param onFail called with each violation just before it is thrown (the device breaks).
   */
  constructor(
    size: number,
    memory: GuestMemory,
    dma: DmaAddressSpace,
    tr: DmaTranslation,
    policy: Readonly<ChainPolicy>,
    inOrder: boolean,
    indirectOk: boolean,
    onFail: (e: VirtqError) => void,
  ) {
    this.size = size;
    this.#mask = size - 1;
    this.memory = memory;
    this.#dma = dma;
    this.#tr = tr;
    this.#identity = Object.getPrototypeOf(dma) === IdentityAddressSpace.prototype;
    this.#rejectZero = policy.zeroLength === "reject";
    this.#rejectIndNext = policy.indirectWithNext === "reject";
    this.#rejectFlags = policy.unknownFlags === "reject";
    this.#maxSegments = policy.maxSegments;
    this.#inOrder = inOrder;
    this.#indirectOk = indirectOk;
    this.#onFail = onFail;
  }

  #fail(code: VirtqErrorCode, detail: string, index?: number, cause?: unknown): never {
    const e = new VirtqError(code, detail, { index, cause });
    this.#onFail(e);
    throw e;
  }

  /**
   * Walks the chain from descriptor `head` into `chain` (reset by the caller), reading each
   * descriptor once; sets `chain.ringDescriptors`.
   *
   * Kept under V8's inlining limit (460 bytecode bytes) so that it is inlined into the device's
   * `pop`, as the walk was before it moved here: every rare case (reserved or INDIRECT flags, a
   * buffer off the identity fast path, a rule violation) is a call out of line.
   * @throws VirtqError a device-side code of the split layout (see `../rules.ts`).
   */
  walk(chain: Chain, head: number): void {
    const size = this.size;
    const d32 = this.table;
    let idx = head;
    let count = 0;
    let sawWritable = false;
    let total = 0;
    // Bytecode-lean on purpose (see above): rule verdicts are compared with the literal `null`
    // (RULE_OK), flag bits are literals (an imported binding costs bytecode on every use), bit
    // tests are truthiness tests, the rare cases are TS-private (not #private: no brand check).
    for (;;) {
      count++;
      const w4 = idx << 2;
      const lo = d32[w4];
      const hi = d32[w4 + 1];
      const len = d32[w4 + 2];
      const fn = d32[w4 + 3];
      const flags = (fn << 16) >>> 16; // fn & 0xffff
      chain.addDescriptor(lo, hi, len, flags, false);
      // Flags beyond NEXT (1) and WRITE (2): reserved, or INDIRECT (true: the table ended it).
      if (flags & ~3 && this.flagged(chain, idx, sawWritable, total)) break;
      const writable = (flags & 2) !== 0; // VIRTQ_DESC_F_WRITE
      total += len;
      // Policy (QEMU rejects, rust-vmm accepts): zero-length descriptors (#16); §2.7.4.2
      // message framing (#17); §2.7.5.2: a chain is at most 2^32 - 1 bytes (#14).
      if (
        zeroLengthRule(len, this.#rejectZero) !== null ||
        framingRule(writable, sawWritable) !== null || chainBytesRule(total) !== null
      ) this.direct(chain, idx, sawWritable, total);
      if (writable) sawWritable = true;
      if (len) {
        // Identity DMA, buffer inside the last region used, under the segment limit: inline
        // (the region stays empty under any other DMA view).
        if (
          hi === 0 && lo >= this.#rgnStart && lo + len <= this.#rgnEnd &&
          chain.readableCount + chain.writableCount < this.#maxSegments
        ) {
          if (writable) chain.addWritable(lo, len);
          else chain.addReadable(lo, len);
        } else this.addRecorded(chain, idx);
      }
      if (!(flags & 1)) break; // VIRTQ_DESC_F_NEXT
      const next = fn >>> 16;
      // §2.7.5 next is a table index; §2.7.5.2 IN_ORDER: next of x is x + 1 (mod size);
      // §2.7.5.2 loops are forbidden: a chain has at most Queue Size descriptors (#13; the
      // head, count 1, always fits).
      if (
        nextIndexRule(next, size) !== null ||
        (this.#inOrder && next !== ((idx + 1) & this.#mask)) ||
        chainLengthRule(count + 1, size) !== null
      ) this.badNext(head, idx, next);
      idx = next;
    }
    chain.ringDescriptors = count;
  }

  /**
   * Out of line from {@link SplitChainWalk.walk}: descriptor `idx` (the chain's last recorded descriptor)
   * carries flags beyond NEXT and WRITE. Applies the reserved-flags rule; an
   * INDIRECT descriptor ends the chain with its table.
   * @returns true when the chain ended with an indirect table.
   */
  private flagged(chain: Chain, idx: number, sawWritable: boolean, total: number): boolean {
    const k = chain.descCount - 1;
    const flags = chain.descFlags[k];
    if (unknownFlagsRule(flags, KNOWN_DESC_FLAGS, this.#rejectFlags) !== RULE_OK) {
      this.#unknownFlags(idx, flags);
    }
    if ((flags & VIRTQ_DESC_F_INDIRECT) === 0) return false;
    const lo = chain.descAddrLo[k];
    const hi = chain.descAddrHi[k];
    const len = chain.descLen[k];
    this.#walkIndirect(chain, idx, lo, hi, len, flags, sawWritable, total);
    return true;
  }

  /**
   * Out of line from {@link SplitChainWalk.walk}: raises the rule that descriptor `idx` (the chain's last
   * recorded descriptor) broke, given the chain's state before it (`sawWritable`) and its byte
   * total with it.
   */
  private direct(chain: Chain, idx: number, sawWritable: boolean, total: number): never {
    const k = chain.descCount - 1;
    const len = chain.descLen[k];
    const writable = (chain.descFlags[k] & VIRTQ_DESC_F_WRITE) !== 0;
    if (zeroLengthRule(len, this.#rejectZero) !== RULE_OK) this.#zeroLength(idx);
    if (framingRule(writable, sawWritable) !== RULE_OK) this.#readableAfterWritable(idx);
    this.#tooManyBytes(total, idx);
  }

  /**
   * Out of line from {@link SplitChainWalk.walk}: raises the rule broken by moving from descriptor `idx` of
   * the chain from `head` to its `next`, checked in the walk's order (next index, IN_ORDER,
   * then the chain length at `next`).
   */
  private badNext(head: number, idx: number, next: number): never {
    const size = this.size;
    if (nextIndexRule(next, size) !== RULE_OK) this.#nextOutOfRange(idx, next, size);
    if (this.#inOrder && next !== ((idx + 1) & this.#mask)) this.#inOrderNext(idx, next);
    this.#loop(head, next, size, false);
  }

  /**
   * Out of line from {@link SplitChainWalk.walk} (and from the indirect table's walk): adds the
   * buffer of descriptor `idx`, the chain's last recorded descriptor (read back from the record,
   * once, not from the ring: no double fetch), as segments, translated through the DMA view
   * piece by piece (a buffer may span mappings and regions, #46).
   *
   * The translated path is tight on purpose: the record is read once, the bus address is an
   * untagged double that is passed to nothing but the DMA view's `translate` (which V8 inlines
   * here, this method being compiled on its own: at 482 bytecode bytes it is over V8's 460-byte
   * inlining limit, so it is never inlined into the walk, whose budget stays for `pop`, and its
   * own cumulative budget of 920 holds the IOMMU's translate, translatePage and IOTLB probe:
   * keep it over the limit, or the walk takes it and translate becomes a call again), the
   * region of the last piece is cached as two numbers (guest memory regions never overlap and
   * are never removed, so a cached region holding the GPA is the one `regionAt` would return),
   * and every rare case (a bus address at or above 2^52, a fault, a
   * region change, the segment limit) is a call out of line.
   */
  private addRecorded(chain: Chain, idx: number): void {
    const k = chain.descCount - 1;
    const hi = chain.descAddrHi[k];
    const lo = chain.descAddrLo[k];
    const len = chain.descLen[k];
    const w = (chain.descFlags[k] & 2) !== 0; // VIRTQ_DESC_F_WRITE
    // Number path: the whole buffer is below 2^52 + 2^32, so the arithmetic is exact.
    if (hi >= 0x10_0000) {
      this.#addBufferWide(chain, idx, lo, hi, len, w);
      return;
    }
    // 2^32 as a literal: an imported binding is a chain of dependent loads (context, module,
    // cell) in optimised code, on the hottest line of the translated path.
    let bus = hi * 0x1_0000_0000 + lo;
    // Identity DMA (no IOMMU) and the whole buffer inside the last region used: no translation.
    if (this.#identity && this.#addBuffer(chain, idx, hi, len, w)) return;
    const access = w ? 2 : 1; // DMA_ACCESS_WRITE : DMA_ACCESS_READ
    const tr = this.#tr;
    const dma = this.#dma;
    let left = len;
    for (;;) {
      // Only the call sits in the try block, and its handler ends in a throw and needs no bus
      // address (it is recomputed from the record): `bus` is not live into it, so it stays an
      // untagged double (no heap number per buffer at or above 2^31).
      try {
        dma.translate(bus, left, access, tr);
      } catch (cause) {
        throw this.#translateFault(chain, idx, left, cause);
      }
      const gpa = tr.gpa;
      let n = tr.length;
      // The region of the last piece, else a lookup out of line (which faults when the GPA is
      // not guest memory or the piece is empty).
      if (!(n > 0 && gpa >= this.#trStart && gpa < this.#trEnd)) {
        this.#pieceRegion(idx, gpa, n, left);
      }
      // Never trust the DMA view's length beyond what was asked for (a segment must not run
      // past the descriptor's buffer), nor past its region.
      if (n > left) n = left;
      const end = this.#trEnd;
      if (gpa + n > end) n = end - gpa;
      if (
        segmentLimitRule(chain.readableCount + chain.writableCount, this.#maxSegments) !== null
      ) {
        this.#tooManySegments(chain, idx);
      }
      if (w) chain.addWritable(gpa, n);
      else chain.addReadable(gpa, n);
      left -= n;
      if (left <= 0) return;
      bus += n;
    }
  }

  /** The indirect descriptor `idx` of a chain and its table (§2.7.5.3). */
  #walkIndirect(
    chain: Chain,
    idx: number,
    lo: number,
    hi: number,
    len: number,
    flags: number,
    sawWritableIn: boolean,
    totalIn: number,
  ): void {
    const size = this.size;
    // §2.7.5.3 / §2.7.5.3.1 (#22 to #25; policy "ignore-next" ends the chain with the table).
    const v = indirectDescriptorRule(
      flags,
      lo,
      hi,
      len,
      this.#indirectOk,
      this.#rejectIndNext,
      size,
    );
    if (v !== null) this.#fail(v, ruleDetail(v, "descriptor", idx, len, size), idx);
    const entries = len >>> 4;
    if (addressWrapRule(lo, hi, len) !== null) this.#addrWrap(idx, len);
    // The device ignores WRITE on the indirect descriptor (§2.7.5.3.2, #29).
    const bus = u64FromParts(lo, hi);
    let region: MemoryRegion;
    let gpa: number;
    try {
      // The table is DMA too: one contiguous, readable range (#30).
      gpa = translateContiguous(this.#dma, bus, len, DMA_ACCESS_READ, this.#tr);
      region = this.memory.resolve(gpa, len);
    } catch (cause) {
      this.#fail(
        "INDIRECT_TABLE_FAULT",
        `indirect table of descriptor ${idx} (${len} bytes at ${hex64(bus)}) is not reachable`,
        idx,
        cause,
      );
    }
    const table = region.view;
    const base = gpa - region.gpa;
    const inOrder = this.#inOrder;
    chain.indirect = true;
    let sawWritable = sawWritableIn;
    let total = totalIn;
    let i = 0;
    let count = 0;
    for (;;) {
      if (chainLengthRule(++count, entries) !== null) this.#loop(chain.id, i, entries, true);
      const o = base + (i << 4);
      const tlo = table.getUint32(o, true);
      const thi = table.getUint32(o + 4, true);
      const tlen = table.getUint32(o + 8, true);
      const tflags = table.getUint16(o + 12, true);
      const next = table.getUint16(o + 14, true);
      chain.addDescriptor(tlo, thi, tlen, tflags, true);
      if (unknownFlagsRule(tflags, KNOWN_DESC_FLAGS, this.#rejectFlags) !== null) {
        this.#unknownFlags(i, tflags);
      }
      // §2.7.5.3.1: no INDIRECT inside a table (#26).
      const nested = indirectEntryRule(tflags);
      if (nested !== null) this.#fail(nested, ruleDetail(nested, "indirect entry", i), i);
      if (zeroLengthRule(tlen, this.#rejectZero) !== null) this.#zeroLength(i);
      const writable = (tflags & VIRTQ_DESC_F_WRITE) !== 0;
      if (framingRule(writable, sawWritable) !== null) this.#readableAfterWritable(i);
      if (writable) sawWritable = true;
      total += tlen;
      if (chainBytesRule(total) !== null) this.#tooManyBytes(total, i);
      if (tlen !== 0) {
        // Identity DMA, buffer inside the last region used, under the segment limit: inline, as
        // in the direct walk (the region stays empty under any other DMA view).
        if (
          thi === 0 && tlo >= this.#rgnStart && tlo + tlen <= this.#rgnEnd &&
          chain.readableCount + chain.writableCount < this.#maxSegments
        ) {
          if (writable) chain.addWritable(tlo, tlen);
          else chain.addReadable(tlo, tlen);
        } else this.addRecorded(chain, i);
      }
      if ((tflags & VIRTQ_DESC_F_NEXT) === 0) return;
      if (nextIndexRule(next, entries) !== null) this.#nextOutOfRange(i, next, entries);
      // §2.7.5.3.1 IN_ORDER: table entries are sequential.
      if (inOrder && next !== i + 1) this.#inOrderNext(i, next);
      i = next;
    }
  }

  #loop(head: number, idx: number, max: number, inTable: boolean): never {
    this.#fail(
      "DESC_CHAIN_LOOP",
      `chain from head ${head}: ` +
        ruleDetail("DESC_CHAIN_LOOP", inTable ? "indirect entry" : "descriptor", idx, 0, max),
      idx,
    );
  }
  #unknownFlags(idx: number, flags: number): never {
    this.#fail(
      "DESC_UNKNOWN_FLAGS",
      ruleDetail("DESC_UNKNOWN_FLAGS", "descriptor", idx, flags),
      idx,
    );
  }
  #zeroLength(idx: number): never {
    this.#fail("DESC_ZERO_LENGTH", ruleDetail("DESC_ZERO_LENGTH", "descriptor", idx), idx);
  }
  #readableAfterWritable(idx: number): never {
    const code = "DESC_READABLE_AFTER_WRITABLE";
    this.#fail(code, ruleDetail(code, "descriptor", idx), idx);
  }
  #tooManyBytes(total: number, idx: number): never {
    const code = "CHAIN_TOO_MANY_BYTES";
    this.#fail(code, ruleDetail(code, "descriptor", idx, total), idx);
  }
  #nextOutOfRange(idx: number, next: number, max: number): never {
    const code = "DESC_NEXT_OUT_OF_RANGE";
    this.#fail(code, ruleDetail(code, "descriptor", idx, next, max), idx);
  }
  #addrWrap(idx: number, len: number): never {
    this.#fail("DESC_ADDR_WRAP", ruleDetail("DESC_ADDR_WRAP", "descriptor", idx, len), idx);
  }
  #inOrderNext(idx: number, next: number): never {
    this.#fail("IN_ORDER_VIOLATION", `descriptor ${idx} has next ${next} under IN_ORDER`, idx);
  }

  /**
   * The identity fast path of {@link SplitChainWalk.addRecorded}: adds the buffer of the chain's
   * last recorded descriptor (`idx` in its table, high address word `hi` below 2^20; the low word
   * is read back from the record, so no heap number is passed) when it lies inside the last
   * region used.
   * @returns false when it does not (the caller translates).
   */
  #addBuffer(chain: Chain, idx: number, hi: number, len: number, w: boolean): boolean {
    const gpa = hi * 0x1_0000_0000 + chain.descAddrLo[chain.descCount - 1]; // 2^32
    if (!(gpa >= this.#rgnStart && gpa + len <= this.#rgnEnd)) return false;
    if (
      segmentLimitRule(chain.readableCount + chain.writableCount, this.#maxSegments) !== null
    ) {
      this.#tooManySegments(chain, idx);
    }
    if (w) chain.addWritable(gpa, len);
    else chain.addReadable(gpa, len);
    return true;
  }

  /** GPA range of the region that backed the last translated piece (any DMA view). */
  #trStart = 0;
  #trEnd = 0;

  /**
   * Out of line from {@link SplitChainWalk.addRecorded}: the region of a translated piece at
   * `gpa` (`n` bytes, `left` asked for) outside the cached one: caches it (for the identity fast
   * paths too, under identity DMA), or raises DESC_BUFFER_FAULT (not guest memory, or an empty
   * piece).
   */
  #pieceRegion(idx: number, gpa: number, n: number, left: number): void {
    const region = this.memory.regionAt(gpa);
    if (region === undefined || !(n > 0)) this.#bufferFault(idx, gpa, left, null);
    this.#trStart = region.gpa;
    this.#trEnd = region.end;
    if (this.#identity) {
      this.#rgnStart = region.gpa;
      this.#rgnEnd = region.end;
    }
  }

  /**
   * The DESC_BUFFER_FAULT of a failed translate in {@link SplitChainWalk.addRecorded} (queue
   * broken), returned for the caller to throw. The bus address of the piece is the record's
   * plus the bytes already added (`len - left`).
   */
  #translateFault(chain: Chain, idx: number, left: number, cause: unknown): VirtqError {
    const k = chain.descCount - 1;
    const bus = chain.descAddrHi[k] * TWO_POW_32 + chain.descAddrLo[k] + (chain.descLen[k] - left);
    try {
      this.#bufferFault(idx, bus, left, cause);
    } catch (e) {
      return e as VirtqError;
    }
  }

  #bufferFault(idx: number, addr: U64, left: number, cause: unknown): never {
    this.#fail(
      "DESC_BUFFER_FAULT",
      cause === null
        ? `descriptor ${idx}: GPA ${hex64(addr)} is not backed by guest memory`
        : `descriptor ${idx}: bus address ${hex64(addr)} (${left} bytes) does not translate`,
      idx,
      cause === null ? undefined : cause,
    );
  }

  #tooManySegments(chain: Chain, idx: number): never {
    const code = "CHAIN_TOO_MANY_SEGMENTS";
    const detail = ruleDetail(code, "descriptor", idx, 0, this.#maxSegments);
    this.#fail(code, `chain from head ${chain.id}: ${detail}`, idx);
  }

  /** Cold path of {@link SplitChainWalk.addRecorded} for bus addresses at or above 2^52 (exact u64 arithmetic). */
  #addBufferWide(chain: Chain, idx: number, lo: number, hi: number, len: number, w: boolean): void {
    // §2.7.5: [addr, addr + len) must not wrap the 64-bit space (#15).
    if (addressWrapRule(lo, hi, len) !== null) this.#addrWrap(idx, len);
    const access = w ? DMA_ACCESS_WRITE : DMA_ACCESS_READ;
    const memory = this.memory;
    const tr = this.#tr;
    let bus: U64 = u64FromParts(lo, hi);
    let left = len;
    while (left > 0) {
      try {
        this.#dma.translate(bus, left, access, tr);
      } catch (cause) {
        this.#bufferFault(idx, bus, left, cause);
      }
      const gpa = tr.gpa;
      let n = tr.length;
      const region = memory.regionAt(gpa);
      if (region === undefined || !(n > 0)) this.#bufferFault(idx, gpa, left, null);
      if (n > left) n = left; // as in addRecorded
      if (gpa + n > region.end) n = region.end - gpa;
      if (
        segmentLimitRule(chain.readableCount + chain.writableCount, this.#maxSegments) !== null
      ) {
        this.#tooManySegments(chain, idx);
      }
      if (w) chain.addWritable(gpa, n);
      else chain.addReadable(gpa, n);
      left -= n;
      if (left > 0) bus = u64Add(bus, n)!;
    }
  }
}
