/**
 * Bounce buffering through a software IO TLB: Linux swiotlb (DMA_MODES.md M4, §2.3).
 *
 * Facts modelled: slots of 2 KiB (`IO_TLB_SHIFT` 11), a mapping takes at most 128 contiguous
 * slots (`IO_TLB_SEGSIZE`, so 256 KiB, the `dma_max_mapping_size()` virtio limits segments to)
 * and never crosses a 128-slot segment; a mapping of a page or more starts page-aligned; slots
 * are searched next-fit from a rotating index (Linux: one per area); a default pool is 64 MiB
 * (`IO_TLB_DEFAULT_SIZE`). The slots chosen are Linux's (pure next-fit, `area->index`): reusing
 * freed slots first was measured 5-20% faster for 1500 B bounces (a next-fit sweep of a 4 MiB pool
 * is cache-cold) and rejected, because which slot a stale bus address hits is an outcome.
 * Data is copied into the slot on map (Linux bounces on map whatever the direction since
 * ddbd89deb7d3 "swiotlb: fix info leak with DMA_FROM_DEVICE" and 901c7280ca0d "Reinstate some
 * of ...", 2022: `swiotlb_tbl_map_single` calls `swiotlb_bounce(..., DMA_TO_DEVICE)` for every
 * direction, so a FROM_DEVICE buffer's bytes the device did not write come back unchanged), from
 * the slot on unmap for FROM_DEVICE/BIDIRECTIONAL only, on `syncForDevice` for TO_DEVICE/
 * BIDIRECTIONAL only and on `syncForCpu` for FROM_DEVICE/BIDIRECTIONAL only. Exhaustion is a typed
 * `pool-exhausted` error (Linux returns -ENOMEM to virtio since f7728002c1c7), never silent.
 *
 * The pool is a range of guest memory the caller provides; in a confidential guest it must be
 * shared (decrypted). The slot's bus address comes from an inner {@link ReversibleDmaApi}:
 * dma-direct (bus = slot GPA, or through windows) or dma-iommu (the slot is mapped into an IOMMU
 * domain: SEV/TDX with a vIOMMU is M4 inside M5).
 *
 * @module
 */

import type { GuestMemory, MemoryRegion } from "../memory/guest_memory.ts";
import { type BackingCopier, backingCopier, backingSmallCopier } from "../memory/backing.ts";
import type { U64 } from "../memory/u64.ts";
import { DirectDmaApi, type ReversibleDmaApi } from "./direct_api.ts";
import { DmaMapError } from "./errors.ts";
import type { DmaDirection } from "./types.ts";

/** `IO_TLB_SHIFT`: log2 of the slot size. */
export const IO_TLB_SHIFT = 11;
/** Slot size in bytes (2 KiB). */
export const IO_TLB_SIZE = 1 << IO_TLB_SHIFT;
/** `IO_TLB_SEGSIZE`: most contiguous slots one mapping may use (128 = 256 KiB). */
export const IO_TLB_SEGSIZE = 128;
/** Largest mapping in bytes (`IO_TLB_SEGSIZE * IO_TLB_SIZE`, 256 KiB). */
export const SWIOTLB_MAX_MAPPING = IO_TLB_SEGSIZE * IO_TLB_SIZE;

// Copies shorter than this run as a word loop (a native call costs more below it).
const COPY_LOOP_BELOW = 128;
// #slot's mark of an in-use slot that is not a mapping's head (above IO_TLB_SEGSIZE).
const SLOT_BODY = 255;
// 32-bit words per slot.
const SLOT_WORDS = IO_TLB_SIZE >> 2;

// Copies `length >> 2` words (non-overlapping ranges); #copy's word loop.
function copyWords(dst: Int32Array, di: number, src: Int32Array, si: number, length: number) {
  const n = length >> 2;
  for (let i = 0; i < n; i++) dst[di + i] = src[si + i];
}

/** `IO_TLB_DEFAULT_SIZE`: default pool size (64 MiB). */
export const IO_TLB_DEFAULT_SIZE = 64 * 1024 * 1024;

