/**
 * Fixed-offset DMA windows: the bus bridge adds a constant to a CPU physical address
 * (DMA_MODES.md M2).
 *
 * One window is Linux's `struct bus_dma_region { cpu_start, dma_start, size }`, built from DT
 * `dma-ranges` (child-bus-address = `dma_start`, parent-bus-address = `cpu_start`) or ACPI `_DMA`:
 * for a GPA `P` in `[cpu_start, cpu_start + size)`, the bus address is
 * `B = dma_start + (P - cpu_start)`, and nothing outside every window is reachable. The same table
 * describes alpha's direct-mapped windows (CIA: 2 GiB of RAM at bus 2 GiB, Titan: 1 GiB at 2 GiB)
 * and POWER's 64-bit direct DMA window at bus 2^63 (QEMU `SPAPR_PCI_DMA64_START`).
 *
 * Exactness: bus addresses are {@link U64}. Windows below 2^53 are handled with plain numbers;
 * a window (or an access) at or above 2^53 takes a bigint cold path that is still exact, so a
 * window at 2^63 translates its first and last byte correctly and faults one byte past either end.
 *
 * @module
 */

import { hex64, toU64, type U64, U64_MAX } from "../memory/u64.ts";
import { type DmaAccess, DmaFault } from "./errors.ts";
import type { DmaAddressSpace, DmaTranslation } from "./types.ts";

/** One DMA window (Linux `bus_dma_region`, DT `dma-ranges` triplet). */
export interface DmaWindow {
  /** First GPA (CPU physical address) the window covers (`cpu_start`). */
  cpuStart: number;
  /** Bus address the device uses for `cpuStart` (`dma_start`), exact u64. */
  busStart: U64;
  /** Window size in bytes, > 0; `cpuStart + size <= 2^52` and `busStart + size <= 2^64`. */
  size: number;
}

/**
 * A validated, immutable table of {@link DmaWindow}s, translating in both directions.
 * The first window containing an address wins (Linux walks the table in order).
 */
export class DmaWindowTable {
  /** The windows, in lookup order. */
  readonly windows: readonly Readonly<DmaWindow>[];
  // Precomputed per window: bus start as a number (or -1 when it is >= 2^53), and as a bigint.
  readonly #busNum: Float64Array;
  readonly #busBig: bigint[];
  readonly #busEndBig: bigint[];
  readonly #cpu: Float64Array;
  readonly #size: Float64Array;

  /**
   * Validates and stores `windows`.
   * @throws RangeError when a window is empty, its CPU range is not exact below 2^52, or its bus
   * range runs past 2^64 - 1.
   */
  constructor(windows: readonly DmaWindow[]) {
    const n = windows.length;
    this.#busNum = new Float64Array(n);
    this.#cpu = new Float64Array(n);
    this.#size = new Float64Array(n);
    this.#busBig = [];
    this.#busEndBig = [];
    const copy: DmaWindow[] = [];
    for (let i = 0; i < n; i++) {
      const w = windows[i];
      if (!Number.isSafeInteger(w.size) || w.size <= 0) {
        throw new RangeError(`window ${i}: size ${w.size} must be a positive safe integer`);
      }
      if (!Number.isSafeInteger(w.cpuStart) || w.cpuStart < 0 || w.cpuStart + w.size > 2 ** 52) {
        throw new RangeError(`window ${i}: cpuStart ${w.cpuStart} + size must be within 2^52`);
      }
      const b = BigInt(w.busStart);
      if (b < 0n || b + BigInt(w.size) - 1n > U64_MAX) {
        throw new RangeError(`window ${i}: bus range ${hex64(w.busStart)} + size passes 2^64`);
      }
      this.#busBig.push(b);
      this.#busEndBig.push(b + BigInt(w.size));
      // A window that starts below 2^53 but ends above it still uses the exact bigint path for
      // bus addresses above 2^53 (they arrive as bigints); numbers below 2^53 stay numeric.
      // Canonical U64 (a bigint below 2^53 becomes a number) so numeric bus addresses match.
      const busStart = toU64(b);
      this.#busNum[i] = typeof busStart === "number" ? busStart : -1;
      this.#cpu[i] = w.cpuStart;
      this.#size[i] = w.size;
      copy.push(Object.freeze({ cpuStart: w.cpuStart, busStart, size: w.size }));
    }
    this.windows = Object.freeze(copy);
  }

