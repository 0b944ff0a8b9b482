/**
 * The mapping tree of one virtio-iommu domain: the set of mappings created by MAP requests
 * (spec §5.13.6.5), each an inclusive IOVA range `[virtStart, virtEnd]`, a physical start and
 * `VIRTIO_IOMMU_MAP_F_*` flags. Mappings never overlap (an overlapping MAP is rejected with
 * INVAL, never merged) and UNMAP removes whole mappings only (spec §5.13.6.6).
 *
 * Storage is a sorted interval index in typed arrays: every 64-bit address is two u32 words
 * (`hi`, `lo`), so addresses up to 2^64 - 1 stay exact and lookup allocates nothing (binary
 * search, no Map, no BigInt). Insert and remove shift the arrays (control path).
 *
 * @module
 */

import { type U64, u64FromParts, u64Hi, u64Lo } from "../../memory/u64.ts";

/** One mapping, as a snapshot for oracles, dumps and tests. */
export interface ViommuMapping {
  /** First IOVA (exact u64). */
  readonly virtStart: U64;
  /** Last IOVA, inclusive (exact u64). */
  readonly virtEnd: U64;
  /** Guest-physical address of `virtStart` (exact u64). */
  readonly physStart: U64;
  /** `VIRTIO_IOMMU_MAP_F_*` bits. */
  readonly flags: number;
}

/** Compares two 64-bit values given as (hi, lo) u32 words; negative, 0 or positive. */
export function cmpHiLo(aHi: number, aLo: number, bHi: number, bLo: number): number {
  return aHi !== bHi ? aHi - bHi : aLo - bLo;
}

/**
 * A sorted, non-overlapping set of mappings. Fields are public typed arrays so that the
 * endpoint's translate can read them without calls; entries `0 .. count - 1` are valid.
 */
export class ViommuMappingTree {
  /** Number of mappings. */
  count = 0;
  /** Bumped by every change; lets translation caches detect staleness. */
  generation = 0;
  /** `virtStart` high words, sorted ascending with `startLo`. */
  startHi: Uint32Array;
  /** `virtStart` low words. */
  startLo: Uint32Array;
  /** `virtEnd` (inclusive) high words. */
  endHi: Uint32Array;
  /** `virtEnd` (inclusive) low words. */
  endLo: Uint32Array;
  /** `physStart` high words. */
  physHi: Uint32Array;
  /** `physStart` low words. */
  physLo: Uint32Array;
  /** MAP flags. */
  flags: Uint8Array;

  /** Creates an empty tree. @param capacity initial capacity (grows on demand). */
  constructor(capacity = 16) {
    this.startHi = new Uint32Array(capacity);
    this.startLo = new Uint32Array(capacity);
    this.endHi = new Uint32Array(capacity);
    this.endLo = new Uint32Array(capacity);
    this.physHi = new Uint32Array(capacity);
    this.physLo = new Uint32Array(capacity);
    this.flags = new Uint8Array(capacity);
  }

  /** Index of the first mapping whose start is above (hi, lo); `count` if none. Allocation-free. */
  upperBound(hi: number, lo: number): number {
    let a = 0, b = this.count;
    const sh = this.startHi, sl = this.startLo;
    while (a < b) {
      const m = (a + b) >>> 1;
      if (cmpHiLo(sh[m], sl[m], hi, lo) > 0) b = m;
      else a = m + 1;
    }
    return a;
  }

  /** Index of the mapping containing the address (hi, lo), or -1. Allocation-free. */
  lookup(hi: number, lo: number): number {
    const i = this.upperBound(hi, lo) - 1;
    if (i >= 0 && cmpHiLo(this.endHi[i], this.endLo[i], hi, lo) >= 0) return i;
    return -1;
  }

  /** True when any mapping intersects the inclusive range `[start, end]`. */
  overlaps(start: U64, end: U64): boolean {
    const i = this.upperBound(u64Hi(end), u64Lo(end)) - 1;
    return i >= 0 && cmpHiLo(this.endHi[i], this.endLo[i], u64Hi(start), u64Lo(start)) >= 0;
  }

