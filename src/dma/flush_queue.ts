/**
 * The lazy-invalidation flush queue of Linux dma-iommu (DMA_MODES.md §2.3): an unmap clears the
 * page table at once but defers the IOTLB invalidation and the release of the IOVA. Entries are
 * flushed in one batch (a domain-wide IOTLB flush, then every queued IOVA is freed) when the
 * queue is full (`IOVA_DEFAULT_FQ_SIZE` = 256 entries) or when its timer expires
 * (`IOVA_DEFAULT_FQ_TIMEOUT` = 10 ms, armed by the first entry queued after a flush; single-queue
 * mode uses 32768 entries / 1000 ms).
 *
 * Until the flush, the device may still reach the old page through a stale IOTLB entry: that is
 * the window a fuzz oracle must be able to see ({@link FlushQueue.containsPfn}).
 *
 * Time comes from an injected {@link Clock}; nothing sleeps: the owner calls
 * {@link FlushQueue.poll} on every operation (and tests call it after advancing a fake clock).
 *
 * @module
 */

import { type Clock, TICK_CLOCK, TICK_CLOCK_READS } from "./clock.ts";

/** Linux `IOVA_DEFAULT_FQ_SIZE`: entries per flush queue. */
export const IOVA_DEFAULT_FQ_SIZE = 256;
/** Linux `IOVA_DEFAULT_FQ_TIMEOUT`: milliseconds before a timed flush. */
export const IOVA_DEFAULT_FQ_TIMEOUT = 10;
/** Linux `IOVA_SINGLE_FQ_SIZE` (single-queue mode for virtualised IOMMUs). */
export const IOVA_SINGLE_FQ_SIZE = 32768;
/** Linux `IOVA_SINGLE_FQ_TIMEOUT` in milliseconds. */
export const IOVA_SINGLE_FQ_TIMEOUT = 1000;

/** Options of a {@link FlushQueue}. */
export interface FlushQueueOptions {
  /** Ring size, default 256; it holds `size - 1` entries before a forced flush (Linux `fq_full`). */
  size?: number;
  /** Milliseconds from arming to a timed flush, default 10. */
  timeoutMs?: number;
  /** Time source, default {@link TICK_CLOCK} (inject a `FakeClock` in tests). */
  clock?: Clock;
}

/** Counters of a {@link FlushQueue}. */
export interface FlushQueueStats {
  /** Entries queued. */
  queued: number;
  /** Flushes because the queue was full. */
  fullFlushes: number;
  /** Flushes because the timer expired. */
  timeoutFlushes: number;
  /** Flushes requested explicitly. */
  explicitFlushes: number;
}

/**
 * A flush queue of deferred IOVA releases. `onFlush` performs the IOTLB invalidation and frees
 * each queued range; the queue is empty afterwards.
 */
export class FlushQueue {
  /** Capacity in entries. */
  readonly size: number;
  /** Timer period in milliseconds. */
  readonly timeoutMs: number;
  /** The time source. */
  readonly clock: Clock;
  /** Counters. */
  readonly stats: FlushQueueStats = {
    queued: 0,
    fullFlushes: 0,
    timeoutFlushes: 0,
    explicitFlushes: 0,
  };
  readonly #pfn: Float64Array;
  readonly #pages: Float64Array;
  #count = 0;
  // Entries the queue holds before a push flushes it first (Linux `fq_full`): size - 1, at least 1.
  readonly #cap: number;
  #armedAt = -1;
  readonly #onFlush: (fq: FlushQueue) => void;
  // Timer checks (poll, and the one in push) count #tick down; the check that takes it to 0 is
  // the real one (#check: re-arms the count, reads the clock when the timer is armed). With the
  // default TICK_CLOCK (and a timeout above 0) the count is TICK_CLOCK_READS: the queue keeps
  // TICK_CLOCK's own contract (the real clock read once every TICK_CLOCK_READS timer checks, so a
  // timed flush comes at most TICK_CLOCK_READS - 1 checks late) with no call per check, and a
  // check is one decrement, armed or not (Linux reads no clock per unmap either: queue_iova arms
  // the timer once, fq_timer_on, and the timer fires on its own). Any other clock: the count is
  // 1, so every check is a real one and reads the clock whenever the timer is armed.
  readonly #coarse: boolean;
  readonly #period: number;
  #tick: number;