/** Options of a {@link SwiotlbDmaApi}. */
export interface SwiotlbOptions {
  /** Guest memory holding the pool and the original buffers. */
  memory: GuestMemory;
  /** GPA of the pool (page-aligned, inside one shared region). */
  poolGpa: number;
  /** Pool size in bytes, a multiple of 2 KiB; default 64 MiB. */
  poolSize?: number;
  /** The API that gives slots their bus address (dma-direct or dma-iommu). */
  inner: ReversibleDmaApi;
  /**
   * `true` (default): every streaming map bounces (`swiotlb=force`, confidential guests,
   * restricted-dma-pool). `false`: bounce only when `inner` refuses with `mask`/`window`
   * (dma-direct's fallback for devices with a small DMA mask).
   */
  force?: boolean;
  /** Mode name, default `"swiotlb"`. */
  name?: string;
}

/** Counters of a {@link SwiotlbDmaApi}. */
export interface SwiotlbStats {
  /** Mappings that bounced. */
  bounced: number;
  /** Mappings passed straight to the inner API (force = false). */
  direct: number;
  /** Bytes copied original -> slot. */
  bytesToSlot: number;
  /** Bytes copied slot -> original. */
  bytesFromSlot: number;
  /** Maps refused with `pool-exhausted`. */
  exhausted: number;
  /** Highest number of slots in use at once. */
  highWater: number;
}

/** swiotlb: bounce buffers in a shared pool of 2 KiB slots. */
export class SwiotlbDmaApi implements ReversibleDmaApi {
  /** Mode name. */
  readonly name: string;
  /** GPA of the pool. */
  readonly poolGpa: number;
  /** Pool size in bytes. */
  readonly poolSize: number;
  /** Number of slots. */
  readonly slots: number;
  /** The API mapping the slots. */
  readonly inner: ReversibleDmaApi;
  /** Whether every map bounces. */
  readonly force: boolean;
  /**
   * Counters: a live view (own enumerable accessors, so `JSON.stringify` and spreading see the
   * current values; assigning a field sets the counter).
   */
  readonly stats: SwiotlbStats;
  // The counters behind `stats` (fields of this object: the fast paths update them without
  // loading and checking a second object). The byte counters start as a fraction, set to 0 in
  // the constructor, so V8 gives their fields a double representation from the start: as small
  // integers they would overflow the Smi range after 1 GiB of bounces, and that change of field
  // representation deoptimizes every function inlining the fast paths, once, mid-run.
  #bounced = 0;
  #direct = 0;
  #bytesToSlot = 0.5;
  #bytesFromSlot = 0.5;
  #exhausted = 0;
  #highWater = 0;
  readonly #memory: GuestMemory;
  // The region holding the pool, the pool's offset in it, a view of its whole backing store and
  // the store's memmove, if any (a region on the same store is copied to and from in one call).
  readonly #region: MemoryRegion;
  readonly #base: number;
  readonly #backing: Uint8Array;
  readonly #wasmCopy: BackingCopier | null;
  // The inner API is plain dma-direct (no window, a mask covering the whole pool): a slot's bus
  // address is its GPA, its map never refuses a slot and its unmap does nothing, so those calls
  // are skipped (checked once here; the results are the ones the calls would give).
  readonly #plainInner: boolean;
  // Per slot: 0 = free; at a mapping's head slot, its number of slots (1..IO_TLB_SEGSIZE); at
  // its other slots, SLOT_BODY (so "in use" is one test, and a one-slot map or unmap writes one
  // byte). Linux keeps a per-slot count of free slots to the segment end (`list`) and walks back
  // over the free run on every release (O(segment)); a run of n free slots is checked here at
  // search time instead, so map and unmap cost O(slots of the mapping). Same slots chosen.
  readonly #slot: Uint8Array;
  /** Per slot: original GPA this slot's first byte mirrors. */
  readonly #orig: Float64Array;
  // Bytes of the mapping from each slot's start to the mapping's end (Linux `alloc_size` per
  // slot); at a head slot, the mapped length. Read only while the slot is in use (a free
  // slot's value is stale: #take writes every slot it takes).
  readonly #remain: Uint32Array;
  // The region the last bounced original was in: a hit skips GuestMemory.resolve (a miss takes
  // the general path, which resolves and throws exactly as before). When it shares the pool's
  // backing store and the store has a memmove: the store offset of GPA 0 in it (`gpa + delta` is
  // a GPA's byte in the store), else NaN; #poolByte is the store offset of slot 0.
  #origRegion: MemoryRegion;
  #origDelta = NaN;
  // The cached original region's GPA and end (#origRegion.gpa / .end, read by the fast paths
  // without loading the region).
  #lo = 0;
  #hi = 0;
  // 1 when the fast paths copy with the store's routines alone: the cached original region is on
  // the pool's store apart from the pool, the store has both routines (#origDelta a number); a
  // Smi, not a boolean, so the test is one compare.
  #kind = 0;
  // Slots unmap's fast path accepts: all of them over plain dma-direct, else none (#plainInner
  // folded into the index bound).
  readonly #fastSlots: number;
  readonly #poolByte: number;
  // map's fast path applies: forced bounce over plain dma-direct.
  readonly #fast: boolean;
  // Word copies below COPY_LOOP_BELOW: the pool region's words, the word index of slot 0 in them
  // (-1 when a word index could reach 2^31), and whether the cached original region allows the
  // word loop (not the pool's own region, so no overlap; its word indices below 2^31).
  readonly #poolWords: Int32Array;
  readonly #poolWord0: number;
  #origWords = false;
  // The store's small-copy routine (backing.ts), used for copies below COPY_LOOP_BELOW when the
  // cached original region is on the pool's store and its bytes there do not overlap the pool's
  // (#kind 1): then no copy between them overlaps, as the routine requires.
  readonly #small: BackingCopier | null;
  #index = 0;
  #used = 0;