  /**
   * Inserts a mapping. The caller has checked `virtStart <= virtEnd` and that it overlaps
   * nothing ({@link ViommuMappingTree.overlaps}).
   */
  insert(virtStart: U64, virtEnd: U64, physStart: U64, flags: number): void {
    if (this.count === this.startHi.length) this.#grow();
    const sh = u64Hi(virtStart), sl = u64Lo(virtStart);
    const i = this.upperBound(sh, sl);
    const n = this.count;
    if (i < n) {
      this.startHi.copyWithin(i + 1, i, n);
      this.startLo.copyWithin(i + 1, i, n);
      this.endHi.copyWithin(i + 1, i, n);
      this.endLo.copyWithin(i + 1, i, n);
      this.physHi.copyWithin(i + 1, i, n);
      this.physLo.copyWithin(i + 1, i, n);
      this.flags.copyWithin(i + 1, i, n);
    }
    this.startHi[i] = sh;
    this.startLo[i] = sl;
    this.endHi[i] = u64Hi(virtEnd);
    this.endLo[i] = u64Lo(virtEnd);
    this.physHi[i] = u64Hi(physStart);
    this.physLo[i] = u64Lo(physStart);
    this.flags[i] = flags;
    this.count = n + 1;
    this.generation++;
  }

  /**
   * UNMAP of the inclusive range `[start, end]` (spec §5.13.6.6): removes every mapping wholly
   * inside it. If a mapping is only partly covered (the range would split it), removes nothing.
   * @returns the number of mappings removed (0 is a valid no-op), or -1 for a split (RANGE).
   */
  unmap(start: U64, end: U64): number {
    const sH = u64Hi(start), sL = u64Lo(start), eH = u64Hi(end), eL = u64Lo(end);
    let first = this.upperBound(sH, sL) - 1;
    if (first >= 0 && cmpHiLo(this.endHi[first], this.endLo[first], sH, sL) >= 0) {
      // A mapping contains `start`: it must begin exactly there.
      if (cmpHiLo(this.startHi[first], this.startLo[first], sH, sL) < 0) return -1;
    } else first++;
    const last = this.upperBound(eH, eL) - 1;
    if (last < first) return 0;
    if (cmpHiLo(this.endHi[last], this.endLo[last], eH, eL) > 0) return -1;
    const removed = last - first + 1;
    const n = this.count;
    if (last + 1 < n) {
      this.startHi.copyWithin(first, last + 1, n);
      this.startLo.copyWithin(first, last + 1, n);
      this.endHi.copyWithin(first, last + 1, n);
      this.endLo.copyWithin(first, last + 1, n);
      this.physHi.copyWithin(first, last + 1, n);
      this.physLo.copyWithin(first, last + 1, n);
      this.flags.copyWithin(first, last + 1, n);
    }
    this.count -= removed;
    this.generation++;
    return removed;
  }

  /** Removes every mapping. */
  clear(): void {
    this.count = 0;
    this.generation++;
  }

  /** Mapping `i` as a snapshot object (cold path). */
  entry(i: number): ViommuMapping {
    return {
      virtStart: u64FromParts(this.startLo[i], this.startHi[i]),
      virtEnd: u64FromParts(this.endLo[i], this.endHi[i]),
      physStart: u64FromParts(this.physLo[i], this.physHi[i]),
      flags: this.flags[i],
    };
  }

  /** All mappings in IOVA order (cold path). */
  entries(): ViommuMapping[] {
    const out: ViommuMapping[] = [];
    for (let i = 0; i < this.count; i++) out.push(this.entry(i));
    return out;
  }

  #grow(): void {
    const n = Math.max(16, this.startHi.length * 2);
    const g32 = (a: Uint32Array) => {
      const b = new Uint32Array(n);
      b.set(a);
      return b;
    };
    this.startHi = g32(this.startHi);
    this.startLo = g32(this.startLo);
    this.endHi = g32(this.endHi);
    this.endLo = g32(this.endLo);
    this.physHi = g32(this.physHi);
    this.physLo = g32(this.physLo);
    const f = new Uint8Array(n);
    f.set(this.flags);
    this.flags = f;
  }
}
