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
 * Ranges live in sorted plain arrays: allocation and free are O(live ranges) with no per-call
 * allocation beyond array growth.
 *
 * {@link IovaAllocator.allocFast} / {@link IovaAllocator.freeFast} add Linux's range caches
 * (`iova_rcache`, used by dma-iommu through `alloc_iova_fast` / `free_iova_fast`): a freed range
 * of up to 2^({@link IOVA_RANGE_CACHE_MAX_SIZE} - 1) pages stays allocated in the tree and its
 * first PFN goes into a magazine of its size class ({@link IOVA_MAG_SIZE} PFNs); the next
 * allocation of that size pops the most recently freed PFN that fits below the limit, without a
 * tree search. One CPU's cache is modelled (a `loaded` and a `prev` magazine) plus the global
 * depot of full magazines, bounded at {@link MAX_GLOBAL_MAGS} as in Linux up to 6.6 (newer
 * kernels keep an unbounded depot trimmed by a 100 ms timer). When the tree has no room,
 * `allocFast` empties the caches back into the tree and retries (`flush_rcache`).
 *
 * @module
 */

/** Default IOVA granule (4 KiB), the size of one PFN unless {@link IovaAllocatorOptions.granule}
 * says otherwise. */
export const IOVA_GRANULE = 4096;

/** PFNs per magazine (Linux `IOVA_MAG_SIZE`, 127 since 6.x so a magazine is 1 KiB; was 128). */
export const IOVA_MAG_SIZE = 127;
/** Size classes cached: ranges of 2^0 .. 2^(this - 1) pages (Linux `IOVA_RANGE_CACHE_MAX_SIZE`). */
export const IOVA_RANGE_CACHE_MAX_SIZE = 6;
/** Full magazines the global depot holds per size class (Linux `MAX_GLOBAL_MAGS`, up to 6.6). */
export const MAX_GLOBAL_MAGS = 32;

/** A magazine: a stack of cached first PFNs of one size class. */
class Magazine {
  readonly pfns = new Float64Array(IOVA_MAG_SIZE);
  size = 0;
}

/** One size class: this CPU's `loaded` and `prev` magazines and the global depot. */
class RangeCache {
  loaded = new Magazine();
  prev = new Magazine();
  readonly depot: Magazine[] = [];
  /** Empty magazines kept for reuse (Linux frees and kmallocs them; we recycle). */
  readonly spare: Magazine[] = [];
}

/** Counters of the range caches. */
export interface IovaRcacheStats {
  /** `allocFast` calls answered from a magazine. */
  hits: number;
  /** `allocFast` calls that searched the tree. */
  misses: number;
  /** `freeFast` calls that cached the range. */
  inserts: number;
  /** Times the caches were emptied back into the tree (allocation failure). */
  flushes: number;
}

