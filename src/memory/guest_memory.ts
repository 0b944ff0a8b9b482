/**
 * Guest-physical memory: a set of non-overlapping regions, each backed by an `ArrayBuffer`.
 *
 * Both the driver (guest CPU view) and the device (after DMA translation) touch guest memory
 * through this class. Multi-byte values are little-endian, as virtio 1.x requires (spec §2.7
 * "Split Virtqueues": `le16`/`le32`/`le64` fields; §1.4 "Structure Specifications").
 *
 * @module
 */

import { type BackingCopier, backingCopier } from "./backing.ts";
import { MemoryFault } from "./fault.ts";
import { TWO_POW_32, type U64, u64FromParts, u64Hi, u64Lo } from "./u64.ts";

/**
 * Cross-region copies shorter than this many bytes use a 32-bit word loop instead of
 * `set(subarray)`: the loop allocates nothing (a `subarray` is a new view object per call, ~100 B)
 * and wins below ~128 B anyway (PERFORMANCE.md: `set`/`copyWithin` cost ~30 ns per call).
 */
const COPY_LOOP_BELOW = 128;

// Copies `length` bytes between non-overlapping ranges, all three multiples of 4: an Int32Array
// loop, 2-4x faster than DataView word accesses on this V8.
function copyAligned(dst: Int32Array, doff: number, src: Int32Array, so: number, length: number) {
  const d = doff >> 2, s = so >> 2, n = length >> 2;
  for (let i = 0; i < n; i++) dst[d + i] = src[s + i];
}

// Copies `length` bytes between two distinct regions' buffers (no overlap possible).
function copyWords(dst: DataView, doff: number, src: DataView, so: number, length: number): void {
  let i = 0;
  for (; i + 4 <= length; i += 4) dst.setUint32(doff + i, src.getUint32(so + i, true), true);
  for (; i < length; i++) dst.setUint8(doff + i, src.getUint8(so + i));
}

/** Description of one region when building a {@link GuestMemory}. */
export interface MemoryRegionSpec {
  /** Guest physical address of the first byte. Must be a multiple of 4096 (a page). */
  gpa: number;
  /** Size in bytes; a positive multiple of 4096. */
  size: number;
  /** Existing backing store of exactly `size` bytes; a zeroed one is allocated when absent. */
  backing?: ArrayBuffer;
  /**
   * Byte offset of the region's first byte in `backing` (default 0; a multiple of 4096; only with
   * `backing`). Regions may share one backing store, as a guest's RAM is one host mapping; a copy
   * between two such regions can then be one `copyWithin` (the swiotlb bounce does this).
   */
  backingOffset?: number;
  /**
   * Confidential-guest memory that the host cannot read (SEV/TDX private pages). Devices reach
   * only shared memory in a confidential guest; DMA models consult this flag. Default `false`.
   */
  private?: boolean;
  /** A label for dumps and error messages, e.g. `"ram-low"`. */
  name?: string;
}

/** Page size of region granularity, in bytes. */
export const GUEST_PAGE_SIZE = 4096;

/** One contiguous range of guest-physical memory with its typed-array views. */
export class MemoryRegion {
  /** GPA of the first byte. */
  readonly gpa: number;
  /** Size in bytes. */
  readonly size: number;
  /** GPA one past the last byte. */
  readonly end: number;
  /** All bytes of the region (offset 0 is `gpa`). */
  readonly bytes: Uint8Array;
  /** Little-endian accessor over the same bytes. */
  readonly view: DataView;
  /** The same bytes as 32-bit words (host order; for aligned word copies only). */
  readonly words: Int32Array;
  /**
   * A view of the region's whole backing store (offset 0 is the store's first byte, not `gpa`),
   * the same object for every region of one GuestMemory built on that store: `a.store ===
   * b.store` tells that two regions share a store (cheaper than comparing `bytes.buffer`, a ~25 ns getter on this V8),
   * and a copy between them is one memmove on it.
   */
  readonly store: Uint8Array;
  /** The store's native memmove when it has one (`backing.ts`), else `null`. */
  readonly copier: BackingCopier | null;
  /** Label for dumps. */
  readonly name: string;
  /** True for confidential-guest private memory (see {@link MemoryRegionSpec.private}). */
  private: boolean;

