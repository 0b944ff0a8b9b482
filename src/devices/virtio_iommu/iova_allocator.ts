/**
 * The driver's IOVA allocator for the virtio-iommu DMA API mode: first-fit, granule-aligned
 * ranges inside `[low, high]` that never touch a reserved window (RESV_MEM regions of the
 * endpoint, spec §5.13.6.8.1: the driver SHOULD NOT map them). IOVA 0 is never handed out, as
 * Linux's IOVA domains start at one granule.
 *
 * Addresses are numbers (the allocator only hands out IOVAs below 2^53). Control path: it may
 * allocate small arrays.
 *
 * @module
 */

/** A first-fit allocator of aligned IOVA ranges. */
export class ViommuIovaAllocator {
  /** Allocation granule in bytes (power of two). */
  readonly granule: number;
  /** Lowest IOVA that may be handed out. */
  readonly low: number;
  /** Highest IOVA (inclusive) that may be handed out. */
  readonly high: number;
  // Busy ranges [start, end) sorted by start; `owned` is 0 for reserved windows.
  readonly #start: number[] = [];
  readonly #end: number[] = [];
  readonly #owned: number[] = [];

  /**
   * Creates an allocator over `[low, high]`.
   * @param granule power-of-two granule in bytes.
   * @param low lowest usable IOVA (raised to one granule at least).
   * @param high highest usable IOVA, inclusive.
   * @throws RangeError when the granule is not a power of two.
   */
  constructor(granule: number, low: number, high: number) {
    if (!Number.isSafeInteger(granule) || granule <= 0 || !Number.isInteger(Math.log2(granule))) {
      throw new RangeError(`granule ${granule} is not a power of two`);
    }
    this.granule = granule;
    this.low = Math.max(granule, Math.ceil(low / granule) * granule);
    this.high = high;
  }

  /** Marks `[start, end]` (inclusive) as never allocatable (a RESV_MEM region). */
  reserve(start: number, end: number): void {
    this.#insert(start, end + 1, 0);
  }

  /** Live allocations (not counting reserved windows). */
  get live(): number {
    let n = 0;
    for (const o of this.#owned) n += o;
    return n;
  }

  /**
   * Allocates `size` bytes (a multiple of the granule).
   * @returns the first IOVA, or -1 when no gap is large enough.
   */
  alloc(size: number): number {
    const g = this.granule;
    let cur = this.low;
    for (let i = 0; i <= this.#start.length; i++) {
      const limit = i < this.#start.length ? this.#start[i] : this.high + 1;
      if (limit - cur >= size) {
        this.#insertAt(i, cur, cur + size, 1);
        return cur;
      }
      if (i < this.#start.length) {
        const e = this.#end[i];
        if (e > cur) cur = Math.ceil(e / g) * g;
      }
    }
    return -1;
  }

  /** Frees the allocation starting at `start`. @returns false when there is none. */
  free(start: number): boolean {
    const i = this.#find(start);
    if (i < 0 || this.#owned[i] !== 1) return false;
    this.#start.splice(i, 1);
    this.#end.splice(i, 1);
    this.#owned.splice(i, 1);
    return true;
  }

  #find(start: number): number {
    let a = 0, b = this.#start.length;
    while (a < b) {
      const m = (a + b) >>> 1;
      if (this.#start[m] < start) a = m + 1;
      else b = m;
    }
    return a < this.#start.length && this.#start[a] === start ? a : -1;
  }

  #insert(start: number, end: number, owned: number): void {
    let i = 0;
    while (i < this.#start.length && this.#start[i] < start) i++;
    this.#insertAt(i, start, end, owned);
  }

  #insertAt(i: number, start: number, end: number, owned: number): void {
    this.#start.splice(i, 0, start);
    this.#end.splice(i, 0, end);
    this.#owned.splice(i, 0, owned);
  }
}