/** Slots of the lookup hint table minus one (a power of two minus one). */
const HINT_MASK = 1023; // 1024 slots: a lazy flush queue's ~290 IOVAs in flight do not collide

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
  readonly #hint = new Int32Array(HINT_MASK + 1);
  // Inserts and removals so far, and their count at the last refreshHints.
  #version = 0;
  #hintsAt = 0;
  // Every range bound is an integer (always, unless `reserve` was given a fractional PFN): the
  // lookups' direct hint checks rely on it.
  #integral = true;
  /** Range caches by log2 of the size in pages (created on first use). */
  readonly #rcaches: (RangeCache | null)[] = new Array(IOVA_RANGE_CACHE_MAX_SIZE).fill(null);
  /**
   * Lookups ({@link IovaAllocator.findStart}, {@link IovaAllocator.findContaining}) whose hint
   * missed, so they searched the ranges.
   */
  lookupSearches = 0;
  /** Range-cache counters. */
  readonly rcacheStats: IovaRcacheStats = { hits: 0, misses: 0, inserts: 0, flushes: 0 };

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
   * Reserves `[loPfn, hiPfn]` so it is never allocated. Ranges never overlap afterwards, as with
   * Linux `reserve_iova` (drivers/iommu/iova.c, `__adjust_overlap_range`): an overlapping
   * reserved range is widened to cover the new one, an overlapping live range is kept as it is and
   * only the parts of `[loPfn, hiPfn]` outside it are reserved. The gap search relies on this
   * (each gap's bottom is the highest end of the ranges below it).
   */
  reserve(loPfn: number, hiPfn: number): void {
    if (!Number.isInteger(loPfn) || !Number.isInteger(hiPfn)) this.#integral = false;
    let lo = loPfn;
    const r = this.#r;
    // Walk the ranges that overlap [lo, hiPfn] in ascending order (sorted by first PFN).
    let i = this.#lastBelow(lo + 1);
    if (i < 0 || r[i * STRIDE + F_HI] < lo) i++;
    while (i < this.#n && lo <= hiPfn) {
      const o = i * STRIDE;
      const rlo = r[o + F_LO], rhi = r[o + F_HI];
      if (rlo > hiPfn) break;
      if (r[o + F_KIND] === RESERVED) {
        // Widen the reserved range downwards; what lies above it is handled next.
        if (lo < rlo) r[o + F_LO] = lo;
      } else if (lo < rlo) {
        this.#insert(i, lo, rlo - 1, RESERVED, 0, 0);
        i++;
      }
      if (hiPfn <= rhi) return;
      lo = rhi + 1;
      i++;
    }
    if (lo <= hiPfn) this.#insert(i, lo, hiPfn, RESERVED, 0, 0);
  }

  /**
   * The index of the live range starting exactly at `pfn`, or -1 (Linux `find_iova` + start
   * check). Indices are valid until the next alloc/free.
   */
  findStart(pfn: number): number {
    // Direct check of the hint (no neighbour read): while every bound is an integer, a live
    // range starting at `pfn` is the answer of the search below (no range starts in
    // (pfn, pfn + 1)).
    // (the search is out of line: this check is what the map and unmap paths inline)
    const h = this.#hint[(pfn + 1) & HINT_MASK];
    if (this.#integral && h >= 0 && h < this.#n) {
      const o = h * STRIDE, r = this.#r;
      if (r[o + F_LO] === pfn && r[o + F_KIND] === LIVE) return h;
    }
    return this.#findStartSearch(pfn);
  }

  #findStartSearch(pfn: number): number {
    this.lookupSearches++;
    const i = this.#lastBelow(pfn + 1);
    const o = i * STRIDE;
    return i >= 0 && this.#r[o + F_LO] === pfn && this.#r[o + F_KIND] === LIVE ? i : -1;
  }

  /** The index of the live range containing `pfn`, or -1. */
  findContaining(pfn: number): number {
    // As findStart: while every bound is an integer, a live range holding `pfn` is the answer
    // of the search below (the next range starts at or above its last PFN + 1 >= pfn + 1).
    const h = this.#hint[(pfn + 1) & HINT_MASK];
    if (this.#integral && h >= 0 && h < this.#n) {
      const o = h * STRIDE, r = this.#r;
      if (r[o + F_LO] <= pfn && r[o + F_HI] >= pfn && r[o + F_KIND] === LIVE) return h;
    }
    return this.#findContainingSearch(pfn);
  }

  #findContainingSearch(pfn: number): number {
    this.lookupSearches++;
    const i = this.#lastBelow(pfn + 1);
    const o = i * STRIDE;
    return i >= 0 && this.#r[o + F_HI] >= pfn && this.#r[o + F_KIND] === LIVE ? i : -1;
  }

  /**
   * Points the lookup hint of every range's first PFN at that range, when ranges were inserted
   * or removed since the last call (else it does nothing). Hints only speed lookups up (each use
   * checks its range), so no answer changes. dma-iommu's lazy batch flush calls it after freeing
   * into the range caches: every insert below a range moves its record and leaves its hint stale
   * (while the first ~290 IOVAs come from the tree, every one), and without it the maps that take
   * those IOVAs back each searched once.
   */
  refreshHints(): void {
    if (this.#hintsAt === this.#version) return;
    this.#hintsAt = this.#version;
    const r = this.#r, hint = this.#hint, n = this.#n;
    for (let i = 0; i < n; i++) hint[(r[i * STRIDE + F_LO] + 1) & HINT_MASK] = i;
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
    this.#version++;
    return true;
  }

  /**
   * Linux `alloc_iova_fast`: a range of `pages` pages (a power of two up to
   * 2^({@link IOVA_RANGE_CACHE_MAX_SIZE} - 1) is served from the range cache when a cached PFN
   * fits below `limitPfn`), else {@link IovaAllocator.alloc}; when that fails and `flushRcache`
   * is set, the caches are emptied into the tree and the search retried once.
   * @returns the first PFN, or -1.
   */
  allocFast(pages: number, limitPfn: number, a = 0, b = 0, flushRcache = true): number {
    const log = sizeClass(pages);
    if (log >= 0) {
      const rc = this.#rcaches[log];
      if (rc !== null) {
        const pfn = rcacheGet(rc, limitPfn - pages);
        if (pfn >= 0) {
          const i = this.findStart(pfn);
          this.#r[i * STRIDE + F_A] = a;
          this.#r[i * STRIDE + F_B] = b;
          this.rcacheStats.hits++;
          return pfn;
        }
      }
      this.rcacheStats.misses++;
    }
    let pfn = this.alloc(pages, limitPfn, a, b);
    if (pfn < 0 && flushRcache && this.cachedRanges() > 0) {
      this.flushRcaches();
      pfn = this.alloc(pages, limitPfn, a, b);
    }
    return pfn;
  }

  /**
   * Linux `free_iova_fast`: caches the live range starting at `pfn` when its size class is
   * cached (the range stays allocated in the tree until the cache gives it out again or is
   * flushed), else frees it.
   * @returns `false` when no live range starts at `pfn`.
   */
  freeFast(pfn: number): boolean {
    const i = this.findStart(pfn);
    if (i < 0) return false;
    const log = sizeClass(this.rangePages(i));
    if (log >= 0) {
      let rc = this.#rcaches[log];
      if (rc === null) rc = this.#rcaches[log] = new RangeCache();
      if (this.#rcacheInsert(rc, pfn)) {
        this.rcacheStats.inserts++;
        return true;
      }
    }
    return this.free(pfn);
  }

  /**
   * {@link IovaAllocator.freeFast} of the live range at index `i` (from
   * {@link IovaAllocator.findStart} or {@link IovaAllocator.findContaining}, with no alloc or
   * free since): the same effect without looking the range up again.
   */
  freeFastAt(i: number): void {
    const o = i * STRIDE;
    const pfn = this.#r[o + F_LO];
    const log = sizeClass(this.#r[o + F_HI] - pfn + 1);
    if (log >= 0) {
      let rc = this.#rcaches[log];
      if (rc === null) rc = this.#rcaches[log] = new RangeCache();
      if (this.#rcacheInsert(rc, pfn)) {
        this.rcacheStats.inserts++;
        return;
      }
    }
    this.free(pfn);
  }

  /**
   * {@link IovaAllocator.freeFast} of the live range starting at `pfn` whose size the caller
   * knows to be `pages` (dma-iommu's flush queue: it queued exactly such a range). The range
   * cache needs only the size class, so a cached free looks nothing up in the tree.
   */
  freeFastSized(pfn: number, pages: number): void {
    const log = sizeClass(pages);
    if (log >= 0) {
      let rc = this.#rcaches[log];
      if (rc === null) rc = this.#rcaches[log] = new RangeCache();
      if (this.#rcacheInsert(rc, pfn)) {
        this.rcacheStats.inserts++;
        return;
      }
    }
    this.free(pfn);
  }

  /** PFNs held by the range caches (magazines and depot). */
  cachedRanges(): number {
    let n = 0;
    for (const rc of this.#rcaches) {
      if (rc === null) continue;
      n += rc.loaded.size + rc.prev.size;
      for (const m of rc.depot) n += m.size;
    }
    return n;
  }

  /** True when `pfn` is the first PFN of a range held by a range cache. */
  isCached(pfn: number): boolean {
    for (const rc of this.#rcaches) {
      if (rc === null) continue;
      if (magHas(rc.loaded, pfn) || magHas(rc.prev, pfn)) return true;
      for (const m of rc.depot) if (magHas(m, pfn)) return true;
    }
    return false;
  }

  /**
   * Empties every range cache back into the tree (Linux `free_cpu_cached_iovas` +
   * `free_global_cached_iovas`).
   */
  flushRcaches(): void {
    this.rcacheStats.flushes++;
    for (const rc of this.#rcaches) {
      if (rc === null) continue;
      this.#freeMag(rc.loaded);
      this.#freeMag(rc.prev);
      while (rc.depot.length > 0) {
        const m = rc.depot.pop()!;
        this.#freeMag(m);
        rc.spare.push(m);
      }
    }
  }

  #freeMag(m: Magazine): void {
    for (let k = 0; k < m.size; k++) this.free(m.pfns[k]);
    m.size = 0;
  }

  // Linux __iova_rcache_insert: loaded, else swap with prev, else a new loaded magazine (the
  // full one goes to the depot, or back to the tree when the depot is full).
  #rcacheInsert(rc: RangeCache, pfn: number): boolean {
    if (rc.loaded.size === IOVA_MAG_SIZE) {
      if (rc.prev.size < IOVA_MAG_SIZE) {
        const t = rc.prev;
        rc.prev = rc.loaded;
        rc.loaded = t;
      } else {
        const full = rc.loaded;
        rc.loaded = rc.spare.pop() ?? new Magazine();
        if (rc.depot.length < MAX_GLOBAL_MAGS) rc.depot.push(full);
        else {
          this.#freeMag(full);
          rc.spare.push(full);
        }
      }
    }
    const m = rc.loaded;
    m.pfns[m.size++] = pfn;
    return true;
  }

  /**
   * {@link IovaAllocator.allocFast} of one page, fused for dma-iommu's common case: the
   * one-page range cache's loaded magazine is not empty and its newest PFN lies below `limitPfn`
   * (what `rcacheGet` takes first). Then that PFN is popped, its range gets caller values
   * `a = 1` and `b`, the hit is counted, exactly as `allocFast(1, limitPfn, 1, b)` would, and the
   * PFN is returned; otherwise -1 says: call `allocFast`. An empty loaded magazine is first
   * refilled as `rcacheGet` refills it (swapped with `prev` when that holds PFNs, else replaced by
   * the depot's newest full magazine): lazy invalidation's batch frees empty it every ~127 maps.
   * That refill is the one change -1 may leave behind, and `allocFast` would make it first
   * anyway (its `rcacheGet` then finds the loaded magazine full), so the effect is the same.
   */
  allocCachedPage(limitPfn: number, b: number): number {
    const rc = this.#rcaches[0];
    if (rc === null) return -1;
    let m: Magazine | null = rc.loaded;
    if (m.size === 0) {
      m = refillLoaded(rc); // out of line: the map path inlines the rest
      if (m === null) return -1;
    }
    const k = m.size - 1;
    const pfn = m.pfns[k];
    if (pfn > limitPfn - 1) return -1;
    m.size = k;
    const o = this.findStart(pfn) * STRIDE, r = this.#r;
    r[o + F_A] = 1;
    r[o + F_B] = b;
    this.rcacheStats.hits++;
    return pfn;
  }

  /**
   * {@link IovaAllocator.freeFastSized} of the ranges `pfns[k]` of `pages[k]` pages for `k` from
   * `from` on, in order, fused for dma-iommu's lazy batch free (a flush queue hands back hundreds
   * of one-page ranges at once): while `k < to`, entry `k` is one page and the one-page range
   * cache's loaded magazine has room, its PFN is pushed there and counted exactly as
   * `freeFastSized(pfns[k], 1)` would. Returns the first `k` not freed (`to` when all were): the
   * caller frees that entry with `freeFastSized` and calls again. Nothing changes for an entry
   * not freed (for instance while the one-page range cache does not exist yet).
   */
  freeCachedPages(pfns: Float64Array, pages: Float64Array, from: number, to: number): number {
    const rc = this.#rcaches[0];
    if (rc === null) return from;
    const m = rc.loaded, dst = m.pfns;
    let s = m.size, k = from;
    // up to the magazine's room (its array holds IOVA_MAG_SIZE PFNs; read once, not a module
    // constant per iteration), one bound test per entry
    const end = Math.min(to, from + dst.length - s);
    while (k < end && pages[k] === 1) dst[s++] = pfns[k++];
    m.size = s;
    this.rcacheStats.inserts += k - from;
    return k;
  }

  /**
   * {@link IovaAllocator.freeFastAt} fused for dma-iommu's common case: range `i` is one page and
   * the one-page range cache's loaded magazine has room. Then its PFN is pushed there and counted
   * exactly as `freeFastAt(i)` would, and `true` returned; otherwise nothing changes (`false`:
   * call `freeFastAt`).
   */
  freeCachedPageAt(i: number): boolean {
    const o = i * STRIDE;
    const r = this.#r;
    const pfn = r[o + F_LO];
    return r[o + F_HI] === pfn && this.freeCachedPage(pfn);
  }

  /**
   * {@link IovaAllocator.freeFastSized} of a one-page range, fused for dma-iommu's lazy batch
   * free (the flush queue hands back hundreds at once): the one-page range cache exists and its
   * loaded magazine has room. Then `pfn` is pushed there and counted exactly as
   * `freeFastSized(pfn, 1)` would, and `true` returned; otherwise nothing changes (`false`: call
   * `freeFastSized`).
   */
  freeCachedPage(pfn: number): boolean {
    const rc = this.#rcaches[0];
    if (rc === null) return false;
    const m = rc.loaded;
    if (m.size === IOVA_MAG_SIZE) return false;
    m.pfns[m.size++] = pfn;
    this.rcacheStats.inserts++;
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
    this.#version++;
  }

  // Largest index with lo < x, or -1 (binary search). A direct-mapped hint remembers the answer
  // per slot `x & HINT_MASK`; it is checked against its neighbours before use (lo[i] < x <=
  // lo[i + 1] defines the answer, the ranges being sorted and disjoint), so a stale hint (ranges
  // inserted or removed since, or another `x` in the slot) only costs the search. The hint keeps
  // no key: the check is the key (one array less to touch per lookup: lazy invalidation keeps
  // ~290 IOVAs in flight). In steady state (range caches hit) the tree does not change and the
  // lookups of map, unmap and sync skip the search.
  #lastBelow(x: number): number {
    const r = this.#r;
    const n = this.#n;
    const slot = x & HINT_MASK;
    const h = this.#hint[slot];
    if (
      h < n && (h < 0 || r[h * STRIDE + F_LO] < x) &&
      (h + 1 >= n || r[(h + 1) * STRIDE + F_LO] >= x)
    ) return h;
    const i = this.#search2(x, n);
    this.#hint[slot] = i;
    return i;
  }

  #search2(x: number, n: number): number {
    const r = this.#r;
    let l = 0, h = n;
    while (l < h) {
      const m = (l + h) >> 1;
      if (r[m * STRIDE + F_LO] < x) l = m + 1;
      else h = m;
    }
    return l - 1;
  }
}

