/**
 * A driver DMA API that tries one path and falls back to another, as alpha's
 * `pci_map_single_1` does (DMA_MODES.md §2.3): the direct-mapped window when the buffer fits
 * (`window` / `mask` refusals from dma-direct), else the scatter-gather IOMMU. Unmap and sync go
 * to whichever path owns the bus address: inside the primary's windows it is the primary's.
 *
 * @module
 */

import type { U64 } from "../memory/u64.ts";
import type { DirectDmaApi, ReversibleDmaApi } from "./direct_api.ts";
import { DmaMapError } from "./errors.ts";
import { type DmaDirection, hasUnmapPage } from "./types.ts";

/** dma-direct through windows first, another API (an IOMMU) for what does not fit. */
export class FallbackDmaApi implements ReversibleDmaApi {
  /** Mode name. */
  readonly name: string;
  /** The direct path (with windows). */
  readonly primary: DirectDmaApi;
  /** The path for buffers the direct path refuses. */
  readonly secondary: ReversibleDmaApi;
  /** Counters: maps that went direct / to the fallback. */
  readonly stats = { direct: 0, fallback: 0 };

  /**
   * Creates the API.
   * @param primary dma-direct with `windows` (bus addresses outside them belong to `secondary`).
   * @param secondary the fallback API.
   * @param name mode name, default `"window-iommu"`.
   */
  constructor(primary: DirectDmaApi, secondary: ReversibleDmaApi, name = "window-iommu") {
    this.primary = primary;
    this.secondary = secondary;
    this.name = name;
  }

  /** Maps through the window, else the fallback. @throws DmaMapError from the fallback. */
  map(gpa: number, length: number, dir: DmaDirection): U64 {
    return this.#either(gpa, length, dir, false);
  }
  /** Coherent mapping: window first, else the fallback. @throws DmaMapError */
  mapCoherent(gpa: number, length: number): U64 {
    return this.#either(gpa, length, 0, true);
  }

  /**
   * {@link DmaApi.mapNumber}: the same choice as `map` (window when it accepts the buffer, else
   * the fallback), the bus address as a number; -1 with nothing mapped when the chosen path has
   * no number for it (a window bus address at or above 2^53, a fallback without `mapNumber`), so
   * the caller's `map` then takes the same path. Window bus addresses sit at 2 GiB and up: as a
   * number-only call that V8 can inline, no heap number is made per buffer.
   * @throws DmaMapError as `map`.
   */
  mapNumber(gpa: number, length: number, dir: DmaDirection): number {
    // `+`: the out-of-line call's result typed as a number, so it merges with the window's
    // double unboxed (an untyped call result would make the merge box the window's bus address)
    if (!this.primary.accepts(gpa, length)) return +this.#fallbackNumber(gpa, length, dir);
    const bus = this.primary.mapNumber(gpa, length, dir);
    if (bus >= 0) this.stats.direct++;
    return bus;
  }

  #fallbackNumber(gpa: number, length: number, dir: DmaDirection): number {
    const s = this.secondary;
    if (s.mapNumber === undefined) return -1;
    this.stats.fallback++; // counted before the call, as `map` counts it (also when it throws)
    const bus = s.mapNumber(gpa, length, dir);
    if (bus < 0) this.stats.fallback--; // nothing mapped: the caller's `map` counts it
    return bus;
  }

  #either(gpa: number, length: number, dir: DmaDirection, coherent: boolean): U64 {
    // A buffer outside the window goes straight to the secondary: building and catching the
    // primary's DmaMapError cost ~70% of a window-iommu round trip (profiled).
    if (!this.primary.accepts(gpa, length)) {
      this.stats.fallback++;
      return coherent
        ? this.secondary.mapCoherent(gpa, length)
        : this.secondary.map(gpa, length, dir);
    }
    try {
      const bus = coherent
        ? this.primary.mapCoherent(gpa, length)
        : this.primary.map(gpa, length, dir);
      this.stats.direct++;
      return bus;
    } catch (e) {
      if (!(e instanceof DmaMapError) || (e.reason !== "window" && e.reason !== "mask")) throw e;
    }
    this.stats.fallback++;
    return coherent
      ? this.secondary.mapCoherent(gpa, length)
      : this.secondary.map(gpa, length, dir);
  }

  #direct(bus: U64): boolean {
    return this.primary.busToGpa(bus) >= 0;
  }

  /** Unmaps on the path that owns `bus`. @throws DmaMapError `not-mapped` (fallback). */
  unmap(bus: U64, length: number, dir: DmaDirection): void {
    if (!this.#direct(bus)) this.secondary.unmap(bus, length, dir);
  }
  /**
   * {@link DmaApi.unmapPage}: `unmap` of `pfn * 4096 + offset` on the path that owns it, the
   * address passed on as page number and offset when the fallback takes that form.
   * @throws DmaMapError `not-mapped` (fallback).
   */
  unmapPage(pfn: number, offset: number, length: number, dir: DmaDirection): void {
    if (this.primary.busToGpa(pfn * 4096 + offset) >= 0) return;
    const s = this.secondary;
    if (hasUnmapPage(s)) s.unmapPage!(pfn, offset, length, dir);
    else s.unmap(pfn * 4096 + offset, length, dir);
  }
  /** Ends a coherent mapping on its path. @throws DmaMapError `not-mapped` (fallback). */
  unmapCoherent(bus: U64, length: number): void {
    if (!this.#direct(bus)) this.secondary.unmapCoherent(bus, length);
  }
  /** Sync on the owning path. @throws DmaMapError `not-mapped` (fallback). */
  syncForCpu(bus: U64, length: number, dir: DmaDirection): void {
    if (!this.#direct(bus)) this.secondary.syncForCpu(bus, length, dir);
  }
  /** Sync on the owning path. @throws DmaMapError `not-mapped` (fallback). */
  syncForDevice(bus: U64, length: number, dir: DmaDirection): void {
    if (!this.#direct(bus)) this.secondary.syncForDevice(bus, length, dir);
  }
  /** GPA behind `bus` on its path, or -1. */
  busToGpa(bus: U64): number {
    const g = this.primary.busToGpa(bus);
    return g >= 0 ? g : this.secondary.busToGpa(bus);
  }
}
