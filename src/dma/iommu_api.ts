/**
 * The driver's DMA API through a paged IOMMU: Linux dma-iommu (DMA_MODES.md M5, §2.3).
 *
 * `map(P, len, dir)`:
 * 1. allocates an IOVA range (page-granular, size-aligned, **top-down below the DMA mask** clipped
 *    to the IOMMU's address width; a PCI device with a mask above 32 bits first tries below 4 GiB,
 *    Linux's "SAC address" preference, unless `sacFirst: false`);
 * 2. maps the pages of `P` there with the permission the direction implies (`dma_info_to_prot`:
 *    TO_DEVICE -> read, FROM_DEVICE -> write, BIDIRECTIONAL -> both);
 * 3. returns `IOVA + (P & 0xfff)` (the offset in the page is kept).
 *
 * `unmap` clears the page table at once; then
 * - `strict` (`iommu.strict=1`, arm64 default): invalidates the IOTLB for the range and frees the
 *   IOVA synchronously;
 * - `lazy` (x86/s390 default): queues the IOVA in a {@link FlushQueue} (256 entries / 10 ms);
 *   the batch flush invalidates the whole domain's IOTLB and only then frees the IOVAs. Until
 *   then {@link IommuDmaApi.isStale} reports the range: a device can still reach the old page
 *   through a stale IOTLB entry (the model keeps whatever the IOTLB really holds).
 *
 * IOVAs come from the allocator's range caches (Linux `iova_rcache`, see
 * {@link IovaAllocator.allocFast}): strict unmaps and lazy batch flushes put the IOVA back into
 * its size class's magazine, and the next map of that size takes it from there.
 *
 * When allocation fails and unmaps are pending, the queue is flushed and the allocation retried
 * once before `iova-exhausted` is reported.
 *
 * @module
 */

import { hex64, type U64, U64_MAX } from "../memory/u64.ts";
import type { Clock } from "./clock.ts";
import type { ReversibleDmaApi } from "./direct_api.ts";
import { DmaMapError } from "./errors.ts";
import { FlushQueue } from "./flush_queue.ts";
import type { Iommu, IommuDomain } from "./iommu.ts";
import { IOVA_GRANULE, IovaAllocator } from "./iova_allocator.ts";
import { IOPTE_READ, IOPTE_WRITE } from "./page_table.ts";
import type { DmaDirection } from "./types.ts";

/** Invalidation policy of an {@link IommuDmaApi}. */
export type IommuUnmapPolicy = "strict" | "lazy";

/** Options of an {@link IommuDmaApi}. */
export interface IommuDmaApiOptions {
  /** The IOMMU. */
  iommu: Iommu;
  /** The device's domain (paged). */
  domain: IommuDomain;
  /** `strict` (default) or `lazy`. */
  policy?: IommuUnmapPolicy;
  /** Mode name, default `"iommu-strict"` / `"iommu-lazy"`. */
  name?: string;
  /** The device's DMA mask, default 2^64 - 1 (clipped to the IOMMU's address width). */
  mask?: U64;
  /** Try IOVAs below 4 GiB first when the mask is wider (Linux PCI default), default `true`. */
  sacFirst?: boolean;
  /** Flush-queue entries (lazy), default 256. */
  fqSize?: number;
  /** Flush-queue timeout in ms (lazy), default 10. */
  fqTimeoutMs?: number;
  /** Time source for the flush queue (inject a `FakeClock` in tests). */
  clock?: Clock;
  /**
   * Take the fused one-page path when it applies (default `true`). It has exactly the general
   * path's effect (same IOVAs, page tables, IOTLB, counters, errors); `false` keeps only the
   * general path, for differential tests.
   */
  fastPath?: boolean;
}

/** A pending (unmapped, not yet invalidated) IOVA range of a lazy API. */
export interface PendingIova {
  /** First bus address of the range (page-aligned). */
  bus: number;
  /** Length in bytes. */
  length: number;
}

/** Counters of an {@link IommuDmaApi}. */
export interface IommuDmaApiStats {
  /** Streaming and coherent maps. */
  maps: number;
  /** Unmaps. */
  unmaps: number;
  /** IOTLB invalidation requests issued (strict: one per unmap; lazy: one per batch). */
  invalidations: number;
  /** Allocation retries after flushing pending unmaps. */
  allocRetries: number;
}

// FLAG_PENDING: the range is not live (queued for invalidation, or held by a range cache).
const FLAG_COHERENT = 1, FLAG_PENDING = 2;

