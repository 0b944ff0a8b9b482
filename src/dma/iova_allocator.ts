/**
 * An IOVA allocator modelled on Linux `drivers/iommu/iova.c` as dma-iommu uses it
 * (DMA_MODES.md M5): page-granular ranges, allocated **top-down** from just below a limit (the
 * device's DMA mask, clipped to the IOMMU's address width), optionally size-aligned (Linux aligns
 * a range of `n` pages to `roundup_pow_of_two(n)` pages), never below `startPfn` (IOVA 0 is never
 * handed out), with reserved ranges (Linux `reserve_iova` for RESV regions such as the MSI window).
 *
 * Like Linux, a search starts below the *cached node* (the last allocation; a free at or above
 * it moves it up to the next range) and retries from the limit when that finds nothing, so
 * IOVAs are handed out in a descending sweep rather than always from the highest gap.
 * Not modelled: the per-CPU range caches (rcaches), which change *which* free range is reused
 * but not the invariants this model checks. Ranges live in sorted plain arrays: allocation and
 * free are O(live ranges) with no per-call allocation beyond array growth.
 *
 * @module
 */

/** Default IOVA granule (4 KiB), the size of one PFN unless {@link IovaAllocatorOptions.granule}
 * says otherwise. */
export const IOVA_GRANULE = 4096;

/** 4 GiB in pages: limits up to here use the 32-bit cached node (Linux `cached32_node`). */
const PFN_4G = 2 ** 20;
/** Range kinds kept by the allocator. */
const LIVE = 0, RESERVED = 1;

/** Options of an {@link IovaAllocator}. */
export interface IovaAllocatorOptions {
  /** Lowest allocatable page frame number (default 1: IOVA 0 is never handed out). */
  startPfn?: number;
  /** Align each range to its size rounded up to a power of two (default `true`, as dma-iommu). */
  sizeAligned?: boolean;
  /**
   * Bytes per PFN, a power of two up to 2^52 (default {@link IOVA_GRANULE}). Linux
   * `init_iova_domain(iovad, granule, start_pfn)`: dma-iommu passes the smallest page size the
   * IOMMU supports (`1 << __ffs(domain->pgsize_bitmap)`), e.g. 64 KiB for a virtio-iommu whose
   * `page_size_mask` starts at bit 16 (virtio spec 5.13.4). Only the byte helpers
   * ({@link IovaAllocator.iovaPfn}, {@link IovaAllocator.reserveIova}) use it: PFNs are counted
   * in granules.
   */
  granule?: number;
}

/** Record layout: first PFN, last PFN (inclusive), kind, caller value a, caller value b. */
const F_LO = 0, F_HI = 1, F_KIND = 2, F_A = 3, F_B = 4, STRIDE = 5;

/** A page-granular IOVA allocator (top-down below a limit). */
export class IovaAllocator {
  /** Lowest allocatable PFN. */
  readonly startPfn: number;
  /** Whether ranges are size-aligned. */
  readonly sizeAligned: boolean;
  /** Bytes per PFN (a power of two, default {@link IOVA_GRANULE}). */
  readonly granule: number;
  // Ranges sorted by first PFN, as STRIDE-number records in one Float64Array: an insert or a
  // remove is one copyWithin (a native memmove) and allocates nothing until capacity doubles.
  #n = 0;
  #r = new Float64Array(64 * STRIDE);
  /** Cached search start (exclusive top) for limits <= 4 GiB [0] and above [1]. */
  #cached = [Infinity, Infinity];

  /** Creates an empty allocator.
   * @throws RangeError for a negative or non-integer `startPfn`, or a `granule` that is not a
   * power of two in `[1, 2^52]`. */
  constructor(options: IovaAllocatorOptions = {}) {
    this.startPfn = options.startPfn ?? 1;
    if (!Number.isSafeInteger(this.startPfn) || this.startPfn < 0) {
      throw new RangeError(`startPfn ${this.startPfn} must be a non-negative integer`);
    }
    this.sizeAligned = options.sizeAligned ?? true;
    const g = options.granule ?? IOVA_GRANULE;
    if (
      !Number.isSafeInteger(g) || g < 1 || g > 2 ** 52 || 2 ** Math.round(Math.log2(g)) !== g
    ) {
      throw new RangeError(`granule ${g} must be a power of two in [1, 2^52]`);
    }
    this.granule = g;
  }

  /** The PFN of byte address `iova`: `floor(iova / granule)` (Linux `iova_pfn`). */
  iovaPfn(iova: number): number {
    return Math.floor(iova / this.granule);
  }

  /**
   * Reserves the granules covering the bytes `[start, end]` (inclusive), as dma-iommu's
   * `iova_reserve_iommu_regions` does for each RESV region: `reserve_iova(iova_pfn(start),
   * iova_pfn(end))`.
   */
  reserveIova(start: number, end: number): void {
    this.reserve(this.iovaPfn(start), this.iovaPfn(end));
  }

  /** Number of ranges held (live and reserved). */
  get rangeCount(): number {
    return this.#n;
  }

