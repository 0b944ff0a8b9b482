/**
 * A multi-level I/O page table in the Intel VT-d second-level format (DMA_MODES.md §3.3).
 *
 * Format facts: 512 entries of 8 bytes per table, 9 IOVA bits per level, index at level `L` is
 * `(iova >> (12 + 9 * (L - 1))) & 0x1ff`; an entry is present when R (bit 0) or W (bit 1) is set;
 * PS (bit 7) marks a leaf above level 1 (2 MiB at level 2, 1 GiB at level 3); address bits
 * `[HAW-1:12]` hold the next table or the page frame. 3 levels give a 39-bit IOVA space
 * (SAGAW 0x2), 4 levels 48 bits (SAGAW 0x4). As in VT-d, the R/W bits of non-leaf entries are
 * ANDed with the leaf's.
 *
 * Storage decision: the tables live in one private `Uint32Array` pool (two 32-bit words per
 * entry), not in guest memory. The entry bits are the real VT-d bits, so dumps and known-answer
 * tests read like the hardware's; keeping the tables out of guest RAM means a device-side fuzz
 * cannot corrupt them by a stray DMA write (a real IOMMU's tables are guest memory only when the
 * guest programs a vIOMMU, which is the virtio-iommu / VT-d emulation stream's concern), the walk
 * costs no region lookup, and memory layouts of tests and benches need no room for tables.
 * "Pointers" in non-leaf entries are `table index * 4096` in that pool.
 *
 * @module
 */

import { hex64 } from "../memory/u64.ts";
import { DmaMapError } from "./errors.ts";

/** Second-level PTE bit 0: reads allowed (VT-d `R`). */
export const IOPTE_READ = 1;
/** Second-level PTE bit 1: writes allowed (VT-d `W`). */
export const IOPTE_WRITE = 2;
/** Second-level PTE bit 7: page size, a leaf above level 1 (VT-d `PS`). */
export const IOPTE_PS = 0x80;

/** 4 KiB page (a level-1 leaf). */
export const IO_PAGE_4K = 0x1000;
/** 2 MiB page (a level-2 leaf with PS). */
export const IO_PAGE_2M = 0x20_0000;
/** 1 GiB page (a level-3 leaf with PS). */
export const IO_PAGE_1G = 0x4000_0000;
/** All page sizes this table supports, as a bit mask of sizes (Linux `pgsize_bitmap` style). */
export const IO_PAGE_SIZES_ALL = IO_PAGE_4K | IO_PAGE_2M | IO_PAGE_1G;

const ENTRIES = 512;
const WORDS_PER_TABLE = ENTRIES * 2;
const TWO_32 = 0x1_0000_0000;
/** Bytes covered by one entry at level L (index L). */
const LEVEL_SPAN = [0, 2 ** 12, 2 ** 21, 2 ** 30, 2 ** 39, 2 ** 48];
/** The same spans in 4 KiB pages. */
const PFN_SPAN = [0, 1, 2 ** 9, 2 ** 18, 2 ** 27, 2 ** 36];

/** Reusable result of {@link IoPageTable.walk}. */
export class IoPageWalk {
  /** GPA of the first byte of the leaf page. */
  pageGpa = 0;
  /** Leaf page size in bytes (4 KiB, 2 MiB or 1 GiB). */
  pageSize = 0;
  /** Level of the leaf (1 = 4 KiB, 2 = 2 MiB, 3 = 1 GiB). */
  level = 0;
  /** Effective permission bits ({@link IOPTE_READ} | {@link IOPTE_WRITE}), ANDed along the walk. */
  perm = 0;
  /** Number of table entries read by the last walk (for the "walks" cost model). */
  entriesRead = 0;
}

/**
 * A VT-d-format I/O page table (one domain's second-level table).
 *
 * Map/unmap are cold paths (per mapping); {@link IoPageTable.walk} is what an IOTLB miss costs.
 * IOVAs are numbers below `2 ** addressWidth` (at most 2^48), GPAs below 2^52.
 */