  /**
   * {@link DmaWindowTable.physToBus} as a number only: the bus address, -1 when no window covers
   * the range (`physToBus` returns `null`), -2 when the bus address is at or above 2^53.
   */
  physToBusNumber(gpa: number, length: number): number {
    for (let i = 0; i < this.#cpu.length; i++) {
      const off = gpa - this.#cpu[i];
      if (off >= 0 && off < this.#size[i]) {
        if (off + length > this.#size[i]) return -1;
        const bn = this.#busNum[i];
        return bn >= 0 && bn + off + length <= Number.MAX_SAFE_INTEGER ? bn + off : -2;
      }
    }
    return -1;
  }

  /**
   * Driver direction (Linux `translate_phys_to_dma`): the bus address of `[gpa, gpa + length)`.
   * @returns the exact bus address, or `null` when no single window covers the whole range.
   */
  physToBus(gpa: number, length: number): U64 | null {
    for (let i = 0; i < this.#cpu.length; i++) {
      const off = gpa - this.#cpu[i];
      if (off >= 0 && off < this.#size[i]) {
        if (off + length > this.#size[i]) return null; // runs past the window's end
        const bn = this.#busNum[i];
        if (bn >= 0 && bn + off + length <= Number.MAX_SAFE_INTEGER) return bn + off;
        const s = this.#busBig[i] + BigInt(off);
        return s <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(s) : s;
      }
    }
    return null;
  }

  /**
   * Device direction: the GPA of `bus` and how many of `length` bytes stay in its window.
   * Writes into `out`; returns `false` when no window contains `bus`.
   */
  busToPhys(bus: U64, length: number, out: DmaTranslation): boolean {
    if (typeof bus === "number") {
      for (let i = 0; i < this.#cpu.length; i++) {
        const bn = this.#busNum[i];
        if (bn < 0) continue; // starts at or above 2^53: no number reaches it
        const off = bus - bn;
        if (off >= 0 && off < this.#size[i]) {
          const room = this.#size[i] - off;
          out.gpa = this.#cpu[i] + off;
          out.length = length < room ? length : room;
          return true;
        }
      }
      return false;
    }
    return this.#busToPhysBig(bus, length, out);
  }

  // Cold path: a bus address above 2^53 - 1, compared exactly as bigints.
  #busToPhysBig(bus: bigint, length: number, out: DmaTranslation): boolean {
    for (let i = 0; i < this.#cpu.length; i++) {
      if (bus >= this.#busBig[i] && bus < this.#busEndBig[i]) {
        const off = Number(bus - this.#busBig[i]);
        const room = this.#size[i] - off;
        out.gpa = this.#cpu[i] + off;
        out.length = length < room ? length : room;
        return true;
      }
    }
    return false;
  }
}

/**
 * The device's view through fixed-offset windows: a bus address inside a window reaches
 * `cpuStart + (bus - busStart)`; anything else faults `out-of-window`. The translated prefix
 * stops at the window's end (the caller loops; the next byte usually faults).
 */
export class WindowAddressSpace implements DmaAddressSpace {
  /** Layer name for faults. */
  readonly name: string;
  /** The window table. */
  readonly table: DmaWindowTable;

  /**
   * Creates the view.
   * @param windows the windows (or a table already built).
   * @param name layer name, default `"window"`.
   * @throws RangeError for an invalid window (see {@link DmaWindowTable}).
   */
  constructor(windows: readonly DmaWindow[] | DmaWindowTable, name = "window") {
    this.table = windows instanceof DmaWindowTable ? windows : new DmaWindowTable(windows);
    this.name = name;
  }

  /** See {@link DmaAddressSpace.translate}. @throws DmaFault (`out-of-window`, `wrap`) */
  translate(bus: U64, length: number, access: DmaAccess, out: DmaTranslation): void {
    if (this.table.busToPhys(bus, length, out)) return;
    if (typeof bus === "bigint" && bus + BigInt(length) - 1n > U64_MAX) {
      throw new DmaFault("wrap", bus, length, access, this.name, "bus + length passes 2^64");
    }
    throw new DmaFault("out-of-window", bus, length, access, this.name, "no DMA window covers it");
  }
}