  /**
   * Allocates `pages` contiguous pages, the highest such range ending below `limitPfn`
   * (exclusive: pass `(dmaMask + 1) / 4096`) and below the cached node (see the module doc).
   * @param a caller data stored with the range (read back with {@link IovaAllocator.dataA}).
   * @param b second caller value.
   * @returns the first PFN, or -1 when no gap is large enough.
   */
  alloc(pages: number, limitPfn: number, a = 0, b = 0): number {
    if (!Number.isSafeInteger(pages) || pages < 1) throw new RangeError(`bad page count ${pages}`);
    let align = 1;
    if (this.sizeAligned) {
      while (align < pages) align *= 2;
    }
    // Linux starts below the cached node (the last allocation, moved up by frees above it) and
    // retries from the limit when that fails; limits up to 4 GiB and above have separate caches.
    const c = limitPfn <= PFN_4G ? 0 : 1;
    const cached = this.#cached[c];
    if (cached < limitPfn) {
      const pfn = this.#search(pages, align, cached, a, b);
      if (pfn >= 0) {
        this.#cached[c] = pfn;
        return pfn;
      }
    }
    const pfn = this.#search(pages, align, limitPfn, a, b);
    if (pfn >= 0) this.#cached[c] = pfn;
    return pfn;
  }

  // Highest gap of `pages` (aligned) ending at or below `top` (exclusive); inserts the range.
  #search(pages: number, align: number, top: number, a: number, b: number): number {
    const r = this.#r;
    let high = top; // exclusive top of the current gap
    let i = this.#lastBelow(high); // the last range starting below `high`
    for (;;) {
      const bottom = i >= 0 ? r[i * STRIDE + F_HI] + 1 : this.startPfn;
      if (high - bottom >= pages) {
        const cand = Math.floor((high - pages) / align) * align;
        if (cand >= bottom) {
          this.#insert(i + 1, cand, cand + pages - 1, LIVE, a, b);
          return cand;
        }
      }
      if (i < 0) return -1;
      const lo = r[i * STRIDE + F_LO];
      if (lo < high) high = lo;
      i--;
    }
  }

  /**
   * Reserves `[loPfn, hiPfn]` so it is never allocated (overlapping live ranges are kept).
   */
  reserve(loPfn: number, hiPfn: number): void {
    const i = this.#lastBelow(loPfn + 1);
    this.#insert(i + 1, loPfn, hiPfn, RESERVED, 0, 0);
  }

  /**
   * The index of the live range starting exactly at `pfn`, or -1 (Linux `find_iova` + start
   * check). Indices are valid until the next alloc/free.
   */
  findStart(pfn: number): number {
    const i = this.#lastBelow(pfn + 1);
    const o = i * STRIDE;
    return i >= 0 && this.#r[o + F_LO] === pfn && this.#r[o + F_KIND] === LIVE ? i : -1;
  }

  /** The index of the live range containing `pfn`, or -1. */
  findContaining(pfn: number): number {
    const i = this.#lastBelow(pfn + 1);
    const o = i * STRIDE;
    return i >= 0 && this.#r[o + F_HI] >= pfn && this.#r[o + F_KIND] === LIVE ? i : -1;
  }

  /** First PFN of range `i`. */
  rangeLo(i: number): number {
    return this.#r[i * STRIDE + F_LO];
  }
  /** Pages of range `i`. */
  rangePages(i: number): number {
    return this.#r[i * STRIDE + F_HI] - this.#r[i * STRIDE + F_LO] + 1;
  }
  /** Caller value `a` of range `i`. */
  dataA(i: number): number {
    return this.#r[i * STRIDE + F_A];
  }
  /** Caller value `b` of range `i`. */
  dataB(i: number): number {
    return this.#r[i * STRIDE + F_B];
  }
  /** Sets caller value `b` of range `i`. */
  setDataB(i: number, v: number): void {
    this.#r[i * STRIDE + F_B] = v;
  }

  /** Frees the live range starting at `pfn`. @returns `false` when there is none. */
  free(pfn: number): boolean {
    const i = this.findStart(pfn);
    if (i < 0) return false;
    const n = this.#n;
    // Linux __cached_rbnode_delete_update: freeing at or above the cached node moves the cache
    // up to the next higher range, so the freed space is searched first next time.
    const next = i + 1 < n ? this.#r[(i + 1) * STRIDE + F_LO] : Infinity;
    for (let c = 0; c < 2; c++) if (pfn >= this.#cached[c]) this.#cached[c] = next;
    this.#r.copyWithin(i * STRIDE, (i + 1) * STRIDE, n * STRIDE);
    this.#n = n - 1;
    return true;
  }

  #insert(at: number, lo: number, hi: number, kind: number, a: number, b: number): void {
    const n = this.#n;
    if ((n + 1) * STRIDE > this.#r.length) {
      const bigger = new Float64Array(this.#r.length * 2);
      bigger.set(this.#r);
      this.#r = bigger;
    }
    const r = this.#r;
    if (at < n) r.copyWithin((at + 1) * STRIDE, at * STRIDE, n * STRIDE);
    const o = at * STRIDE;
    r[o + F_LO] = lo;
    r[o + F_HI] = hi;
    r[o + F_KIND] = kind;
    r[o + F_A] = a;
    r[o + F_B] = b;
    this.#n = n + 1;
  }

  // Largest index with lo < x, or -1 (binary search).
  #lastBelow(x: number): number {
    const r = this.#r;
    let l = 0, h = this.#n;
    while (l < h) {
      const m = (l + h) >> 1;
      if (r[m * STRIDE + F_LO] < x) l = m + 1;
      else h = m;
    }
    return l - 1;
  }
}
