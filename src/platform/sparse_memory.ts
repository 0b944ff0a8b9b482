/**
 * Sparse guest memory for topology runs: a topology may describe terabytes of RAM, but a run
 * touches a few pages. {@link SparseGuestMemory} backs only the 2 MiB chunks that are touched,
 * filled with a background pattern so that a device reading the wrong GPA sees bytes that differ
 * from the driver's data. Holes in the topology's memory map are never backed, so an access there
 * is a `MemoryFault` (QEMU: unassigned memory, "Cannot map").
 *
 * @module
 */

import type { U64 } from "../memory/u64.ts";
import { GuestMemory } from "../memory/guest_memory.ts";
import type { DmaAccess } from "../dma/errors.ts";
import type { DmaAddressSpace, DmaTranslation } from "../dma/types.ts";

/** Size of one backed chunk: 2 MiB. */
export const SPARSE_CHUNK = 2 * 1024 * 1024;
/** Byte every freshly backed page holds (distinct from the run's data patterns). */
export const BACKGROUND_BYTE = 0x00;

/** One range of a topology's memory map. */
export interface SparseRange {
  /** First GPA. */
  gpa: number;
  /** Bytes. */
  size: number;
  /** `ram`, `rom` or `mmio`. */
  kind: string;
  /** Confidential-guest private memory. */
  private: boolean;
  /** Label. */
  name: string;
}

/** Guest memory whose regions are created on first touch, inside the described ranges only. */
export class SparseGuestMemory {
  /** The backing {@link GuestMemory} (regions appear as chunks are touched). */
  readonly memory: GuestMemory = new GuestMemory();
  /** The described ranges. */
  readonly ranges: readonly SparseRange[];

  /** Creates an empty sparse memory over a memory map.
   * @param ranges the memory map (non-overlapping, page aligned). */
  constructor(ranges: readonly SparseRange[]) {
    this.ranges = ranges;
  }

  /** The described range containing `gpa`, or `undefined` for a hole. */
  rangeAt(gpa: number): SparseRange | undefined {
    return this.ranges.find((r) => gpa >= r.gpa && gpa < r.gpa + r.size);
  }

  /**
   * Backs every chunk overlapping `[gpa, gpa + length)` that lies in a described range.
   * @returns true when the whole span is described memory (and now backed).
   */
  ensure(gpa: number, length: number): boolean {
    if (!Number.isSafeInteger(gpa) || gpa < 0 || length <= 0) return false;
    const end = gpa + length;
    let covered = 0;
    for (const r of this.ranges) {
      const lo = Math.max(gpa, r.gpa), hi = Math.min(end, r.gpa + r.size);
      if (lo >= hi) continue;
      covered += hi - lo;
      // Back the whole span as one region when none of it is backed yet, so that an access
      // spanning several chunks stays inside one region.
      const cs = Math.max(r.gpa, Math.floor(lo / SPARSE_CHUNK) * SPARSE_CHUNK);
      const ce = Math.min(r.gpa + r.size, Math.ceil(hi / SPARSE_CHUNK) * SPARSE_CHUNK);
      if (!this.memory.regions.some((g) => g.gpa < ce && cs < g.end)) {
        this.#add(r, cs, ce);
        continue;
      }
      for (let c = Math.floor(lo / SPARSE_CHUNK) * SPARSE_CHUNK; c < hi; c += SPARSE_CHUNK) {
        const s = Math.max(c, r.gpa), e = Math.min(c + SPARSE_CHUNK, r.gpa + r.size);
        if (this.memory.regionAt(s)) continue;
        this.#add(r, s, e);
      }
    }
    return covered === length;
  }

  #add(r: SparseRange, s: number, e: number): void {
    const reg = this.memory.addRegion({
      gpa: s,
      size: e - s,
      private: r.private,
      name: `${r.name}+0x${(s - r.gpa).toString(16)}`,
    });
    if (BACKGROUND_BYTE !== 0) reg.bytes.fill(BACKGROUND_BYTE);
  }

  /** Whether `gpa` is private (confidential) memory, backing it first. */
  isPrivate(gpa: number): boolean {
    this.ensure(gpa, 1);
    const reg = this.memory.regionAt(gpa);
    return reg ? reg.private : (this.rangeAt(gpa)?.private ?? false);
  }

  /** Marks the backed pages of `[gpa, gpa + length)` shared (Linux `set_memory_decrypted`). */
  share(gpa: number, length: number): void {
    this.ensure(gpa, length);
    for (const reg of this.memory.regions) {
      if (reg.gpa < gpa + length && gpa < reg.end) reg.private = false;
    }
  }
}

/**
 * Device-side wrapper that backs the GPAs its inner space produces (when they are described
 * memory), so that the ring code can then access them. Cold path: topology runs only.
 */
export class BackingAddressSpace implements DmaAddressSpace {
  /** Same name as the inner space (the wrapper is not a layer of the platform). */
  readonly name: string;
  /**
   * Wraps the device's view.
   * @param inner the device's real view.
   * @param sparse the memory to back.
   */
  constructor(readonly inner: DmaAddressSpace, readonly sparse: SparseGuestMemory) {
    this.name = inner.name;
  }
  /** Translates through `inner`, then backs the result. */
  translate(bus: U64, length: number, access: DmaAccess, out: DmaTranslation): void {
    this.inner.translate(bus, length, access, out);
    this.sparse.ensure(out.gpa, out.length);
  }
}