  /** Creates a region (with a zeroed backing store unless one is given).
   * @param spec validated region description.
   * @param sibling a region on the same backing store, whose {@link MemoryRegion.store} view this
   * one shares (GuestMemory passes one when it has one). */
  constructor(spec: MemoryRegionSpec, sibling?: MemoryRegion) {
    this.gpa = spec.gpa;
    this.size = spec.size;
    this.end = spec.gpa + spec.size;
    const buf = spec.backing ?? new ArrayBuffer(spec.size);
    const off = spec.backing ? spec.backingOffset ?? 0 : 0;
    this.bytes = new Uint8Array(buf, off, spec.size);
    this.view = new DataView(buf, off, spec.size);
    this.words = new Int32Array(buf, off, spec.size / 4);
    const shared = sibling !== undefined && sibling.store.buffer === buf;
    this.store = shared ? sibling.store : new Uint8Array(buf);
    this.copier = shared ? sibling.copier : backingCopier(buf);
    this.name = spec.name ?? `ram@0x${spec.gpa.toString(16)}`;
    this.private = spec.private ?? false;
  }
}

/**
 * Observer of bulk payload accesses, used by fuzz oracles to check that a device only touches the
 * memory its descriptors name. Ring accesses through precomputed views are not reported.
 */
export interface MemoryObserver {
  /** Called before `length` bytes at `gpa` are read. */
  onRead(gpa: number, length: number): void;
  /** Called before `length` bytes at `gpa` are written. */
  onWrite(gpa: number, length: number): void;
}

/**
 * Guest-physical memory made of non-overlapping, page-aligned regions.
 *
 * Every accessor throws {@link MemoryFault} when the access is not wholly inside one region.
 * 64-bit reads return an exact {@link U64} (a bigint above 2^53 - 1), never a rounded number.
 */
export class GuestMemory {
  #regions: MemoryRegion[] = [];
  #last: MemoryRegion | null = null;
  // the region used before #last: a copy between two regions (a bounce) alternates between them
  #prev: MemoryRegion | null = null;
  /** Optional observer of bulk reads/writes (see {@link MemoryObserver}); `null` when off. */
  observer: MemoryObserver | null = null;

  /**
   * Creates guest memory from non-overlapping regions.
   * @param regions initial regions; see {@link GuestMemory.addRegion} for the rules.
   * @throws RangeError when a region is misaligned, empty, overlaps another, or is above 2^52.
   */
  constructor(regions: readonly MemoryRegionSpec[] = []) {
    for (const r of regions) this.addRegion(r);
  }

  /** Convenience: one zeroed region of `size` bytes at `gpa` (default 0). */
  static flat(size: number, gpa = 0): GuestMemory {
    return new GuestMemory([{ gpa, size }]);
  }

  /**
   * Adds a region.
   * @returns the new region.
   * @throws RangeError when `gpa`/`size` are not multiples of 4096, the region is empty, ends
   * above 2^52 (no real platform has more physical address bits), overlaps an existing region,
   * `backing` is shorter than `backingOffset + size`, or `backingOffset` is not a multiple of 4096
   * or is given without `backing`.
   */
  addRegion(spec: MemoryRegionSpec): MemoryRegion {
    const { gpa, size } = spec;
    if (!Number.isSafeInteger(gpa) || gpa < 0 || gpa % GUEST_PAGE_SIZE !== 0) {
      throw new RangeError(
        `region gpa ${
          Number.isSafeInteger(gpa) && gpa >= 0 ? "0x" + gpa.toString(16) : String(gpa)
        } must be a non-negative multiple of 0x1000`,
      );
    }
    if (!Number.isSafeInteger(size) || size <= 0 || size % GUEST_PAGE_SIZE !== 0) {
      throw new RangeError(
        `region size ${
          Number.isSafeInteger(size) && size >= 0 ? "0x" + size.toString(16) : String(size)
        } must be a positive multiple of 0x1000`,
      );
    }
    if (gpa + size > 2 ** 52) {
      throw new RangeError(
        `region ends above 2^52: gpa 0x${gpa.toString(16)} size 0x${size.toString(16)}`,
      );
    }
    const off = spec.backingOffset ?? 0;
    if (
      !Number.isSafeInteger(off) || off < 0 || off % GUEST_PAGE_SIZE !== 0 ||
      (off !== 0 && !spec.backing)
    ) {
      throw new RangeError(
        `region backingOffset ${off} must be a non-negative multiple of 0x1000, with a backing`,
      );
    }
    if (spec.backing && spec.backing.byteLength < off + size) {
      throw new RangeError(
        `region backing has ${spec.backing.byteLength} bytes, needs ${off + size}`,
      );
    }
    for (const r of this.#regions) {
      if (gpa < r.end && r.gpa < gpa + size) {
        throw new RangeError(
          `region [0x${gpa.toString(16)}, +0x${size.toString(16)}) overlaps ${r.name}`,
        );
      }
    }
    const sibling = spec.backing && this.#regions.find((r) => r.store.buffer === spec.backing);
    const region = new MemoryRegion(spec, sibling || undefined);
    this.#regions.push(region);
    this.#regions.sort((a, b) => a.gpa - b.gpa);
    return region;
  }