  /**
   * Creates the pool.
   * @throws RangeError when the pool is misaligned, not inside one region of `memory`, private,
   * or its size is not a positive multiple of 2 KiB.
   */
  constructor(options: SwiotlbOptions) {
    const { memory, poolGpa, inner } = options;
    const size = options.poolSize ?? IO_TLB_DEFAULT_SIZE;
    if (!Number.isSafeInteger(poolGpa) || poolGpa % 4096 !== 0) {
      throw new RangeError(
        `swiotlb pool GPA ${
          Number.isSafeInteger(poolGpa) && poolGpa >= 0
            ? "0x" + poolGpa.toString(16)
            : String(poolGpa)
        } must be page-aligned (0x1000)`,
      );
    }
    if (!Number.isSafeInteger(size) || size <= 0 || size % IO_TLB_SIZE !== 0) {
      throw new RangeError(`swiotlb pool size ${size} must be a positive multiple of 2 KiB`);
    }
    if (!memory.contains(poolGpa, size)) {
      throw new RangeError(
        `swiotlb pool [0x${poolGpa.toString(16)}, +0x${size.toString(16)}) is not inside one ` +
          "guest memory region: add a region for it",
      );
    }
    if (memory.regionAt(poolGpa)!.private) {
      throw new RangeError("swiotlb pool must be in shared memory (its region is private)");
    }
    this.#memory = memory;
    this.#region = memory.regionAt(poolGpa)!;
    this.#origRegion = this.#region;
    this.#base = poolGpa - this.#region.gpa;
    this.#backing = this.#region.store;
    this.#wasmCopy = backingCopier(this.#region.bytes.buffer);
    this.#poolByte = this.#region.bytes.byteOffset + this.#base;
    this.#poolWords = this.#region.words;
    this.#small = backingSmallCopier(this.#region.bytes.buffer);
    this.#poolWord0 = this.#base + size <= 2 ** 31 ? this.#base >> 2 : -1;
    this.poolGpa = poolGpa;
    this.poolSize = size;
    this.#setOrigRegion(this.#region);
    this.#plainInner = inner.constructor === DirectDmaApi &&
      (inner as DirectDmaApi).windows === null && (inner as DirectDmaApi).accepts(poolGpa, size);
    this.name = options.name ?? "swiotlb";
    this.slots = size / IO_TLB_SIZE;
    this.inner = inner;
    this.force = options.force ?? true;
    this.#fast = this.#plainInner && this.force;
    this.#slot = new Uint8Array(this.slots);
    this.#orig = new Float64Array(this.slots);
    this.#remain = new Uint32Array(this.slots);
    this.#fastSlots = this.#plainInner ? this.slots : 0;
    this.#bytesToSlot = 0;
    this.#bytesFromSlot = 0;
    // own enumerable accessors in the original field order (JSON.stringify and spreading see them)
    const stats = {} as SwiotlbStats;
    Object.defineProperties(stats, {
      bounced: { enumerable: true, get: () => this.#bounced, set: (v) => this.#bounced = v },
      direct: { enumerable: true, get: () => this.#direct, set: (v) => this.#direct = v },
      bytesToSlot: {
        enumerable: true,
        get: () => this.#bytesToSlot,
        set: (v) => this.#bytesToSlot = v,
      },
      bytesFromSlot: {
        enumerable: true,
        get: () => this.#bytesFromSlot,
        set: (v) => this.#bytesFromSlot = v,
      },
      exhausted: { enumerable: true, get: () => this.#exhausted, set: (v) => this.#exhausted = v },
      highWater: { enumerable: true, get: () => this.#highWater, set: (v) => this.#highWater = v },
    });
    this.stats = stats;
  }

  /** Slots currently in use. */
  get usedSlots(): number {
    return this.#used;
  }

  /** True when slot `i` is in use. */
  slotInUse(i: number): boolean {
    return this.#slot[i] !== 0;
  }

  /**
   * Maps a streaming buffer: bounces it into fresh slots (copying the original in) and maps the
   * slots through the inner API.
   * @throws DmaMapError `mask` (beyond 2^52), `too-large` (> 256 KiB), `pool-exhausted`, or the
   * inner API's error; MemoryFault when the buffer is not guest RAM (no slot is kept).
   */
  map(gpa: number, length: number, dir: DmaDirection): U64 {
    const bus = this.#mapFast(gpa, length);
    return bus >= 0 ? bus : this.#mapGeneral(gpa, length, dir);
  }

  /**
   * {@link DmaApi.mapNumber}: `map`'s one-slot fast path (the slot's bus address is its GPA, a
   * number); -1 having mapped nothing in every other case, where the caller's `map` takes the
   * general path (and throws its errors).
   * @throws nothing itself; MemoryFault cannot occur (the original lies in a known region).
   */
  mapNumber(gpa: number, length: number, _dir: DmaDirection): number {
    return this.#mapFast(gpa, length);
  }

  // The common case (forced bounce, plain dma-direct inner, no observer, one slot, the original
  // in the region of the last one): the same checks, slot, copy and counters as the general path,
  // with no inner call, no resolve and no undo to arm. Anything else (an error to throw, a region
  // miss, an empty or multi-slot mapping) returns -1 before any state changes. (Kept small: V8
  // inlines a function of at most 460 bytecode bytes.)
  #mapFast(gpa: number, length: number): number {
    if (
      this.#fast && length > 0 && length <= IO_TLB_SIZE && (length | 0) === length &&
      gpa >= this.#lo && gpa + length <= this.#hi && Number.isSafeInteger(gpa) &&
      this.#memory.observer === null
    ) {
      // next-fit: the slot at the rotating index is free unless the pool wrapped onto a live
      // mapping (#findSlot then searches on from it, as #findSlots(1, 1) does)
      const at = this.#index;
      const idx = this.#slot[at] === 0 ? at : this.#findSlot();
      if (idx >= 0) return this.#bounceOne(idx, gpa, length);
    }
    return -1;
  }

  // map's fast path once a slot is found: #take(idx, 1, gpa, length), the copy #toSlot makes,
  // the counters; returns the slot's bus address (its GPA: plain dma-direct).
  #bounceOne(idx: number, gpa: number, length: number): number {
    this.#slot[idx] = 1;
    this.#orig[idx] = gpa;
    this.#remain[idx] = length;
    const used = this.#used + 1;
    this.#used = used;
    if (used > this.#highWater) this.#highWater = used;
    this.#index = idx + 1 === this.slots ? 0 : idx + 1;
    if (this.#kind !== 0) {
      // #copy's result: the original's region is on the pool's store and apart from the pool
      // (no overlap), so the small routine (below COPY_LOOP_BELOW, any alignment) or the
      // memmove copies the same bytes as #copy's word loop or memmove would
      const slotByte = this.#poolByte + idx * IO_TLB_SIZE;
      if (length < COPY_LOOP_BELOW) this.#small!(slotByte, gpa + this.#origDelta, length);
      else this.#wasmCopy!(slotByte, gpa + this.#origDelta, length);
    } else this.#toSlotOne(idx, gpa, length);
    this.#bytesToSlot += length;
    this.#bounced++;
    return this.poolGpa + idx * IO_TLB_SIZE;
  }

  // #bounceOne's copy when #kind is 0 (kept out of line, so the fast path stays small).
  #toSlotOne(idx: number, gpa: number, length: number): void {
    const r = this.#origRegion;
    if (length >= COPY_LOOP_BELOW && this.#origDelta === this.#origDelta) {
      // #copy's memmove branch, its offsets precomputed
      this.#wasmCopy!(this.#poolByte + idx * IO_TLB_SIZE, gpa + this.#origDelta, length);
    } else if (length < COPY_LOOP_BELOW && ((gpa | length) & 3) === 0 && this.#origWords) {
      // #copy's word loop (the original's region is not the pool's: no overlap)
      copyWords(
        this.#poolWords,
        this.#poolWord0 + idx * SLOT_WORDS,
        r.words,
        (gpa - r.gpa) >> 2,
        length,
      );
    } else this.#copy(this.#region, this.#base + idx * IO_TLB_SIZE, r, gpa - r.gpa, length);
  }

  #mapGeneral(gpa: number, length: number, dir: DmaDirection): U64 {
    if (!this.force) {
      try {
        const bus = this.inner.map(gpa, length, dir);
        this.#direct++;
        return bus;
      } catch (e) {
        if (!(e instanceof DmaMapError) || (e.reason !== "mask" && e.reason !== "window")) throw e;
      }
    }
    if (!Number.isSafeInteger(gpa) || gpa < 0 || gpa + length > 2 ** 52) {
      throw new DmaMapError("mask", gpa, length, this.name, "beyond 2^52");
    }
    if (length > SWIOTLB_MAX_MAPPING) {
      throw new DmaMapError(
        "too-large",
        gpa,
        length,
        this.name,
        `a bounce mapping holds at most ${SWIOTLB_MAX_MAPPING} bytes (128 slots of 2 KiB)`,
      );
    }
    const n = length > IO_TLB_SIZE ? Math.ceil(length / IO_TLB_SIZE) : 1;
    const idx = n === 1 ? this.#findSlot() : this.#findSlots(n, length >= 4096 ? 2 : 1);
    if (idx < 0) {
      this.#exhausted++;
      throw new DmaMapError(
        "pool-exhausted",
        gpa,
        length,
        this.name,
        `no ${n} contiguous free slots (${this.#used}/${this.slots} in use)`,
      );
    }
    this.#take(idx, n, gpa, length);
    const slotGpa = this.poolGpa + idx * IO_TLB_SIZE;
    try {
      if (length > 0) {
        // swiotlb_bounce(..., DMA_TO_DEVICE) on map; a buffer outside guest RAM is a MemoryFault
        this.#setOrigRegion(this.#toSlot(slotGpa, gpa, length));
        this.#bytesToSlot += length;
      }
      const bus = this.#plainInner ? slotGpa : this.inner.map(slotGpa, length, dir);
      this.#bounced++;
      return bus;
    } catch (e) {
      this.#release(idx);
      throw e;
    }
  }

  /**
   * Unmaps: ends the inner mapping, copies the slot back for FROM_DEVICE / BIDIRECTIONAL, frees
   * the slots.
   * @throws DmaMapError `not-mapped` when `bus` is not the start of a live bounce mapping.
   */
  unmap(bus: U64, length: number, dir: DmaDirection): void {
    // The common case: a live one-slot head (over plain dma-direct), copied back (FROM_DEVICE /
    // BIDIRECTIONAL) to an original in the last original's region with no observer; anything
    // else takes the general path with nothing changed yet. (#slot is 1 exactly at a live
    // one-slot mapping's head: #take and #release.)
    if (typeof bus === "number") {
      const off = bus - this.poolGpa;
      const idx = off >>> IO_TLB_SHIFT; // a slot start when idx * IO_TLB_SIZE === off
      if (idx * IO_TLB_SIZE === off && idx < this.#fastSlots && this.#slot[idx] === 1) {
        if (dir === 1) return this.#releaseOne(idx); // TO_DEVICE: nothing to copy back
        const n = Math.min(length, this.#remain[idx]);
        if (n <= 0) return this.#releaseOne(idx); // (#copyBack copies nothing)
        const orig = this.#orig[idx];
        if (
          orig >= this.#lo && orig + n <= this.#hi && (n | 0) === n &&
          this.#memory.observer === null
        ) {
          return this.#bounceBack(idx, orig, n);
        }
      }
    }
    this.#unmapGeneral(bus, length, dir);
  }

  // unmap's fast path: the copy #copyBack makes, its counter, #release(idx) of one slot.
  #bounceBack(idx: number, orig: number, n: number): void {
    if (this.#kind !== 0) {
      // as in #bounceOne: the bytes #copy would copy
      const slotByte = this.#poolByte + idx * IO_TLB_SIZE;
      if (n < COPY_LOOP_BELOW) this.#small!(orig + this.#origDelta, slotByte, n);
      else this.#wasmCopy!(orig + this.#origDelta, slotByte, n);
    } else this.#fromSlotOne(idx, orig, n);
    this.#bytesFromSlot += n;
    this.#releaseOne(idx);
  }

  // #bounceBack's copy when #kind is 0 (kept out of line).
  #fromSlotOne(idx: number, orig: number, n: number): void {
    const r = this.#origRegion;
    if (n >= COPY_LOOP_BELOW && this.#origDelta === this.#origDelta) {
      this.#wasmCopy!(orig + this.#origDelta, this.#poolByte + idx * IO_TLB_SIZE, n);
    } else if (n < COPY_LOOP_BELOW && ((orig | n) & 3) === 0 && this.#origWords) {
      copyWords(
        r.words,
        (orig - r.gpa) >> 2,
        this.#poolWords,
        this.#poolWord0 + idx * SLOT_WORDS,
        n,
      );
    } else this.#copy(r, orig - r.gpa, this.#region, this.#base + idx * IO_TLB_SIZE, n);
  }