// log2 of `pages` when it is a power of two of a cached size class, else -1 (dma-iommu rounds
// sizes below 2^(IOVA_RANGE_CACHE_MAX_SIZE - 1) pages up to a power of two before allocating).
function sizeClass(pages: number): number {
  for (let log = 0; log < IOVA_RANGE_CACHE_MAX_SIZE; log++) if (pages === 1 << log) return log;
  return -1;
}

// __iova_rcache_get's refill of an empty loaded magazine: swapped with `prev` when that holds
// PFNs, else replaced by the depot's newest full magazine; returns the new loaded magazine, or
// null (nothing changed) when neither has PFNs.
function refillLoaded(rc: RangeCache): Magazine | null {
  const m = rc.loaded;
  if (rc.prev.size > 0) {
    rc.loaded = rc.prev;
    rc.prev = m;
  } else if (rc.depot.length > 0) {
    rc.spare.push(m);
    rc.loaded = rc.depot.pop()!;
  } else return null;
  return rc.loaded;
}

function magHas(m: Magazine, pfn: number): boolean {
  for (let k = 0; k < m.size; k++) if (m.pfns[k] === pfn) return true;
  return false;
}

// Linux __iova_rcache_get: loaded, else swap with prev, else a full magazine from the depot; then
// iova_magazine_pop: the newest PFN at or below `maxPfn` (swapped with the top and popped).
// The refill is written out here, not a call of refillLoaded: this general path is the reference
// the fused allocCachedPage is compared with (tests/dma/iommu_fast_path_test.ts plants bugs in
// refillLoaded), so the two must not share it.
function rcacheGet(rc: RangeCache, maxPfn: number): number {
  if (rc.loaded.size === 0) {
    if (rc.prev.size > 0) {
      const t = rc.prev;
      rc.prev = rc.loaded;
      rc.loaded = t;
    } else if (rc.depot.length > 0) {
      rc.spare.push(rc.loaded);
      rc.loaded = rc.depot.pop()!;
    } else return -1;
  }
  const m = rc.loaded;
  let i = m.size - 1;
  while (m.pfns[i] > maxPfn) {
    if (i === 0) return -1;
    i--;
  }
  const pfn = m.pfns[i];
  m.pfns[i] = m.pfns[--m.size];
  return pfn;
}