  /** The regions, sorted by GPA. */
  get regions(): readonly MemoryRegion[] {
    return this.#regions;
  }

  /** The region containing `gpa`, or `undefined` when `gpa` is in a hole. */
  regionAt(gpa: number): MemoryRegion | undefined {
    const last = this.#last;
    if (last !== null && gpa >= last.gpa && gpa < last.end) return last;
    const prev = this.#prev;
    if (prev !== null && gpa >= prev.gpa && gpa < prev.end) {
      this.#prev = last;
      this.#last = prev;
      return prev;
    }
    for (const r of this.#regions) {
      if (gpa >= r.gpa && gpa < r.end) {
        this.#prev = last;
        this.#last = r;
        return r;
      }
    }
    return undefined;
  }

  /**
   * The region that wholly contains `[gpa, gpa + length)`.
   * @throws MemoryFault (`invalid`, `unmapped` or `straddle`).
   */
  resolve(gpa: number, length: number): MemoryRegion {
    // The cached regions answer only what the slow path would accept: a whole-byte offset into
    // the region and a whole-byte length (`x >>> 0 === x`: a non-negative integer below 2^32,
    // as cheap as the `>= 0` tests it replaces). A fraction, NaN or a negative value falls to
    // the slow path's `invalid`; an offset of 4 GiB or more to its region search.
    const last = this.#last;
    if (last !== null) {
      const off = gpa - last.gpa;
      if (off >>> 0 === off && length >>> 0 === length && gpa + length <= last.end) return last;
    }
    const prev = this.#prev;
    if (prev !== null) {
      const off = gpa - prev.gpa;
      if (off >>> 0 === off && length >>> 0 === length && gpa + length <= prev.end) {
        this.#prev = last;
        this.#last = prev;
        return prev;
      }
    }
    return this.#resolveSlow(gpa, length);
  }