export class IoPageTable {
  /** Number of levels (3 = 39-bit, 4 = 48-bit IOVA space). */
  readonly levels: 3 | 4;
  /** IOVA width in bits, `12 + 9 * levels`. */
  readonly addressWidth: number;
  /** Page sizes the hardware supports (bit mask of {@link IO_PAGE_4K} etc.). */
  readonly pageSizes: number;
  #pool: Uint32Array;
  #tables = 1; // table 0 is the root
  #free: number[] = [];
  /** Present entries per table, so emptiness is O(1). */
  #used = new Uint16Array(8);
  #mappedBytes = 0;
  // Paging-structure cache (as the VT-d/x86 page-directory cache): the level-1 table of the last
  // 2 MiB region a 4 KiB map, unmap or walk reached, keyed by the page number / 512, with the AND
  // of the permissions of the entries above it. Map, unmap and walk of a page in that region
  // then read one entry instead of `levels`, with the same result (and the same `entriesRead`).
  // It only ever names a table the root reaches through present non-leaf entries: it is dropped
  // (#forget) whenever a table is freed or a large page is split.
  #l1Key = -1;
  #l1Table = 0;
  #l1Perm = 0;

  /**
   * Creates an empty table.
   * @param levels 3 (39-bit) or 4 (48-bit, default).
   * @param pageSizes supported leaf sizes, default all three (VT-d CAP.SLLPS for 2M and 1G).
   */
  constructor(levels: 3 | 4 = 4, pageSizes = IO_PAGE_SIZES_ALL) {
    if (levels !== 3 && levels !== 4) throw new RangeError(`levels must be 3 or 4, got ${levels}`);
    if ((pageSizes & IO_PAGE_4K) === 0) throw new RangeError("4 KiB pages are always supported");
    this.levels = levels;
    this.addressWidth = 12 + 9 * levels;
    this.pageSizes = pageSizes;
    this.#pool = new Uint32Array(WORDS_PER_TABLE * 8);
  }

  /** Tables allocated (root included), for memory accounting. */
  get tableCount(): number {
    return this.#tables - this.#free.length;
  }

  /** Bytes currently mapped by leaves. */
  get mappedBytes(): number {
    return this.#mappedBytes;
  }

  /**
   * Walks the table for `iova` (the IOTLB-miss path). Allocation-free.
   * @returns `true` with `out` filled when a leaf maps `iova`; `false` when an entry on the way
   * is not present (or `iova` is beyond the address width).
   */
  walk(iova: number, out: IoPageWalk): boolean {
    out.entriesRead = 0;
    if (!(iova >= 0 && iova < LEVEL_SPAN[this.levels + 1])) return false;
    // 9-bit indices from the IOVA's 32-bit halves, integer ops only.
    const lo = iova >>> 0;
    return this.#walkParts(lo >>> 12, (iova - lo) / TWO_32, out);
  }

  /**
   * {@link IoPageTable.walk} of the IOVA `pfn * 4096`, from its 4 KiB page number (a small
   * integer: passing it never boxes a heap number, as an IOVA at or above 2^31 would be).
   */
  walkPage(pfn: number, out: IoPageWalk): boolean {
    out.entriesRead = 0;
    if (!(pfn >= 0 && pfn * IO_PAGE_4K < LEVEL_SPAN[this.levels + 1])) return false;
    return this.#walkParts(pfn & 0xf_ffff, pfn < 0x10_0000 ? 0 : Math.floor(pfn / 0x10_0000), out);
  }

  /**
   * {@link IoPageTable.walkPage} fused for the IOTLB-miss hot path: page `pfn` (an integer)
   * lies in the cached level-1 table (the paging-structure cache, see the class notes) and its
   * entry is present. Then `out` is filled exactly as `walkPage` fills it and `true` is returned;
   * otherwise nothing changes (`false`: call `walkPage`, which also answers "not present").
   */
  walkPageCached(pfn: number, out: IoPageWalk): boolean {
    // (literals instead of module constants: small enough to inline into the translate miss)
    const key = this.#l1Key;
    if (Math.floor(pfn / 512) !== key || key < 0) return false;
    const pool = this.#pool;
    const w = this.#l1Table * 1024 + (pfn & 511) * 2;
    const e = pool[w];
    const p = e & 3; // IOPTE_READ | IOPTE_WRITE
    if (p === 0) return false;
    out.entriesRead = this.levels;
    out.pageGpa = pool[w + 1] * 4294967296 + ((e & 0xffff_f000) >>> 0);
    out.pageSize = 4096;
    out.level = 1;
    out.perm = this.#l1Perm & p;
    return true;
  }

