/**
 * An IOTLB: the IOMMU's cache of page-table walks, modelled on QEMU's VT-d IOTLB
 * (DMA_MODES.md §3.3): entries keyed by (domain, page number, level), at most `capacity` entries
 * (QEMU `VTD_IOTLB_MAX_SIZE` = 1024), and **the whole IOTLB is flushed when an insert finds it
 * full** ("iotlb exceeds size limit"). Invalidation by page (VT-d page-selective, 2^AM pages),
 * by range, by domain (domain-selective) or all (global).
 *
 * Implementation: an open-addressed hash table in typed arrays (2x the capacity in slots, linear
 * probing, backward-shift deletion), so a hit is a few array reads with no Map, no BigInt and no
 * allocation (PERFORMANCE.md: Map lookups cost 5-60 ns, typed-array lookups ~3 ns). Flush-all is a
 * generation bump: a slot is valid only when its generation equals the current one.
 *
 * In front of the hash table sits a small **direct-mapped front cache** of 4 KiB entries
 * ({@link IOTLB_FRONT_ENTRIES} slots indexed by the low bits of the page number, tagged with page
 * number, domain and generation), so the common hit is one slot read and three compares
 * ({@link Iotlb.probeFront}). It is not a second level of the model: it only ever holds copies of
 * live 4 KiB hash-table entries (filled on insert and on a hash-table hit; the fused miss,
 * {@link Iotlb.insertPageAt}, fills only while page-selective invalidations are in use), every
 * removal of such an entry clears its copy, and a flush-all or overflow flush bumps the generation
 * that tags it.
 * Capacity, overflow flushes, invalidation and statistics are therefore exactly the hash table's;
 * a front-cache hit counts as an IOTLB hit.
 *
 * @module
 */

const TWO_32 = 0x1_0000_0000;
/** Bytes covered by an entry of level L (index L): 4 KiB, 2 MiB, 1 GiB. */
const SPAN = [0, 2 ** 12, 2 ** 21, 2 ** 30];
/** Above this many pages per level, a range invalidation scans the table instead of probing. */
const PROBE_LIMIT = 64;
/** Level tags in the high tag word (bits 24..). */
const L1 = 1 << 24, L2 = 2 << 24, L3 = 3 << 24;
/** Slots of the direct-mapped front cache of 4 KiB entries (a power of two). */
export const IOTLB_FRONT_ENTRIES = 256;
const FRONT_MASK = IOTLB_FRONT_ENTRIES - 1;

/** Counters of an {@link Iotlb}; monotonically increasing until {@link Iotlb.resetStats}. */
export interface IotlbStats {
  /** Lookups that found an entry. */
  hits: number;
  /** Lookups that found none. */
  misses: number;
  /** Entries inserted. */
  inserts: number;
  /** Whole-IOTLB flushes caused by an insert into a full IOTLB (QEMU's overflow rule). */
  overflowFlushes: number;
  /** Page-selective invalidation requests. */
  pageInvalidations: number;
  /** Range invalidation requests. */
  rangeInvalidations: number;
  /** Domain-selective invalidation requests. */
  domainInvalidations: number;
  /** Global invalidation requests. */
  globalInvalidations: number;
  /** Entries removed by invalidations and overflow flushes. */
  entriesInvalidated: number;
}

/**
 * The IOTLB. Domains are 16-bit IDs (VT-d DID); levels 1..3 are 4 KiB / 2 MiB / 1 GiB entries.
 * {@link Iotlb.lookup} is the translate hot path; after a hit, {@link Iotlb.hitGpa},
 * {@link Iotlb.hitSize} and {@link Iotlb.hitPerm} describe the entry.
 */
export class Iotlb {
  /** Maximum number of live entries before an insert flushes everything. */
  readonly capacity: number;
  /** Counters. */
  readonly stats: IotlbStats = {
    hits: 0,
    misses: 0,
    inserts: 0,
    overflowFlushes: 0,
    pageInvalidations: 0,
    rangeInvalidations: 0,
    domainInvalidations: 0,
    globalInvalidations: 0,
    entriesInvalidated: 0,
  };
  /** After a hit: GPA of the first byte of the cached page. */
  hitGpa = 0;
  /** After a hit: cached page size in bytes. */
  hitSize = 0;
  /** After a hit: permission bits of the cached entry (1 read, 2 write). */
  hitPerm = 0;