  #resolveSlow(gpa: number, length: number): MemoryRegion {
    if (
      !Number.isSafeInteger(gpa) || gpa < 0 || !Number.isSafeInteger(length) || length < 0 ||
      !Number.isSafeInteger(gpa + length)
    ) throw new MemoryFault("invalid", gpa, length);
    const r = this.regionAt(gpa);
    if (r === undefined) throw new MemoryFault("unmapped", gpa, length);
    if (gpa + length > r.end) throw new MemoryFault("straddle", gpa, length);
    return r;
  }

  /** True when `[gpa, gpa + length)` lies wholly inside one region. Never throws. */
  contains(gpa: number, length: number): boolean {
    if (!Number.isSafeInteger(gpa) || gpa < 0 || !Number.isSafeInteger(length) || length < 0) {
      return false;
    }
    const r = this.regionAt(gpa);
    return r !== undefined && gpa + length <= r.end;
  }

  /** Reads a u8. @throws MemoryFault */
  readU8(gpa: number): number {
    const r = this.resolve(gpa, 1);
    return r.bytes[gpa - r.gpa];
  }
  /** Reads a little-endian u16. @throws MemoryFault */
  readU16(gpa: number): number {
    const r = this.resolve(gpa, 2);
    return r.view.getUint16(gpa - r.gpa, true);
  }
  /** Reads a little-endian u32. @throws MemoryFault */
  readU32(gpa: number): number {
    const r = this.resolve(gpa, 4);
    return r.view.getUint32(gpa - r.gpa, true);
  }
  /** Reads a little-endian u64 exactly (a bigint above 2^53 - 1). @throws MemoryFault */
  readU64(gpa: number): U64 {
    const r = this.resolve(gpa, 8);
    const off = gpa - r.gpa;
    return u64FromParts(r.view.getUint32(off, true), r.view.getUint32(off + 4, true));
  }
  /** Writes a u8 (the low 8 bits of `value`). @throws MemoryFault */
  writeU8(gpa: number, value: number): void {
    const r = this.resolve(gpa, 1);
    r.bytes[gpa - r.gpa] = value;
  }
  /** Writes a little-endian u16. @throws MemoryFault */
  writeU16(gpa: number, value: number): void {
    const r = this.resolve(gpa, 2);
    r.view.setUint16(gpa - r.gpa, value, true);
  }
  /** Writes a little-endian u32. @throws MemoryFault */
  writeU32(gpa: number, value: number): void {
    const r = this.resolve(gpa, 4);
    r.view.setUint32(gpa - r.gpa, value >>> 0, true);
  }
  /** Writes a little-endian u64 exactly. @throws MemoryFault */
  writeU64(gpa: number, value: U64): void {
    const r = this.resolve(gpa, 8);
    const off = gpa - r.gpa;
    if (typeof value === "number") {
      r.view.setUint32(off, value % TWO_POW_32, true);
      r.view.setUint32(off + 4, Math.floor(value / TWO_POW_32), true);
    } else {
      r.view.setUint32(off, u64Lo(value), true);
      r.view.setUint32(off + 4, u64Hi(value), true);
    }
  }

  /**
   * Copies `dst.length` bytes starting at `gpa` into `dst` (reported to the observer as a read).
   * @throws MemoryFault
   */
  read(gpa: number, dst: Uint8Array): void {
    const len = dst.length;
    const r = this.resolve(gpa, len);
    if (this.observer !== null) this.observer.onRead(gpa, len);
    const off = gpa - r.gpa;
    dst.set(r.bytes.subarray(off, off + len));
  }

  /** Copies `src` into guest memory at `gpa` (reported as a write). @throws MemoryFault */
  write(gpa: number, src: Uint8Array): void {
    const r = this.resolve(gpa, src.length);
    if (this.observer !== null) this.observer.onWrite(gpa, src.length);
    r.bytes.set(src, gpa - r.gpa);
  }

  /**
   * Copies `length` bytes from `srcGpa` to `dstGpa` (overlap-safe; reported as a read and a write).
   * @throws MemoryFault when either range is not inside one region.
   */
  copy(dstGpa: number, srcGpa: number, length: number): void {
    const s = this.resolve(srcGpa, length);
    const d = this.resolve(dstGpa, length);
    if (this.observer !== null) {
      this.observer.onRead(srcGpa, length);
      this.observer.onWrite(dstGpa, length);
    }
    const so = srcGpa - s.gpa;
    const doff = dstGpa - d.gpa;
    if (
      length < COPY_LOOP_BELOW && ((doff | so | length) & 3) === 0 && doff < 2 ** 31 &&
      so < 2 ** 31 && (s !== d || so + length <= doff || doff + length <= so)
    ) {
      // small, word-aligned, not overlapping: a word loop (no ~30 ns native call)
      copyAligned(d.words, doff, s.words, so, length);
    } else if (s.store === d.store) {
      // one region, or two on one backing store (a bounce slot and its buffer): one memmove
      const db = d.bytes.byteOffset + doff, sb = s.bytes.byteOffset + so;
      const copier = d.copier;
      if (copier !== null) copier(db, sb, length);
      else d.store.copyWithin(db, sb, sb + length);
    } else if (length < COPY_LOOP_BELOW) copyWords(d.view, doff, s.view, so, length);
    else d.bytes.set(s.bytes.subarray(so, so + length), doff);
  }

  /** Fills `length` bytes at `gpa` with `value` (reported as a write). @throws MemoryFault */
  fill(gpa: number, length: number, value = 0): void {
    const r = this.resolve(gpa, length);
    if (this.observer !== null) this.observer.onWrite(gpa, length);
    const off = gpa - r.gpa;
    r.bytes.fill(value, off, off + length);
  }

  /**
   * A zero-copy view of `[gpa, gpa + length)`. Cold path: allocates the view object, so hot
   * paths create views once (e.g. at queue activation) and keep them. Not reported to the observer.
   * @throws MemoryFault
   */
  view(gpa: number, length: number): Uint8Array {
    const r = this.resolve(gpa, length);
    const off = gpa - r.gpa;
    return r.bytes.subarray(off, off + length);
  }

  /** A zero-copy little-endian `DataView` of `[gpa, gpa + length)`. @throws MemoryFault */
  dataView(gpa: number, length: number): DataView {
    const r = this.resolve(gpa, length);
    return new DataView(r.bytes.buffer, r.bytes.byteOffset + (gpa - r.gpa), length);
  }
}