  /**
   * Creates an empty queue.
   * @param onFlush called with the queue before it is emptied: invalidate, then free each entry.
   * @throws RangeError for a size below 1 or a negative timeout.
   */
  constructor(onFlush: (fq: FlushQueue) => void, options: FlushQueueOptions = {}) {
    this.size = options.size ?? IOVA_DEFAULT_FQ_SIZE;
    this.timeoutMs = options.timeoutMs ?? IOVA_DEFAULT_FQ_TIMEOUT;
    if (!Number.isInteger(this.size) || this.size < 1) throw new RangeError("fq size must be >= 1");
    if (!(this.timeoutMs >= 0)) throw new RangeError("fq timeout must be >= 0 ms");
    this.clock = options.clock ?? TICK_CLOCK;
    this.#coarse = this.clock === TICK_CLOCK && this.timeoutMs > 0;
    this.#period = this.#coarse ? TICK_CLOCK_READS : 1;
    this.#tick = this.#period;
    this.#cap = Math.max(1, this.size - 1);
    this.#pfn = new Float64Array(this.size);
    this.#pages = new Float64Array(this.size);
    this.#onFlush = onFlush;
  }

  /** Entries waiting for the flush. */
  get length(): number {
    return this.#count;
  }
  /** First PFN of queued entry `i` (0 <= i < length). */
  pfn(i: number): number {
    return this.#pfn[i];
  }
  /** Pages of queued entry `i`. */
  pages(i: number): number {
    return this.#pages[i];
  }
  /**
   * The array of queued first PFNs: entry `i`'s at index `i` for `0 <= i < length` (what
   * {@link FlushQueue.pfn} reads), for a batch consumer such as dma-iommu's flush. Read only:
   * writing it corrupts the queue.
   */
  get pfnArray(): Float64Array {
    return this.#pfn;
  }
  /** The array of queued page counts, as {@link FlushQueue.pfnArray} (read only). */
  get pagesArray(): Float64Array {
    return this.#pages;
  }
  /** True when `pfn` lies in a queued (unmapped, not yet invalidated) range. */
  containsPfn(pfn: number): boolean {
    for (let i = 0; i < this.#count; i++) {
      if (pfn >= this.#pfn[i] && pfn < this.#pfn[i] + this.#pages[i]) return true;
    }
    return false;
  }
  /** Time at which the timer will fire, or -1 when it is not armed. */
  get deadline(): number {
    return this.#armedAt < 0 ? -1 : this.#armedAt + this.timeoutMs;
  }

  /**
   * Queues a deferred release (Linux `queue_iova`). Flushes first if the timer has expired. Like
   * Linux's ring (`fq_full`: `(tail + 1) & mask == head`) the queue holds `size - 1` entries: when
   * it is full, the queued entries are flushed first and the new one is then queued, so the
   * newest unmap always keeps its stale window until the next flush.
   * @returns `true` when a flush happened.
   */
  push(pfn: number, pages: number): boolean {
    // the timer check first (poll, inline), then the full check, the store and the arming; the
    // timer is armed exactly when the queue holds entries (every flush empties and disarms it),
    // so a push onto an empty queue arms it
    const flushed = --this.#tick > 0 ? false : this.#check();
    const i = this.#count;
    if (i >= this.#cap) return this.#pushFull(pfn, pages);
    this.#pfn[i] = pfn;
    this.#pages[i] = pages;
    this.#count = i + 1;
    this.stats.queued++;
    if (i === 0) this.#arm();
    return flushed;
  }

  // push onto a full queue: the forced flush, then the entry (the timer check already ran).
  #pushFull(pfn: number, pages: number): boolean {
    this.stats.fullFlushes++;
    this.#flush();
    const i = this.#count;
    this.#pfn[i] = pfn;
    this.#pages[i] = pages;
    this.#count = i + 1;
    this.stats.queued++;
    this.#arm(); // the flush emptied and disarmed the queue
    return true;
  }

  // Arms the timer (a push onto an empty queue) unless it is armed already.
  #arm(): void {
    if (this.#armedAt < 0) this.#armedAt = this.#coarse ? performance.now() : this.clock.now();
  }

  /** Runs the timer: flushes when it is armed and expired. @returns `true` when it flushed. */
  poll(): boolean {
    if (--this.#tick > 0) return false;
    return this.#check();
  }

  // The real timer check: re-arms the count; reads the clock when the timer is armed, flushes
  // when the timeout has passed.
  #check(): boolean {
    this.#tick = this.#period;
    if (this.#armedAt < 0) return false;
    const now = this.#coarse ? performance.now() : this.clock.now();
    if (now - this.#armedAt >= this.timeoutMs) {
      this.stats.timeoutFlushes++;
      this.#flush();
      return true;
    }
    return false;
  }

  /** Flushes now (e.g. before reporting IOVA exhaustion). @returns `true` if anything was queued. */
  flush(): boolean {
    if (this.#count === 0) return false;
    this.stats.explicitFlushes++;
    this.#flush();
    return true;
  }

  #flush(): void {
    this.#armedAt = -1;
    if (this.#count === 0) return;
    this.#onFlush(this);
    this.#count = 0;
  }
}