  // p20: IOVA bits 12..31 (the low 20 bits of the page number), hi: IOVA bits 32 and up; both
  // small integers, so this call boxes nothing.
  #walkParts(p20: number, hi: number, out: IoPageWalk): boolean {
    const pool = this.#pool;
    if (hi * 2048 + (p20 >>> 9) === this.#l1Key) {
      // the level-1 table of this 2 MiB region is cached: every entry above it is present
      const w = this.#l1Table * WORDS_PER_TABLE + (p20 & 511) * 2;
      const e = pool[w];
      out.entriesRead = this.levels;
      const p = e & (IOPTE_READ | IOPTE_WRITE);
      if (p === 0) return false;
      out.pageGpa = pool[w + 1] * TWO_32 + ((e & 0xffff_f000) >>> 0);
      out.pageSize = IO_PAGE_4K;
      out.level = 1;
      out.perm = this.#l1Perm & p;
      return true;
    }
    let table = 0;
    let perm = IOPTE_READ | IOPTE_WRITE;
    for (let level: number = this.levels; level >= 1; level--) {
      const idx = level === 1
        ? p20 & 511
        : level === 2
        ? (p20 >>> 9) & 511
        : level === 3
        ? ((p20 >>> 18) | (hi << 2)) & 511
        : (hi >>> 7) & 511;
      const w = table * WORDS_PER_TABLE + idx * 2;
      const e = pool[w];
      out.entriesRead++;
      const p = e & (IOPTE_READ | IOPTE_WRITE);
      if (p === 0) return false;
      if (level === 1) {
        this.#l1Key = hi * 2048 + (p20 >>> 9);
        this.#l1Table = table;
        this.#l1Perm = perm;
      }
      perm &= p;
      if (level === 1 || (e & IOPTE_PS) !== 0) {
        out.pageGpa = pool[w + 1] * TWO_32 + ((e & 0xffff_f000) >>> 0);
        out.pageSize = LEVEL_SPAN[level];
        out.level = level;
        out.perm = perm;
        return true;
      }
      // next table index = pointer / 4096, as a small integer (keeps typed-array indices Smis)
      table = (e >>> 12) | (pool[w + 1] << 20);
    }
    return false;
  }

  /**
   * `iommu_iova_to_phys`: the GPA `iova` maps to, or -1 when it is unmapped.
   */
  lookup(iova: number): number {
    const w = SCRATCH;
    if (!this.walk(iova, w)) return -1;
    return w.pageGpa + (iova - Math.floor(iova / w.pageSize) * w.pageSize);
  }

  /**
   * Maps `[iova, iova + size)` to `[gpa, gpa + size)` with permission `perm`, choosing for each
   * step the largest supported page that the alignment of both addresses and the remaining size
   * allow (as Linux `iommu_map` does with `pgsize_bitmap`). All-or-nothing.
   * @param perm {@link IOPTE_READ} and/or {@link IOPTE_WRITE} (not 0).
   * @param pageSizes restrict leaf sizes further (default: all the table supports).
   * @throws DmaMapError `misaligned` (not 4 KiB-granular), `mask` (beyond the address width or
   * 2^52), `overlap` (some page is already mapped; nothing is changed).
   * @throws RangeError when `perm` is not a non-empty combination of IOPTE_READ | IOPTE_WRITE.
   */
  map(iova: number, gpa: number, size: number, perm: number, pageSizes = this.pageSizes): void {
    this.#checkRange(iova, size, "map");
    if (!Number.isSafeInteger(gpa) || gpa < 0 || (gpa & 0xfff) !== 0) {
      throw new DmaMapError("misaligned", gpa, size, "io-page-table", "GPA not 4 KiB-aligned");
    }
    if (gpa + size > 2 ** 52) {
      throw new DmaMapError("mask", gpa, size, "io-page-table", "GPA range beyond 2^52");
    }
    if ((perm & (IOPTE_READ | IOPTE_WRITE)) === 0 || (perm & ~3) !== 0) {
      // A caller bug, not a mapping condition: permissions are IOPTE_READ | IOPTE_WRITE.
      throw new RangeError(
        `io-page-table map: bad permission ${perm} (use IOPTE_READ/IOPTE_WRITE)`,
      );
    }
    const sizes = pageSizes & this.pageSizes;
    let done = 0;
    try {
      while (done < size) {
        const va = iova + done, pa = gpa + done, left = size - done;
        let level = 1;
        for (let l = 3; l >= 2; l--) {
          const span = LEVEL_SPAN[l];
          if (
            (sizes & span) !== 0 && (va & (span - 1)) === 0 && (pa & (span - 1)) === 0 &&
            left >= span
          ) {
            level = l;
            break;
          }
        }
        this.#setLeaf(va / IO_PAGE_4K, pa, level, perm);
        done += LEVEL_SPAN[level];
      }
    } catch (e) {
      if (done > 0) this.unmap(iova, done);
      throw e;
    }
  }

  /**
   * {@link IoPageTable.map} of the one 4 KiB page `pfn` (IOVA `pfn * 4096`) to `gpa`, by page
   * number: a small integer, so the call boxes nothing. Same checks and errors as `map`.
   * @throws DmaMapError as `map`; RangeError for a bad permission.
   */
  mapPage(pfn: number, gpa: number, perm: number): void {
    if (
      Number.isSafeInteger(pfn) && pfn >= 0 &&
      (pfn + 1) * IO_PAGE_4K <= LEVEL_SPAN[this.levels + 1] &&
      Number.isSafeInteger(gpa) && gpa >= 0 && (gpa & 0xfff) === 0 && gpa + IO_PAGE_4K <= 2 ** 52 &&
      (perm & (IOPTE_READ | IOPTE_WRITE)) !== 0 && (perm & ~3) === 0 &&
      (this.pageSizes & IO_PAGE_4K) !== 0
    ) {
      this.#setLeaf(pfn, gpa, 1, perm);
      return;
    }
    this.map(pfn * IO_PAGE_4K, gpa, IO_PAGE_4K, perm);
  }

  /**
   * The common case of {@link IoPageTable.mapPage} fused for dma-iommu's one-page map: page
   * `pfn` falls in the cached level-1 table and its entry is free. Then the leaf is set exactly
   * as `mapPage` sets it and `true` is returned; otherwise nothing changes and `false` tells the
   * caller to take `mapPage` (which then checks, walks and throws as always). The caller's own
   * checks must make `gpa` a 4 KiB-aligned safe integer >= 0 and `perm` one of `IOPTE_READ`,
   * `IOPTE_WRITE` or both (dma-iommu passes the page of a buffer it checked and the
   * permission its direction implies).
   */
  mapPageCached(pfn: number, gpa: number, perm: number): boolean {
    // Small enough for dma-iommu's map to inline (literals, no module constants; a page whose
    // 2 MiB region is the cached table's lies inside the IOVA space, so no width test).
    // 4503599627366400 = 2^52 - 4096: the page ends by 2^52.
    const key = this.#l1Key;
    if (Math.floor(pfn / 512) !== key || key < 0 || gpa > 4503599627366400) return false;
    const t = this.#l1Table;
    const w = (t << 10) + ((pfn & 511) << 1); // WORDS_PER_TABLE, ENTRIES - 1
    const pool = this.#pool;
    if ((pool[w] & 3) !== 0) return false;
    this.#used[t]++;
    pool[w] = (gpa | perm) >>> 0; // the address bits (gpa's low 12 are 0) and R/W
    pool[w + 1] = gpa / 4294967296 | 0; // floor: 0 <= gpa < 2^52
    this.#mappedBytes += 4096;
    return true;
  }

  /**
   * The common case of {@link IoPageTable.unmapPage} fused for dma-iommu's one-page unmap: page
   * `pfn` (an integer from the IOVA allocator) is a present leaf of the cached level-1 table,
   * which keeps other entries. Then it is cleared exactly as `unmapPage` clears it and `true` is
   * returned; otherwise nothing changes (`false`: call `unmapPage`).
   */
  unmapPageCached(pfn: number): boolean {
    // (as mapPageCached: literals, and no width test: the cached table's region is inside it)
    const key = this.#l1Key;
    if (Math.floor(pfn / 512) !== key || key < 0) return false;
    const t = this.#l1Table;
    const w = t * 1024 + (pfn & 511) * 2;
    const pool = this.#pool, used = this.#used;
    if ((pool[w] & 3) === 0 || used[t] <= 1) return false;
    pool[w] = 0;
    pool[w + 1] = 0;
    used[t]--;
    this.#mappedBytes -= 4096;
    return true;
  }

  /**
   * Unmaps every leaf byte in `[iova, iova + size)`. A large page only partly inside the range is
   * split into next-level pages first, so exactly the range goes away. Holes are skipped.
   * Tables left empty are freed.
   * @returns bytes that were mapped and are now unmapped.
   * @throws DmaMapError `misaligned` / `mask` for a bad range.
   */
  unmap(iova: number, size: number): number {
    this.#checkRange(iova, size, "unmap");
    if (size === IO_PAGE_4K) {
      // one page (every dma-iommu unmap of a small buffer): an iterative walk, same effect
      const r = this.#unmapPage(iova / IO_PAGE_4K);
      if (r >= 0) {
        this.#mappedBytes -= r;
        return r;
      }
    }
    let va = iova;
    const end = iova + size;
    let removed = 0;
    while (va < end) {
      removed += this.#unmapAt(0, this.levels, va, end);
      // advance to the next 4 KiB-granular position not yet examined
      va = this.#nextVa;
    }
    this.#mappedBytes -= removed;
    return removed;
  }

  #nextVa = 0;
  readonly #walkTable = new Int32Array(6);
  readonly #walkWord = new Int32Array(6);

  /**
   * {@link IoPageTable.unmap} of the one 4 KiB page `pfn` (IOVA `pfn * 4096`), by page number: a
   * small integer, so the call boxes nothing.
   * @returns bytes unmapped (4096 or 0).
   * @throws DmaMapError `misaligned` / `mask` as `unmap`.
   */
  unmapPage(pfn: number): number {
    if (
      Number.isSafeInteger(pfn) && pfn >= 0 && (pfn + 1) * IO_PAGE_4K <= LEVEL_SPAN[this.levels + 1]
    ) {
      const r = this.#unmapPage(pfn);
      if (r >= 0) {
        this.#mappedBytes -= r;
        return r;
      }
    }
    return this.unmap(pfn * IO_PAGE_4K, IO_PAGE_4K);
  }

  // The 4 KiB page `pfn` unmapped as #unmapAt would (the leaf cleared, then every table left
  // empty freed, bottom up), without recursion; -1 (nothing changed) when a large page is on
  // the way (it must be split: the general path).
  #unmapPage(pfn: number): number {
    const pool = this.#pool;
    if (Math.floor(pfn / 512) === this.#l1Key) {
      // cached level-1 table: a present leaf in a table that keeps other entries is just cleared
      // (nothing above changes); anything else takes the walk below, which frees empty tables
      const t = this.#l1Table;
      const w = t * WORDS_PER_TABLE + (pfn & (ENTRIES - 1)) * 2;
      if ((pool[w] & 3) !== 0 && this.#used[t] > 1) {
        pool[w] = 0;
        pool[w + 1] = 0;
        this.#used[t]--;
        return IO_PAGE_4K;
      }
    }
    const tabs = this.#walkTable, words = this.#walkWord;
    let table = 0;
    let level: number = this.levels;
    let removed = 0;
    for (; level >= 1; level--) {
      const w = table * WORDS_PER_TABLE + (Math.floor(pfn / PFN_SPAN[level]) & (ENTRIES - 1)) * 2;
      tabs[level] = table;
      words[level] = w;
      const lo = pool[w];
      if ((lo & 3) === 0) break;
      if (level === 1) {
        pool[w] = 0;
        pool[w + 1] = 0;
        this.#used[table]--;
        removed = IO_PAGE_4K;
        break;
      }
      if ((lo & IOPTE_PS) !== 0) return -1;
      table = (lo >>> 12) | (pool[w + 1] << 20);
    }
    for (let l = level + 1; l <= this.levels; l++) {
      const sub = tabs[l - 1];
      if (this.#used[sub] === 0) {
        const w = words[l];
        pool[w] = 0;
        pool[w + 1] = 0;
        this.#used[tabs[l]]--;
        this.#free.push(sub);
        this.#forget();
      }
    }
    return removed;
  }

  // Unmaps starting at va inside table `table` at `level`; sets #nextVa to where it stopped.
  #unmapAt(table: number, level: number, va: number, end: number): number {
    const pool = this.#pool;
    const span = LEVEL_SPAN[level];
    const idx = Math.floor(va / span) & (ENTRIES - 1);
    const w = table * WORDS_PER_TABLE + idx * 2;
    const lo = pool[w];
    const slotStart = Math.floor(va / span) * span;
    const slotEnd = slotStart + span;
    if ((lo & 3) === 0) {
      this.#nextVa = slotEnd;
      return 0;
    }
    const addr = pool[w + 1] * TWO_32 + ((lo & 0xffff_f000) >>> 0);
    if (level === 1 || (lo & IOPTE_PS) !== 0) {
      if (va === slotStart && end >= slotEnd) {
        pool[w] = 0;
        pool[w + 1] = 0;
        this.#used[table]--;
        this.#nextVa = slotEnd;
        return span;
      }
      // Partly covered large page: split it into next-level leaves, then retry.
      this.#forget();
      const sub = this.#allocTable();
      const subSpan = LEVEL_SPAN[level - 1];
      const perm = lo & 3;
      for (let i = 0; i < ENTRIES; i++) {
        const pa = addr + i * subSpan;
        const sw = sub * WORDS_PER_TABLE + i * 2;
        this.#pool[sw] = ((pa & 0xffff_f000) | perm | (level - 1 > 1 ? IOPTE_PS : 0)) >>>
          0;
        this.#pool[sw + 1] = Math.floor(pa / TWO_32);
      }
      this.#used[sub] = ENTRIES;
      this.#pool[w] = ((sub * 4096) | IOPTE_READ | IOPTE_WRITE) >>> 0;
      this.#pool[w + 1] = Math.floor((sub * 4096) / TWO_32);
      return this.#unmapAt(sub, level - 1, va, end);
    }
    const sub = (lo >>> 12) | (pool[w + 1] << 20);
    let removed = 0;
    let v = va;
    while (v < end && v < slotEnd) {
      removed += this.#unmapAt(sub, level - 1, v, end);
      v = this.#nextVa;
    }
    if (this.#tableEmpty(sub)) {
      const p = this.#pool;
      p[w] = 0;
      p[w + 1] = 0;
      this.#used[table]--;
      this.#free.push(sub);
      this.#forget();
    }
    this.#nextVa = v;
    return removed;
  }

  // Integer bit tests instead of `%` (a floating-point modulo on IOVAs at or above 2^31):
  // `x & m` keeps the low 32 bits of an integer below 2^53 exactly.
  #checkRange(iova: number, size: number, op: string): void {
    if (
      !Number.isSafeInteger(iova) || iova < 0 || (iova & 0xfff) !== 0 ||
      !Number.isSafeInteger(size) || size <= 0 || (size & 0xfff) !== 0
    ) {
      throw new DmaMapError("misaligned", iova, size, "io-page-table", `${op}: not 4 KiB-granular`);
    }
    if (iova + size > LEVEL_SPAN[this.levels + 1]) {
      throw new DmaMapError(
        "mask",
        iova,
        size,
        "io-page-table",
        `${op}: beyond the ${this.addressWidth}-bit IOVA space`,
      );
    }
  }

  // `vpn`: the IOVA in 4 KiB pages (a small integer: calling with it boxes nothing).
  #setLeaf(vpn: number, pa: number, leafLevel: number, perm: number): void {
    if (leafLevel === 1 && Math.floor(vpn / 512) === this.#l1Key) {
      // a free entry in the cached level-1 table (the common map): set it, nothing else changes
      const t = this.#l1Table;
      const w = t * WORDS_PER_TABLE + (vpn - this.#l1Key * 512) * 2;
      const pool = this.#pool;
      if ((pool[w] & 3) === 0) {
        this.#used[t]++;
        pool[w] = (pa & 0xffff_f000 | perm) >>> 0;
        pool[w + 1] = Math.floor(pa / TWO_32);
        this.#mappedBytes += IO_PAGE_4K;
        return;
      }
    }
    let table = 0;
    const key = leafLevel === 1 ? Math.floor(vpn / 512) : -1;
    let level: number = this.levels;
    if (key >= 0 && key === this.#l1Key) {
      table = this.#l1Table;
      level = 1;
    }
    for (; level > leafLevel; level--) {
      const idx = Math.floor(vpn / PFN_SPAN[level]) & (ENTRIES - 1);
      const w = table * WORDS_PER_TABLE + idx * 2;
      const lo = this.#pool[w];
      if ((lo & 3) === 0) {
        const t = this.#allocTable();
        this.#used[table]++;
        this.#pool[w] = ((t * 4096) | IOPTE_READ | IOPTE_WRITE) >>> 0;
        this.#pool[w + 1] = Math.floor((t * 4096) / TWO_32);
        table = t;
      } else if ((lo & IOPTE_PS) !== 0) {
        throw new DmaMapError(
          "overlap",
          vpn * IO_PAGE_4K,
          LEVEL_SPAN[leafLevel],
          "io-page-table",
          `IOVA ${hex64(vpn * IO_PAGE_4K)} is inside a mapped large page`,
        );
      } else {
        table = (lo >>> 12) | (this.#pool[w + 1] << 20);
      }
    }
    if (key >= 0 && key !== this.#l1Key) {
      this.#l1Key = key;
      this.#l1Table = table;
      this.#l1Perm = IOPTE_READ | IOPTE_WRITE; // non-leaf entries are always written R|W
    }
    const idx = Math.floor(vpn / PFN_SPAN[leafLevel]) & (ENTRIES - 1);
    const w = table * WORDS_PER_TABLE + idx * 2;
    const lo = this.#pool[w];
    if ((lo & 3) !== 0) {
      // An empty next-level table left behind can be replaced by a large leaf; anything else overlaps.
      const isTable = leafLevel > 1 && (lo & IOPTE_PS) === 0;
      const sub = (lo >>> 12) | (this.#pool[w + 1] << 20);
      if (!isTable || !this.#tableEmpty(sub)) {
        throw new DmaMapError(
          "overlap",
          vpn * IO_PAGE_4K,
          LEVEL_SPAN[leafLevel],
          "io-page-table",
          `IOVA ${hex64(vpn * IO_PAGE_4K)} is already mapped`,
        );
      }
      this.#free.push(sub);
      this.#forget();
    } else this.#used[table]++;
    this.#pool[w] = (pa & 0xffff_f000 | perm | (leafLevel > 1 ? IOPTE_PS : 0)) >>> 0;
    this.#pool[w + 1] = Math.floor(pa / TWO_32);
    this.#mappedBytes += LEVEL_SPAN[leafLevel];
  }

  // Drops the paging-structure cache (a table was freed or a large page split).
  #forget(): void {
    this.#l1Key = -1;
  }

  #tableEmpty(t: number): boolean {
    return this.#used[t] === 0;
  }

  #allocTable(): number {
    const f = this.#free.pop();
    if (f !== undefined) {
      this.#pool.fill(0, f * WORDS_PER_TABLE, (f + 1) * WORDS_PER_TABLE);
      this.#used[f] = 0;
      return f;
    }
    const t = this.#tables++;
    if ((t + 1) * WORDS_PER_TABLE > this.#pool.length) {
      const bigger = new Uint32Array(this.#pool.length * 2);
      bigger.set(this.#pool);
      this.#pool = bigger;
    }
    if (t >= this.#used.length) {
      const u = new Uint16Array(this.#used.length * 2);
      u.set(this.#used);
      this.#used = u;
    }
    this.#used[t] = 0;
    return t;
  }

  /**
   * The raw 64-bit entry at `index` of the table reached by following `path` from the root, as
   * `[lo, hi]` words (for known-answer tests and dumps). `path` lists entry indices per level.
   * @returns `null` when a non-leaf entry on the path is absent.
   */
  rawEntry(path: readonly number[]): [number, number] | null {
    let table = 0;
    for (let i = 0; i < path.length; i++) {
      const w = table * WORDS_PER_TABLE + path[i] * 2;
      const lo = this.#pool[w], hi = this.#pool[w + 1];
      if (i === path.length - 1) return [lo, hi];
      if ((lo & 3) === 0 || (lo & IOPTE_PS) !== 0) return null;
      table = (hi * TWO_32 + ((lo & 0xffff_f000) >>> 0)) / 4096;
    }
    return null;
  }
}

const SCRATCH = new IoPageWalk();