/** dma-iommu: IOVA allocation, page-table updates, strict or lazy IOTLB invalidation. */
export class IommuDmaApi implements ReversibleDmaApi {
  /** Mode name. */
  readonly name: string;
  /** The IOMMU. */
  readonly iommu: Iommu;
  /** The device's domain. */
  readonly domain: IommuDomain;
  /** Unmap policy. */
  readonly policy: IommuUnmapPolicy;
  /** The IOVA allocator. */
  readonly allocator: IovaAllocator;
  /** The flush queue (`null` in strict mode). */
  readonly flushQueue: FlushQueue | null;
  /** Counters. */
  readonly stats: IommuDmaApiStats = { maps: 0, unmaps: 0, invalidations: 0, allocRetries: 0 };
  /** Exclusive limit PFN for allocation: `min(mask + 1, 2^width) / 4096`. */
  readonly limitPfn: number;
  readonly #sacPfn: number;
  /** Limit of the first allocation attempt: 4 GiB when the SAC preference applies, else the mask. */
  readonly #firstLimitPfn: number;
  readonly #fast: boolean;

  /**
   * Creates the API and reserves the IOMMU's reserved regions in the allocator.
   * @throws RangeError when the domain is not paged or the options are invalid.
   */
  constructor(options: IommuDmaApiOptions) {
    const { iommu, domain } = options;
    if (domain.table === null) throw new RangeError("IommuDmaApi needs a paged domain");
    this.iommu = iommu;
    this.domain = domain;
    this.policy = options.policy ?? "strict";
    this.name = options.name ?? `iommu-${this.policy}`;
    const mask = BigInt(options.mask ?? U64_MAX);
    if (mask < 0xfffn || mask > U64_MAX) throw new RangeError(`bad DMA mask ${hex64(mask)}`);
    const top = (mask + 1n) / 4096n;
    const widthPfn = iommu.iovaLimit / IOVA_GRANULE;
    this.limitPfn = top < BigInt(widthPfn) ? Number(top) : widthPfn;
    const sac = 2 ** 20; // 4 GiB / 4 KiB
    this.#sacPfn = (options.sacFirst ?? true) && this.limitPfn > sac ? sac : 0;
    this.#firstLimitPfn = this.#sacPfn > 0 ? this.#sacPfn : this.limitPfn;
    this.#fast = options.fastPath ?? true;
    this.allocator = new IovaAllocator();
    for (const r of iommu.reservedRegions) {
      this.allocator.reserve(Math.floor(r.start / IOVA_GRANULE), Math.floor(r.end / IOVA_GRANULE));
    }
    this.flushQueue = this.policy === "lazy"
      ? new FlushQueue((fq) => this.#flushBatch(fq), {
        size: options.fqSize,
        timeoutMs: options.fqTimeoutMs,
        clock: options.clock,
      })
      : null;
  }

  /**
   * `dma_map_single` through the IOMMU.
   * @throws DmaMapError `iova-exhausted` (no IOVA range below the mask), `mask` (beyond 2^52).
   */
  map(gpa: number, length: number, dir: DmaDirection): U64 {
    const perm = dir === 1 ? IOPTE_READ : dir === 2 ? IOPTE_WRITE : IOPTE_READ | IOPTE_WRITE;
    return this.#map(gpa, length, perm, 0);
  }

  /** {@link DmaApi.mapNumber}: IOVAs are below 2^52, so always `map`'s answer. */
  mapNumber(gpa: number, length: number, dir: DmaDirection): number {
    // IOPTE_READ 1, IOPTE_WRITE 2 as literals (an imported binding costs a load and a hole
    // check, and bytecode the driver's inlining budget pays for)
    const perm = dir === 1 ? 1 : dir === 2 ? 2 : 3;
    // #map's streaming one-page fused path, here so that the driver's add inlines it with
    // every step it takes (the range cache, the page table, lazy's timer check) and #map stays
    // a cold call: the same checks, timer check, steps and results as #map(gpa, length, perm, 0)
    if (
      Number.isSafeInteger(gpa) && gpa >= 0 && gpa + length <= 4503599627370496 && this.#fast
    ) {
      this.flushQueue?.poll();
      const off = gpa & 4095;
      let pfn = -1;
      if (off + length <= 4096) {
        pfn = this.allocator.allocCachedPage(this.#firstLimitPfn, off << 2);
        if (pfn >= 0 && this.iommu.mapPageCached(this.domain, pfn, gpa - off, perm)) {
          this.stats.maps++;
          return pfn * 4096 + off;
        }
      }
      return this.#mapRest(gpa, length, perm, off << 2, pfn) * 4096 + off;
    }
    return this.#map(gpa, length, perm, 0);
  }

  /** `dma_alloc_coherent`-style mapping (read/write). @throws DmaMapError as `map`. */
  mapCoherent(gpa: number, length: number): U64 {
    return this.#map(gpa, length, IOPTE_READ | IOPTE_WRITE, FLAG_COHERENT);
  }

  #map(gpa: number, length: number, perm: number, flags: number): number {
    // (map and mapCoherent; mapNumber, what the drivers call, holds its own copy of the
    // streaming one-page path below so that their add inlines it)
    if (!Number.isSafeInteger(gpa) || gpa < 0 || gpa + length > 4503599627370496) {
      this.#beyond52(gpa, length); // 2^52
    }
    this.flushQueue?.poll();
    // gpa % 4096 as an integer op: `&` takes gpa modulo 2^32 (a multiple of 4096), exact for a
    // safe integer >= 0 (was floor/multiply in doubles: ~10 ns of a ~70 ns map, measured)
    const off = gpa & 4095;
    // caller value b: flag bits 0-1, the in-page offset of the handle above them
    const b = flags | (off << 2);
    let pfn = -1;
    if (off + length <= 4096 && this.#fast) {
      // Fused one-page path (the common map): a range-cache hit below the first attempt's
      // limit, then a free entry in the page table's cached level-1 table. Each step either
      // does exactly what the general step does, or changes nothing and hands over to it.
      pfn = this.allocator.allocCachedPage(this.#firstLimitPfn, b);
      if (pfn >= 0 && this.iommu.mapPageCached(this.domain, pfn, gpa - off, perm)) {
        this.stats.maps++;
        return pfn * 4096 + off;
      }
    }
    return this.#mapRest(gpa, length, perm, b, pfn) * 4096 + off;
  }

  #beyond52(gpa: number, length: number): never {
    throw new DmaMapError("mask", gpa, length, this.name, "beyond 2^52");
  }

  // #map after (or without) the fused path: one page, with `pfn` the IOVA the fused path
  // already took from the range cache (or -1), or max(1, ceil((off + length) / 4096)) pages (at
  // least 2 then, `pfn` -1); returns the first PFN as #mapPages does.
  #mapRest(gpa: number, length: number, perm: number, b: number, pfn: number): number {
    const off = b >>> 2;
    if (off + length <= IOVA_GRANULE) return this.#mapPages(gpa, length, perm, b, 1, pfn);
    const pages = Math.max(1, Math.ceil((off + length) / IOVA_GRANULE));
    return this.#mapPages(gpa, length, perm, b, pages, -1);
  }

  // The general map of `pages` pages; `pfn` is an IOVA already allocated for it, or -1.
  // Returns the first PFN (a small integer: the caller forms the bus address, so no heap number
  // is boxed on the way back).
  #mapPages(gpa: number, length: number, perm: number, b: number, pages: number, pfn: number) {
    const off = b >>> 2;
    if (pfn < 0) pfn = this.#alloc(pages, b);
    if (pfn < 0) {
      throw new DmaMapError(
        "iova-exhausted",
        gpa,
        length,
        this.name,
        `no ${pages}-page IOVA range below ${hex64(this.limitPfn * IOVA_GRANULE)}`,
      );
    }
    try {
      this.iommu.mapPages(this.domain, pfn, gpa - off, pages, perm);
    } catch (e) {
      this.#freeIova(pfn);
      throw e;
    }
    this.stats.maps++;
    return pfn;
  }

  #alloc(pages: number, flags: number): number {
    const len = iovaRangePages(pages);
    // Linux iommu_dma_alloc_iova: alloc_iova_fast below 4 GiB first (no rcache flush), then
    // below the limit (emptying the range caches into the tree before giving up).
    for (let attempt = 0; attempt < 2; attempt++) {
      let pfn = -1;
      if (this.#sacPfn > 0) pfn = this.allocator.allocFast(len, this.#sacPfn, pages, flags, false);
      if (pfn < 0) pfn = this.allocator.allocFast(len, this.limitPfn, pages, flags, true);
      if (pfn >= 0) return pfn;
      if (this.flushQueue === null || !this.flushQueue.flush()) return -1;
      this.stats.allocRetries++;
    }
    return -1;
  }

  /**
   * `dma_unmap_single`: clears the page table; strict invalidates now, lazy queues the IOVA.
   * @throws DmaMapError `not-mapped` when `bus` is not the address a live `map` returned.
   */
  unmap(bus: U64, length: number, _dir: DmaDirection): void {
    // Split into page number and offset here, in a call small enough to inline into the
    // driver: both are small integers, so an IOVA at or above 2^31 is never boxed into a heap
    // number on the way to the out-of-line body.
    if (typeof bus === "number" && bus >= 0 && bus < 2 ** 52) {
      const pfn = Math.floor(bus / IOVA_GRANULE);
      this.#unmapPfn(pfn, bus - pfn * IOVA_GRANULE, length, 0);
    } else this.#unmap(bus, length, 0);
  }

  /**
   * {@link DmaApi.unmapPage}: `unmap` of bus address `pfn * 4096 + offset`, passed as two small
   * integers. @throws DmaMapError `not-mapped` as `unmap`.
   */
  unmapPage(pfn: number, offset: number, length: number, dir: DmaDirection): void {
    if (
      Number.isInteger(pfn) && pfn >= 0 && pfn < 2 ** 40 && Number.isInteger(offset) &&
      offset >= 0 && offset < IOVA_GRANULE
    ) this.#unmapPfn(pfn, offset, length, 0);
    else this.unmap(pfn * IOVA_GRANULE + offset, length, dir);
  }

  /** Ends a coherent mapping. @throws DmaMapError `not-mapped`. */
  unmapCoherent(bus: U64, length: number): void {
    this.#unmap(bus, length, FLAG_COHERENT);
  }

  #unmap(bus: U64, length: number, coherent: number): void {
    if (typeof bus === "number" && bus >= 0 && bus < 2 ** 52) {
      const pfn = Math.floor(bus / IOVA_GRANULE);
      this.#unmapPfn(pfn, bus - pfn * IOVA_GRANULE, length, coherent);
      return;
    }
    this.#live(bus, length, "unmap"); // throws for every such address (no IOVA lies there)
    const pfn = Math.floor((bus as number) / IOVA_GRANULE);
    this.#unmapPfn(pfn, (bus as number) - pfn * IOVA_GRANULE, length, coherent);
  }

  // `unmap` of bus address `pfn * 4096 + off` (page number and in-page offset).
  #unmapPfn(pfn: number, off: number, length: number, coherent: number): void {
    // (lazy: the flush queue runs its timer in push, below; one clock read per unmap)
    const a = this.allocator;
    const i = a.findContaining(pfn);
    if (i < 0) this.#notLive(pfn, off, length, "unmap");
    const b = a.dataB(i); // read once (flags and the handle's offset)
    if ((b & FLAG_PENDING) !== 0) this.#notLive(pfn, off, length, "unmap");
    const lo = a.rangeLo(i);
    const mapped = a.dataA(i);
    if (pfn * IOVA_GRANULE + off + length > (lo + mapped) * IOVA_GRANULE) {
      this.#notLive(pfn, off, length, "unmap");
    }
    if (pfn !== lo || off !== b >>> 2) {
      // dma-debug: "device driver frees DMA memory with different ... address"
      const bus = pfn * IOVA_GRANULE + off;
      throw new DmaMapError("not-mapped", bus, length, this.name, "not the handle map returned");
    }
    if ((b & FLAG_COHERENT) !== coherent) {
      const bus = pfn * IOVA_GRANULE + off;
      throw new DmaMapError("not-mapped", bus, length, this.name, "coherent/streaming mismatch");
    }
    // fused one-page path: each step does exactly what the general step does, or changes
    // nothing and hands over to it
    if (mapped !== 1 || !this.#fast || !this.iommu.unmapPageCached(this.domain, pfn)) {
      this.iommu.unmapPages(this.domain, pfn, mapped);
    }
    this.stats.unmaps++;
    a.setDataB(i, b | FLAG_PENDING);
    if (this.flushQueue === null) {
      this.iommu.iotlb.invalidatePages(this.domain.id, pfn, mapped);
      this.stats.invalidations++;
      if (!this.#fast || !a.freeCachedPageAt(i)) a.freeFastAt(i);
    } else {
      this.flushQueue.push(pfn, mapped);
    }
  }

  // #live's errors for a page-number form (cold).
  #notLive(pfn: number, off: number, length: number, op: string): never {
    this.#live(pfn * IOVA_GRANULE + off, length, op);
    throw new Error("unreachable: #live accepted what #unmapPfn refused");
  }

  // The allocator index of the live (mapped, not pending) range `bus` starts in.
  #live(bus: U64, length: number, op: string): number {
    if (typeof bus !== "number") {
      throw new DmaMapError("not-mapped", bus, length, this.name, `${op}: no such mapping`);
    }
    const i = this.allocator.findContaining(Math.floor(bus / IOVA_GRANULE));
    if (i < 0 || (this.allocator.dataB(i) & FLAG_PENDING) !== 0) {
      throw new DmaMapError("not-mapped", bus, length, this.name, `${op}: no live mapping`);
    }
    const a = this.allocator;
    const end = (a.rangeLo(i) + a.dataA(i)) * IOVA_GRANULE;
    if (bus + length > end) {
      throw new DmaMapError("not-mapped", bus, length, this.name, `${op}: runs past the mapping`);
    }
    return i;
  }

  #flushBatch(fq: FlushQueue): void {
    // Linux fq_flush_iotlb: one domain-wide IOTLB flush, then every queued IOVA is freed.
    this.iommu.iotlb.invalidateDomain(this.domain.id);
    this.stats.invalidations++;
    // fq_ring_free -> free_iova_fast: the IOVAs go to the range caches, so the next maps reuse
    // them without a tree search.
    // The range of an entry of `pages` mapped pages has #alloc's rounded size (a power of two
    // below 32 pages), so its size class is known without a tree lookup.
    // Runs of one-page entries (every small buffer) are copied onto the loaded magazine while it
    // has room (freeCachedPages: exactly freeFastSized's effect, in one loop over the queue's
    // arrays: was ~10 ns per entry through per-entry calls, ~3 ns so, measured); the entry that
    // stops a run takes freeFastSized itself.
    const a = this.allocator, fast = this.#fast;
    const n = fq.length, pfns = fq.pfnArray, pages = fq.pagesArray;
    let k = 0;
    while (k < n) {
      if (fast) {
        k = a.freeCachedPages(pfns, pages, k, n);
        if (k === n) break;
      }
      a.freeFastSized(pfns[k], iovaRangePages(pages[k]));
      k++;
    }
    // the IOVAs just cached are mapped again next: point their lookup hints at them (nothing to
    // do unless the tree changed since the last flush)
    a.refreshHints();
  }

  // Returns a just-allocated IOVA whose mapping failed (Linux iommu_dma_free_iova).
  #freeIova(pfn: number): void {
    const a = this.allocator;
    const i = a.findStart(pfn);
    a.setDataB(i, a.dataB(i) | FLAG_PENDING);
    a.freeFast(pfn);
  }

  /** Checks that `bus` lies in a live mapping (no cache maintenance on a coherent IOMMU). */
  syncForCpu(bus: U64, length: number, _dir: DmaDirection): void {
    this.#live(bus, length, "sync");
  }
  /** Checks that `bus` lies in a live mapping. @throws DmaMapError `not-mapped`. */
  syncForDevice(bus: U64, length: number, _dir: DmaDirection): void {
    this.#live(bus, length, "sync");
  }

  /** `iommu_iova_to_phys` of a live mapping, or -1. */
  busToGpa(bus: U64): number {
    if (typeof bus !== "number" || this.domain.table === null) return -1;
    const i = this.allocator.findContaining(Math.floor(bus / IOVA_GRANULE));
    if (i < 0 || (this.allocator.dataB(i) & FLAG_PENDING) !== 0) return -1;
    return this.domain.table.lookup(bus);
  }

  /** Runs the flush-queue timer (lazy); call after advancing a fake clock. */
  tick(): void {
    this.flushQueue?.poll();
  }

  /**
   * Lazy-invalidation window: `true` when `bus` was unmapped but its IOTLB invalidation is still
   * queued, so a device access may still succeed through a stale IOTLB entry. Always `false` in
   * strict mode. Does not run the timer (call {@link IommuDmaApi.tick} first to let time act).
   */
  isStale(bus: U64): boolean {
    if (this.flushQueue === null || typeof bus !== "number") return false;
    return this.flushQueue.containsPfn(Math.floor(bus / IOVA_GRANULE));
  }

  /** The unmapped-but-not-invalidated ranges (lazy), oldest first. */
  pendingIovas(): PendingIova[] {
    const fq = this.flushQueue;
    const out: PendingIova[] = [];
    if (fq === null) return out;
    for (let k = 0; k < fq.length; k++) {
      out.push({ bus: fq.pfn(k) * IOVA_GRANULE, length: fq.pages(k) * IOVA_GRANULE });
    }
    return out;
  }
}

// Pages of the IOVA range a mapping of `pages` pages gets: dma-iommu rounds small sizes up to a
// power of two so the rcaches can recycle them.
function iovaRangePages(pages: number): number {
  if (pages >= 32) return pages;
  let p = 1;
  while (p < pages) p *= 2;
  return p;
}
