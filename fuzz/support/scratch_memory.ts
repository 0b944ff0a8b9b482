/**
 * A reusable guest memory for fuzz targets: allocating and zeroing a fresh `GuestMemory` (a few
 * hundred KiB of `ArrayBuffer`) per run dominated the hostile-driver targets' run time. A
 * {@link ScratchMemory} keeps one memory per target module and, after each run, zeroes exactly
 * the bytes the run may have dirtied: a fixed low range (the ring areas, indirect tables and raw
 * overlays a target writes) plus every bulk write recorded with {@link ScratchMemory.noteWrite}
 * (the device's payload copies, seen through `GuestMemory.observer`). Ring views of a device
 * queue only cover ring areas, which lie inside the fixed range, so every run starts from
 * all-zero memory, exactly as with a fresh allocation (`tests/fuzz/fuzz_scratch_memory_test.ts`).
 * @module
 */

import { GuestMemory, type MemoryRegionSpec } from "../../src/memory/mod.ts";

/** One guest memory reused across runs, cleaned to all-zero after each. */
export class ScratchMemory {
  /** The memory a run uses; all-zero and without observer when a run starts. */
  readonly memory: GuestMemory;
  readonly #fixedEnd: number;
  readonly #dirty: number[] = [];

  /**
   * @param regions the memory map (as for `new GuestMemory`).
   * @param fixedDirtyEnd GPA below which a run may write anything (zeroed after every run).
   */
  constructor(regions: readonly MemoryRegionSpec[], fixedDirtyEnd: number) {
    this.memory = new GuestMemory(regions);
    this.#fixedEnd = fixedDirtyEnd;
  }

  /** Records a bulk write of `length` bytes at `gpa` (to be zeroed by {@link clean}). */
  noteWrite(gpa: number, length: number): void {
    this.#dirty.push(gpa, length);
  }

  /** Zeroes the fixed range and every noted write, and removes the observer. */
  clean(): void {
    this.memory.observer = null;
    this.#zero(0, this.#fixedEnd);
    const d = this.#dirty;
    for (let i = 0; i < d.length; i += 2) this.#zero(d[i], d[i] + d[i + 1]);
    d.length = 0;
  }

  /** True when every byte is zero (for tests; O(memory size)). */
  isClean(): boolean {
    return this.memory.regions.every((r) => r.bytes.every((b) => b === 0));
  }

  #zero(start: number, end: number): void {
    for (const r of this.memory.regions) {
      const s = Math.max(start, r.gpa), e = Math.min(end, r.end);
      if (s < e) r.bytes.fill(0, s - r.gpa, e - r.gpa);
    }
  }
}