  readonly #mask: number;
  readonly #shift: number;
  // Hash-table slot i is the four words at i * 4 of #s (one cache line holds four slots, so a
  // probe reads one line, not one per field): generation (valid when equal to #cur), tag low
  // word (page number bits 0..31), tag high word (page number bits 32.. | level << 24), and
  // domain | permission << 16. The page's GPA is #gpa[i]. An entry's home slot is its hash.
  readonly #s: Uint32Array;
  #cur = 1;
  readonly #gpa: Float64Array;
  #count = 0;
  // The one domain every entry inserted since the last full flush belongs to, or -1 (none yet)
  // or -2 (several): a domain-selective flush of that domain is then a generation bump.
  #soleDomain = -1;
  readonly #perLevel = new Int32Array(4);
  // Front cache: copies of live 4 KiB entries whose page number is below 2^32, slot = pfn & mask.
  // Valid when its generation word equals #fCur (bumped with every flush-all; 0 = empty).
  // Slot f is the four words at f * 4 of #f: page number, generation, domain | permission << 16,
  // and the hash-table slot the copy came from (a hint for the page invalidation, checked
  // against that slot's tag before use: backward-shift deletion may have moved the entry since).
  readonly #f = new Uint32Array(IOTLB_FRONT_ENTRIES * 4);
  readonly #fGpa = new Float64Array(IOTLB_FRONT_ENTRIES);
  #fCur = 1;
  // False from a domain-selective invalidation to the next page-selective or range one that takes
  // the general path (invalidatePage, invalidateRange, #invalidatePagesSlow; invalidatePages'
  // lone-entry fast path needs a front copy already, so it leaves the flag as it is), else true.
  // Only while it is true does the fused miss (insertPageAt) copy its new entry into the front
  // cache. The copy made on a miss serves a later hit, or dma-iommu's strict unmap, which
  // finds the entry through the copy's slot hint without a probe. Under lazy invalidation the
  // IOTLB sees only the flush queue's domain flushes: no unmap uses the hint, the device
  // translates each new mapping once, and with ~290 IOVAs in flight each copy is two more
  // cold cache lines per miss (the entry's first hit, lookupPageBehindFront or missSlot,
  // still copies it). Nothing observable depends on the front cache (it holds only copies).
  #pageInvals = true;