  // #release(idx) of a one-slot mapping.
  #releaseOne(idx: number): void {
    this.#slot[idx] = 0;
    this.#used--;
  }

  #unmapGeneral(bus: U64, length: number, dir: DmaDirection): void {
    // (plain dma-direct: busToGpa is the identity on numbers, -1 for a bigint)
    const slotGpa = this.#plainInner
      ? (typeof bus === "number" ? bus : -1)
      : this.inner.busToGpa(bus);
    if (!this.#inPool(slotGpa)) {
      if (!this.force) return this.inner.unmap(bus, length, dir);
      throw new DmaMapError("not-mapped", bus, length, this.name, "not a bounce-buffer address");
    }
    const idx = (slotGpa - this.poolGpa) / IO_TLB_SIZE;
    if ((idx | 0) !== idx || this.#slot[idx] === 0 || this.#slot[idx] === SLOT_BODY) {
      throw new DmaMapError("not-mapped", bus, length, this.name, "not the start of a mapping");
    }
    if (!this.#plainInner) this.inner.unmap(bus, length, dir);
    if (dir !== 1) this.#copyBack(slotGpa, this.#orig[idx], Math.min(length, this.#remain[idx]));
    this.#release(idx);
  }

  /** Copies slot -> original for FROM_DEVICE / BIDIRECTIONAL. @throws DmaMapError `not-mapped`. */
  syncForCpu(bus: U64, length: number, dir: DmaDirection): void {
    const slotGpa = this.#syncSlot(bus, length);
    this.inner.syncForCpu(bus, length, dir);
    if (slotGpa >= 0 && dir !== 1) this.#copyBack(slotGpa, this.#syncOrig, length);
  }

  /** Copies original -> slot for TO_DEVICE / BIDIRECTIONAL. @throws DmaMapError `not-mapped`. */
  syncForDevice(bus: U64, length: number, dir: DmaDirection): void {
    const slotGpa = this.#syncSlot(bus, length);
    this.inner.syncForDevice(bus, length, dir);
    if (slotGpa >= 0 && dir !== 2 && length > 0) {
      this.#toSlot(slotGpa, this.#syncOrig, length);
      this.#bytesToSlot += length;
    }
  }

  /**
   * Coherent memory never bounces; it must be shared.
   * @throws DmaMapError `private-memory` for private memory, or the inner API's error.
   */
  mapCoherent(gpa: number, length: number): U64 {
    const r = this.#memory.regionAt(gpa);
    if (r !== undefined && r.private) {
      throw new DmaMapError("private-memory", gpa, length, this.name, `${r.name} is private`);
    }
    return this.inner.mapCoherent(gpa, length);
  }
  /** Ends a coherent mapping (inner API). */
  unmapCoherent(bus: U64, length: number): void {
    this.inner.unmapCoherent(bus, length);
  }

  /** GPA behind `bus` as the inner API sees it (the slot for bounced mappings), or -1. */
  busToGpa(bus: U64): number {
    return this.inner.busToGpa(bus);
  }

  /** For a bus address inside a live bounce mapping: the original GPA it mirrors, else -1. */
  originalOf(bus: U64): number {
    const slotGpa = this.inner.busToGpa(bus);
    if (!this.#inPool(slotGpa)) return -1;
    const off = slotGpa - this.poolGpa;
    const idx = Math.floor(off / IO_TLB_SIZE);
    return this.#slot[idx] !== 0 ? this.#orig[idx] + (off % IO_TLB_SIZE) : -1;
  }

  #setOrigRegion(r: MemoryRegion): void {
    this.#origRegion = r;
    this.#origWords = r !== this.#region && r.size <= 2 ** 31 && this.#poolWord0 >= 0;
    this.#origDelta = this.#wasmCopy !== null && r.store === this.#region.store
      ? r.bytes.byteOffset - r.gpa
      : NaN;
    const rb = r.bytes.byteOffset;
    const small = this.#origWords && this.#small !== null && r.store === this.#region.store &&
      (rb + r.size <= this.#poolByte || this.#poolByte + this.poolSize <= rb);
    this.#lo = r.gpa;
    this.#hi = r.end;
    this.#kind = small && this.#wasmCopy !== null && this.#origDelta === this.#origDelta ? 1 : 0;
  }

  #inPool(gpa: number): boolean {
    return gpa >= this.poolGpa && gpa < this.poolGpa + this.poolSize;
  }

  // The slot GPA a sync of `bus` touches (and its original in #syncOrig), or -1 for a mapping
  // that did not bounce (force = false). Allocation-free.
  #syncOrig = 0;
  #syncSlot(bus: U64, length: number): number {
    const slotGpa = this.inner.busToGpa(bus);
    if (!this.#inPool(slotGpa)) {
      if (!this.force) return -1;
      throw new DmaMapError("not-mapped", bus, length, this.name, "sync: not a bounce address");
    }
    const orig = this.originalOf(bus);
    if (orig < 0) throw new DmaMapError("not-mapped", bus, length, this.name, "sync: slot free");
    // Linux swiotlb_bounce: a sync may not run past the mapping ("Buffer overflow detected");
    // bytes beyond it belong to other buffers, so refuse instead of copying over them.
    const off = slotGpa - this.poolGpa;
    const left = this.#remain[Math.floor(off / IO_TLB_SIZE)] - (off % IO_TLB_SIZE);
    if (length > left) {
      throw new DmaMapError(
        "not-mapped",
        bus,
        length,
        this.name,
        `sync runs ${length - Math.max(left, 0)} bytes past the end of the mapping`,
      );
    }
    this.#syncOrig = orig;
    return slotGpa;
  }

  #copyBack(slotGpa: number, orig: number, length: number): void {
    if (length <= 0) return;
    const memory = this.#memory;
    if (memory.observer !== null) memory.copy(orig, slotGpa, length);
    else {
      const r = memory.resolve(orig, length);
      this.#copy(r, orig - r.gpa, this.#region, this.#base + (slotGpa - this.poolGpa), length);
    }
    this.#bytesFromSlot += length;
  }

  // Copies the original at `gpa` into the slot at `slotGpa`: GuestMemory.copy with the pool's
  // region known (one resolve); the observer, when set, sees the same calls through copy.
  // Returns the original's region (the pool's region when the observer path resolved it).
  #toSlot(slotGpa: number, gpa: number, length: number): MemoryRegion {
    const memory = this.#memory;
    if (memory.observer !== null) {
      memory.copy(slotGpa, gpa, length);
      return this.#origRegion;
    }
    const r = memory.resolve(gpa, length);
    this.#copy(this.#region, this.#base + (slotGpa - this.poolGpa), r, gpa - r.gpa, length);
    return r;
  }

  // GuestMemory.copy between resolved regions, byte for byte the same result (overlap-safe: a
  // buffer may lie inside the pool's own region). Small aligned copies: a word loop; regions on
  // one backing store: one WebAssembly memory.copy when the store has one (backing.ts), else one
  // copyWithin (no subarray view allocated); otherwise set(subarray) as GuestMemory.copy does.
  #copy(d: MemoryRegion, doff: number, s: MemoryRegion, so: number, length: number): void {
    if (
      length < COPY_LOOP_BELOW && ((doff | so | length) & 3) === 0 && doff < 2 ** 31 &&
      so < 2 ** 31 &&
      (s !== d || so + length <= doff || doff + length <= so)
    ) {
      const dw = d.words, sw = s.words, di = doff >> 2, si = so >> 2, n = length >> 2;
      for (let i = 0; i < n; i++) dw[di + i] = sw[si + i];
    } else if (s.store === d.store) {
      const db = d.bytes.byteOffset + doff, sb = s.bytes.byteOffset + so;
      const wasmCopy = this.#wasmCopy;
      if (wasmCopy !== null) wasmCopy(db, sb, length);
      else this.#backing.copyWithin(db, sb, sb + length);
    } else if (length < COPY_LOOP_BELOW) {
      const db = d.bytes, sbytes = s.bytes;
      for (let i = 0; i < length; i++) db[doff + i] = sbytes[so + i];
    } else d.bytes.set(s.bytes.subarray(so, so + length), doff);
  }

  // Next-fit search for n free slots at a multiple of `stride` inside one segment (a mapping
  // never crosses a segment end), from the rotating index; it wraps, so it fails only when no
  // fit exists in the whole pool.
  #findSlots(n: number, stride: number): number {
    const slots = this.slots;
    const slot = this.#slot;
    const from = this.#index;
    let i = stride === 1 ? from : from + (from & 1); // stride is 1 or 2 (a page)
    for (let tried = 0; tried < slots; tried += stride, i += stride) {
      if (i >= slots) i = 0;
      if (slot[i] !== 0) continue;
      const segEnd = i - (i % IO_TLB_SEGSIZE) + IO_TLB_SEGSIZE;
      const end = i + n;
      if (end > segEnd || end > slots) continue;
      let k = i + 1;
      while (k < end && slot[k] === 0) k++;
      if (k === end) return i;
    }
    return -1;
  }

  // #findSlots(1, 1): the first free slot from the rotating index, wrapping once around the pool
  // (one slot never crosses a segment end).
  #findSlot(): number {
    const slot = this.#slot;
    const slots = this.slots;
    const from = this.#index;
    for (let i = from; i < slots; i++) if (slot[i] === 0) return i;
    for (let i = 0; i < from; i++) if (slot[i] === 0) return i;
    return -1;
  }

  #take(idx: number, n: number, gpa: number, length: number): void {
    const slot = this.#slot;
    for (let k = 0; k < n; k++) {
      slot[idx + k] = k === 0 ? n : SLOT_BODY;
      this.#orig[idx + k] = gpa + k * IO_TLB_SIZE;
      const left = length - k * IO_TLB_SIZE;
      this.#remain[idx + k] = left > 0 ? left : 0;
    }
    this.#used += n;
    if (this.#used > this.#highWater) this.#highWater = this.#used;
    this.#index = idx + n >= this.slots ? 0 : idx + n;
  }

  #release(idx: number): void {
    const n = this.#slot[idx];
    const slot = this.#slot;
    for (let j = idx + n - 1; j >= idx; j--) slot[j] = 0;
    this.#used -= n;
  }
}