  /**
   * Creates an empty IOTLB.
   * @param capacity maximum live entries, 1..2^20 (default 1024 as QEMU's VT-d).
   * @throws RangeError for a capacity out of range.
   */
  constructor(capacity = 1024) {
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > 1 << 20) {
      throw new RangeError(`IOTLB capacity ${capacity} must be an integer in 1..2^20`);
    }
    this.capacity = capacity;
    let bits = 1;
    while (1 << bits < capacity * 2) bits++;
    const slots = 1 << bits;
    this.#mask = slots - 1;
    this.#shift = bits > 5 ? 37 - bits : 31; // block index bits: bits - 5 (at least 1)
    this.#s = new Uint32Array(slots * 4);
    this.#gpa = new Float64Array(slots);
  }

  /** Live entries. */
  get size(): number {
    return this.#count;
  }

  // An entry's home slot. Tags of 16 consecutive pages (of one level and domain) share a block
  // of 32 slots, every other slot, the block picked by a multiplicative hash of the rest of the
  // tag: a run of consecutive IOVAs (what an IOVA allocator hands out) occupies few cache lines,
  // which matters when the IOTLB holds hundreds of them (lazy invalidation), and the free slot
  // beside each keeps probe runs and backward-shift deletions short.
  #hash(lo: number, hi: number, domain: number): number {
    return (((Math.imul((lo >>> 4) ^ Math.imul(hi ^ (domain << 8), 0x85eb_ca6b), 0x9e37_79b1) >>>
      this.#shift) << 5) | ((lo & 15) << 1)) & this.#mask;
  }

  /**
   * Looks up the entry caching `iova` in `domain`, trying 4 KiB, then 2 MiB, then 1 GiB entries
   * (QEMU `vtd_lookup_iotlb` tries each level). Allocation-free.
   * @returns `true` on a hit (then read `hitGpa`/`hitSize`/`hitPerm`), `false` on a miss.
   */
  lookup(domain: number, iova: number): boolean {
    // Split the IOVA into 32-bit halves once; tags are built with integer shifts only. The
    // 4 KiB probe is inline (the common case); large-page probes are in a separate method.
    const lo = iova >>> 0;
    const hi = (iova - lo) / TWO_32;
    if (this.#perLevel[1] !== 0) {
      const tl = ((lo >>> 12) | (hi << 20)) >>> 0;
      const th = ((hi >>> 12) | L1) >>> 0;
      const sl = this.#s, cur = this.#cur, mask = this.#mask;
      let i = this.#hash(tl, th, domain);
      while (sl[i << 2] === cur) {
        const o = i << 2;
        if (sl[o + 1] === tl && sl[o + 2] === th && (sl[o + 3] & 0xffff) === domain) {
          this.hitGpa = this.#gpa[i];
          this.hitSize = 4096;
          this.hitPerm = sl[o + 3] >>> 16;
          this.stats.hits++;
          return true;
        }
        i = (i + 1) & mask;
      }
    }
    return this.#lookupLarge(domain, lo, hi);
  }

  /**
   * {@link Iotlb.lookup} by 4 KiB page number (`iova / 4096`). The translate hot path uses this
   * form: a page number below 2^30 (IOVAs below 4 TiB) is a small integer, so passing it between
   * functions never boxes a heap number, while an IOVA at or above 2^31 would.
   * @returns `true` on a hit (then read `hitGpa`/`hitSize`/`hitPerm`), `false` on a miss.
   */
  lookupPage(domain: number, pfn: number): boolean {
    if (this.probeFront(domain, pfn)) {
      this.stats.hits++;
      return true;
    }
    return this.lookupPageBehindFront(domain, pfn);
  }

  /**
   * {@link Iotlb.lookupPage} for a caller whose {@link Iotlb.probeFront} of the same page just
   * missed: the same answer and counts (the front cache only holds copies of hash-table
   * entries), without probing the front cache a second time.
   * @returns `true` on a hit (then read `hitGpa`/`hitSize`/`hitPerm`), `false` on a miss.
   */
  lookupPageBehindFront(domain: number, pfn: number): boolean {
    const hi = Math.floor(pfn / TWO_32);
    const lo = pfn - hi * TWO_32;
    if (this.#perLevel[1] !== 0) {
      const tl = lo >>> 0;
      const th = (hi | L1) >>> 0;
      const sl = this.#s, cur = this.#cur, mask = this.#mask;
      const home = this.#hash(tl, th, domain);
      let i = home;
      while (sl[i << 2] === cur) {
        const o = i << 2;
        if (sl[o + 1] === tl && sl[o + 2] === th && (sl[o + 3] & 0xffff) === domain) {
          this.hitGpa = this.#gpa[i];
          this.hitSize = 4096;
          this.hitPerm = sl[o + 3] >>> 16;
          this.stats.hits++;
          if (hi === 0) this.#fill(domain, tl, this.hitGpa, this.hitPerm, i);
          return true;
        }
        i = (i + 1) & mask;
      }
    }
    // IOVA halves for the large-page probes: lo32 = (pfn << 12) mod 2^32, hi32 = pfn >> 20.
    return this.#lookupLarge(domain, (lo << 12) >>> 0, (lo >>> 20) | (hi << 12));
  }

  /**
   * The first half of a fused 4 KiB miss ({@link Iommu.translatePage}'s common IOTLB miss),
   * for a caller whose {@link Iotlb.probeFront} of the same page just missed. It applies when
   * `domain` is a 16-bit ID, `pfn` is below 2^32, the IOTLB holds no 2 MiB or 1 GiB entry and is
   * not full (an insert would flush nothing). Then:
   * - on a hit it does exactly what {@link Iotlb.lookupPageBehindFront} does (counts the hit,
   *   fills `hitGpa`/`hitSize`/`hitPerm` and the front cache) and returns -2;
   * - on a miss it counts nothing and returns the empty slot the probe ended on, where
   *   {@link Iotlb.insertPageAt} puts the entry (the slot an `insertPage` would choose).
   *
   * Otherwise it changes nothing and returns -1: take `lookupPageBehindFront` / `insertPage`.
   */
  missSlot(domain: number, pfn: number): number {
    if (
      (domain & 0xffff) !== domain || !(pfn >= 0 && pfn < TWO_32) || this.#perLevel[2] !== 0 ||
      this.#perLevel[3] !== 0 || this.#count >= this.capacity
    ) return -1;
    const tl = pfn >>> 0;
    const sl = this.#s, cur = this.#cur, mask = this.#mask;
    let i = this.#hash(tl, L1, domain);
    while (sl[i << 2] === cur) {
      const o = i << 2;
      if (sl[o + 1] === tl && sl[o + 2] === L1 && (sl[o + 3] & 0xffff) === domain) {
        return this.#hitBehindFront(domain, tl, i);
      }
      i = (i + 1) & mask;
    }
    return i;
  }

  // missSlot's hit (rare: the front cache holds most live 4 KiB entries), out of line so the
  // miss path stays small enough to inline.
  #hitBehindFront(domain: number, pfn: number, i: number): number {
    this.hitGpa = this.#gpa[i];
    this.hitSize = 4096;
    this.hitPerm = this.#s[(i << 2) + 3] >>> 16;
    this.stats.hits++;
    this.#fill(domain, pfn, this.hitGpa, this.hitPerm, i);
    return -2;
  }

  /**
   * The second half of a fused 4 KiB miss: counts the miss the {@link Iotlb.missSlot} probe found
   * and caches the walk's result in `slot` (the value `missSlot(domain, pfn)` just returned, with
   * no IOTLB change since), exactly as `insertPage(domain, pfn, pageGpa, perm)` after that miss,
   * except that from a domain-selective invalidation to the next page-selective or range one (lazy
   * dma-iommu) the entry is not copied into the front cache (its first hit copies it): a
   * difference no lookup, count or invalidation can observe.
   */
  insertPageAt(slot: number, domain: number, pfn: number, pageGpa: number, perm: number): void {
    this.stats.misses++;
    this.#count++;
    this.#perLevel[1]++;
    if (this.#soleDomain !== domain) this.#soleDomain = this.#soleDomain === -1 ? domain : -2;
    const o = slot << 2, sl = this.#s;
    sl[o] = this.#cur;
    sl[o + 1] = pfn;
    sl[o + 2] = L1;
    sl[o + 3] = domain | ((perm & 0xff) << 16);
    this.#gpa[slot] = pageGpa;
    this.stats.inserts++;
    if (this.#pageInvals) this.#fill(domain, pfn, pageGpa, perm & 0xff, slot);
  }

  /**
   * Probes only the front cache for the 4 KiB page `pfn` of `domain`; counts nothing (the caller
   * counts a hit it uses). Small enough for V8 to inline into the translate hot path.
   * @returns `true` on a hit (then `hitGpa`/`hitPerm` describe the page and `hitSize` is 4096).
   */
  probeFront(domain: number, pfn: number): boolean {
    const f = this.#f;
    const o = (pfn & FRONT_MASK) << 2;
    if (f[o] === pfn && f[o + 1] === this.#fCur && (f[o + 2] & 0xffff) === domain) {
      this.hitGpa = this.#fGpa[o >> 2];
      this.hitSize = 4096;
      this.hitPerm = f[o + 2] >>> 16;
      return true;
    }
    return false;
  }

  // Copies a live 4 KiB entry (page number below 2^32, 16-bit domain, 8-bit permission) into its
  // front-cache slot.
  #fill(domain: number, pfn: number, gpa: number, perm: number, slot: number): void {
    const f = this.#f;
    const o = (pfn & FRONT_MASK) << 2;
    f[o] = pfn;
    f[o + 1] = this.#fCur;
    f[o + 2] = domain | (perm << 16);
    f[o + 3] = slot;
    this.#fGpa[o >> 2] = gpa;
  }

  // Forgets the front-cache copy of the 4 KiB entry (domain, pfn), if it holds one.
  #unfill(domain: number, pfn: number): void {
    const f = this.#f;
    const o = (pfn & FRONT_MASK) << 2;
    if (f[o] === pfn && (f[o + 2] & 0xffff) === domain) f[o + 1] = 0;
  }

  #lookupLarge(domain: number, lo: number, hi: number): boolean {
    const per = this.#perLevel;
    if (
      (per[2] !== 0 && this.#find(domain, (lo >>> 21) | (hi << 11), (hi >>> 21) | L2, 0x20_0000) >=
          0) ||
      (per[3] !== 0 && this.#find(domain, (lo >>> 30) | (hi << 2), (hi >>> 30) | L3, 0x4000_0000) >=
          0)
    ) {
      this.stats.hits++;
      return true;
    }
    this.stats.misses++;
    return false;
  }

  /** Like {@link Iotlb.lookup} but counts nothing: does the IOTLB hold a translation of `iova`? */
  holds(domain: number, iova: number): boolean {
    for (let level = 1; level <= 3; level++) {
      if (this.#perLevel[level] !== 0 && this.#findLevel(domain, iova, level) >= 0) return true;
    }
    return false;
  }

  #findLevel(domain: number, iova: number, level: number): number {
    const span = SPAN[level];
    const pn = Math.floor(iova / span);
    return this.#find(domain, pn >>> 0, (Math.floor(pn / TWO_32) | (level << 24)) >>> 0, span);
  }

  // Probes for the entry tagged (domain, tagLo, tagHi); on a hit fills hitGpa/hitSize/hitPerm.
  #find(domain: number, tagLo: number, tagHi: number, span: number): number {
    const lo = tagLo >>> 0, hi = tagHi >>> 0;
    const mask = this.#mask, sl = this.#s, cur = this.#cur;
    let i = this.#hash(lo, hi, domain);
    while (sl[i << 2] === cur) {
      const o = i << 2;
      if (sl[o + 1] === lo && sl[o + 2] === hi && (sl[o + 3] & 0xffff) === domain) {
        this.hitGpa = this.#gpa[i];
        this.hitSize = span;
        this.hitPerm = sl[o + 3] >>> 16;
        return i;
      }
      i = (i + 1) & mask;
    }
    return -1;
  }

  /**
   * Caches a walk result: the page of `level` (1..3) containing `iova` maps to `pageGpa` with
   * `perm`. When the IOTLB is full, everything is flushed first (QEMU's rule).
   * @throws RangeError when `domain` is not a 16-bit domain ID (VT-d DID, SMMU ASID/VMID are
   * 16-bit); a wider ID would alias another domain's entries.
   */
  insert(domain: number, iova: number, level: number, pageGpa: number, perm: number): void {
    if ((domain & 0xffff) !== domain) {
      throw new RangeError(`IOTLB domain ID ${domain} is not a 16-bit integer`);
    }
    const pn = Math.floor(iova / SPAN[level]);
    this.#insertTag(
      domain,
      pn >>> 0,
      (Math.floor(pn / TWO_32) | (level << 24)) >>> 0,
      level,
      pageGpa,
      perm,
    );
  }

  /**
   * {@link Iotlb.insert} of a 4 KiB entry (level 1) by page number (`iova / 4096`, a small
   * integer below 2^30 for IOVAs below 4 TiB: passing it boxes nothing).
   * @throws RangeError as `insert`.
   */
  insertPage(domain: number, pfn: number, pageGpa: number, perm: number): void {
    if ((domain & 0xffff) !== domain) {
      throw new RangeError(`IOTLB domain ID ${domain} is not a 16-bit integer`);
    }
    const hi = pfn < TWO_32 ? L1 : (Math.floor(pfn / TWO_32) | L1) >>> 0;
    this.#insertTag(domain, pfn >>> 0, hi, 1, pageGpa, perm);
  }

  #insertTag(domain: number, lo: number, hi: number, level: number, pageGpa: number, perm: number) {
    // One probe finds the entry or the empty slot it goes to (was: a lookup, then this probe);
    // none when the lookup that missed just before (the walk's) ended on that empty slot.
    const sl = this.#s, mask = this.#mask;
    let cur = this.#cur;
    const home = this.#hash(lo, hi, domain);
    let i = home;
    while (sl[i << 2] === cur) {
      const o = i << 2;
      if (sl[o + 1] === lo && sl[o + 2] === hi && (sl[o + 3] & 0xffff) === domain) break;
      i = (i + 1) & mask;
    }
    if (sl[i << 2] !== cur) {
      if (this.#count >= this.capacity) {
        // full: flush everything first (QEMU's rule); the table is then empty from `home` on
        this.stats.overflowFlushes++;
        this.stats.entriesInvalidated += this.#count;
        this.#bump();
        cur = this.#cur;
        i = home;
      }
      this.#count++;
      this.#perLevel[level]++;
      if (this.#soleDomain !== domain) this.#soleDomain = this.#soleDomain === -1 ? domain : -2;
    }
    const o = i << 2;
    sl[o] = cur;
    sl[o + 1] = lo;
    sl[o + 2] = hi;
    sl[o + 3] = domain | ((perm & 0xff) << 16); // the permission is kept as a byte
    this.#gpa[i] = pageGpa;
    this.stats.inserts++;
    if (level === 1 && hi === L1) this.#fill(domain, lo, pageGpa, perm & 0xff, i);
  }

  #bump(): void {
    if (this.#cur === 0xffff_ffff) {
      for (let o = 0; o < this.#s.length; o += 4) this.#s[o] = 0;
      this.#cur = 1;
    } else this.#cur++;
    if (this.#fCur === 0x7fff_ffff) {
      for (let o = 1; o < this.#f.length; o += 4) this.#f[o] = 0;
      this.#fCur = 1;
    } else this.#fCur++;
    this.#count = 0;
    this.#soleDomain = -1;
    this.#perLevel.fill(0);
  }

  #removeAt(i: number): void {
    const sl = this.#s, cur = this.#cur, mask = this.#mask;
    const oi = i << 2;
    if (sl[oi + 2] === L1) this.#unfill(sl[oi + 3] & 0xffff, sl[oi + 1]);
    this.#perLevel[sl[oi + 2] >>> 24]--;
    this.#count--;
    this.stats.entriesInvalidated++;
    // Backward-shift deletion keeps every probe sequence unbroken without tombstones.
    let hole = i;
    let j = i;
    for (;;) {
      j = (j + 1) & mask;
      const oj = j << 2;
      if (sl[oj] !== cur) break;
      const lo = sl[oj + 1], hi = sl[oj + 2], dp = sl[oj + 3];
      const h = this.#hash(lo, hi, dp & 0xffff); // the entry's home slot
      // Can the entry at j move to the hole? Only if its home is not cyclically in (hole, j].
      const inRange = hole <= j ? (h > hole && h <= j) : (h > hole || h <= j);
      if (inRange) continue;
      const oh = hole << 2;
      sl[oh] = cur;
      sl[oh + 1] = lo;
      sl[oh + 2] = hi;
      sl[oh + 3] = dp;
      this.#gpa[hole] = this.#gpa[j];
      if (hi === L1) {
        const f = this.#f;
        const of = (lo & FRONT_MASK) << 2;
        if (f[of] === lo && (f[of + 2] & 0xffff) === (dp & 0xffff)) f[of + 3] = hole;
      }
      hole = j;
    }
    sl[hole << 2] = 0; // the current generation is never 0, so this slot is now empty
  }

  /**
   * Page-selective invalidation (VT-d PSI): removes `domain`'s entries overlapping the
   * `2^am` pages of 4 KiB starting at `iova` (rounded down to that size, like the IVA/AM pair).
   * @param am address mask, 0..63 (0 = one page).
   */
  invalidatePage(domain: number, iova: number, am = 0): void {
    this.stats.pageInvalidations++;
    this.#pageInvals = true;
    const size = 4096 * 2 ** am;
    const start = Math.floor(iova / size) * size;
    this.#invalidate(domain, start, start + size);
  }

  /**
   * {@link Iotlb.invalidateRange} of `pages` 4 KiB pages from page number `pfn` (for one page,
   * small integers only: the call boxes nothing).
   */
  invalidatePages(domain: number, pfn: number, pages: number): void {
    // dma-iommu's strict unmap of one page while the IOTLB holds only 4 KiB entries, whose entry
    // sits in the slot its front-cache copy names, with the slot after it empty (the usual case:
    // consecutive pages take every other slot, see #hash): #invalidatePagesSlow's removal then
    // shifts nothing back, and is the hit registers, the front copy, the counts and the emptied
    // slot. Small enough to inline into dma-iommu's unmap; anything else takes the slow path.
    // (literals for TWO_32, FRONT_MASK and L1: module constants cost bytecode the unmap's
    // inlining budget pays for)
    const per = this.#perLevel;
    if (pages === 1 && pfn >= 0 && pfn < 4294967296 && per[2] === 0 && per[3] === 0) {
      const f = this.#f, fo = (pfn & 255) << 2;
      const j = f[fo + 3];
      const sl = this.#s, o = j << 2, cur = this.#cur;
      if (
        sl[o] === cur && sl[o + 1] === pfn && sl[o + 2] === 16777216 &&
        (sl[o + 3] & 0xffff) === domain && sl[((j + 1) & this.#mask) << 2] !== cur
      ) {
        this.stats.rangeInvalidations++;
        this.hitGpa = this.#gpa[j]; // as #find leaves them
        this.hitSize = 4096;
        this.hitPerm = sl[o + 3] >>> 16;
        if (f[fo] === pfn && (f[fo + 2] & 0xffff) === domain) f[fo + 1] = 0; // #unfill
        per[1]--;
        this.#count--;
        this.stats.entriesInvalidated++;
        sl[o] = 0; // the current generation is never 0, so this slot is now empty
        return;
      }
    }
    this.#invalidatePagesSlow(domain, pfn, pages);
  }

  // invalidatePages in general (every case; the fast path above is its lone-entry case).
  #invalidatePagesSlow(domain: number, pfn: number, pages: number): void {
    this.#pageInvals = true;
    if (
      pages === 1 && this.#count !== 0 && this.#perLevel[2] === 0 && this.#perLevel[3] === 0 &&
      pfn >= 0 && pfn < TWO_32
    ) {
      // dma-iommu's strict unmap of one page while the IOTLB holds only 4 KiB entries: the
      // level-1 step of the general loop below, alone (the other levels hold nothing)
      this.stats.rangeInvalidations++;
      const j = this.#f[((pfn & FRONT_MASK) << 2) + 3];
      const sl = this.#s, o = j << 2;
      if (
        sl[o] === this.#cur && sl[o + 1] === pfn && sl[o + 2] === L1 &&
        (sl[o + 3] & 0xffff) === domain
      ) this.#removeHit(j);
      else {
        const i = this.#find(domain, pfn, L1, 4096);
        if (i >= 0) this.#removeAt(i);
      }
      return;
    }
    this.#invalidatePagesGeneral(domain, pfn, pages);
  }

  // Removes the entry at slot `j`, leaving hitGpa/hitSize/hitPerm as #find leaves them.
  #removeHit(j: number): void {
    this.hitGpa = this.#gpa[j];
    this.hitSize = 4096;
    this.hitPerm = this.#s[(j << 2) + 3] >>> 16;
    this.#removeAt(j);
  }

  #invalidatePagesGeneral(domain: number, pfn: number, pages: number): void {
    if (pages !== 1) {
      this.invalidateRange(domain, pfn * 4096, pages * 4096);
      return;
    }
    this.stats.rangeInvalidations++;
    if (this.#count === 0) return;
    for (let level = 1; level <= 3; level++) {
      if (this.#perLevel[level] === 0) continue;
      if (level === 1 && pfn < TWO_32) {
        // the front cache remembers the slot of a 4 KiB entry: use it when it still holds it
        const j = this.#f[((pfn & FRONT_MASK) << 2) + 3];
        const sl = this.#s, o = j << 2;
        if (
          sl[o] === this.#cur && sl[o + 1] === pfn && sl[o + 2] === L1 &&
          (sl[o + 3] & 0xffff) === domain
        ) {
          this.hitGpa = this.#gpa[j]; // as #find leaves them
          this.hitSize = 4096;
          this.hitPerm = sl[o + 3] >>> 16;
          this.#removeAt(j);
          continue;
        }
      }
      const pn = level === 1 ? pfn : Math.floor(pfn / (level === 2 ? 512 : 262144));
      const i = this.#find(
        domain,
        pn >>> 0,
        (Math.floor(pn / TWO_32) | (level << 24)) >>> 0,
        SPAN[level],
      );
      if (i >= 0) this.#removeAt(i);
    }
  }

  /** Removes `domain`'s entries overlapping `[iova, iova + size)`. */
  invalidateRange(domain: number, iova: number, size: number): void {
    this.stats.rangeInvalidations++;
    this.#pageInvals = true;
    this.#invalidate(domain, iova, iova + size);
  }

  /** Domain-selective invalidation: removes every entry of `domain`. */
  invalidateDomain(domain: number): void {
    this.stats.domainInvalidations++;
    this.#pageInvals = false;
    if (this.#count === 0) return;
    if (this.#soleDomain === domain) {
      // every entry is this domain's (dma-iommu's lazy flush, one device): O(1), as a full flush
      this.stats.entriesInvalidated += this.#count;
      this.#bump();
    } else this.#removeWhere(domain, -1, 0);
  }

  /** Global invalidation: removes everything (a generation bump, O(1)). */
  invalidateAll(): void {
    this.stats.globalInvalidations++;
    this.stats.entriesInvalidated += this.#count;
    this.#bump();
  }

  /** Zeroes the counters. */
  resetStats(): void {
    for (const k of Object.keys(this.stats) as (keyof IotlbStats)[]) this.stats[k] = 0;
  }

  #invalidate(domain: number, start: number, end: number): void {
    if (end <= start || this.#count === 0) return;
    let probes = 0;
    for (let level = 1; level <= 3; level++) {
      if (this.#perLevel[level] === 0) continue;
      probes += Math.ceil(end / SPAN[level]) - Math.floor(start / SPAN[level]);
    }
    if (probes > PROBE_LIMIT) {
      this.#removeWhere(domain, start, end);
      return;
    }
    for (let level = 1; level <= 3; level++) {
      if (this.#perLevel[level] === 0) continue;
      const span = SPAN[level];
      for (let p = Math.floor(start / span) * span; p < end; p += span) {
        const i = this.#findLevel(domain, p, level);
        if (i >= 0) this.#removeAt(i);
      }
    }
  }

  // Removes `domain`'s entries overlapping [start, end) (all of them when `start` is -1) in one
  // in-place pass, allocation-free. The pass starts at an empty slot, so no probe cluster wraps
  // into it; after a removal, backward shift may pull a later entry into the current slot, so the
  // slot is examined again before moving on.
  #removeWhere(domain: number, start: number, end: number): void {
    const mask = this.#mask, sl = this.#s;
    let e = 0;
    while (sl[e << 2] === this.#cur) e++; // an empty slot exists: the load factor is at most 1/2
    let i = (e + 1) & mask;
    for (let steps = 0; steps < mask; steps++) {
      while (sl[i << 2] === this.#cur && (sl[(i << 2) + 3] & 0xffff) === domain) {
        if (start >= 0) {
          const o = i << 2;
          const level = sl[o + 2] >>> 24;
          const ps = ((sl[o + 2] & 0xff_ffff) * TWO_32 + sl[o + 1]) * SPAN[level];
          if (ps + SPAN[level] <= start || ps >= end) break;
        }
        this.#removeAt(i);
      }
      i = (i + 1) & mask;
    }
  }
}
