/**
 * Composition of device views: a bus address goes through one translation stage, then another.
 *
 * Platforms stack translations: a POWER PHB window in front of TCE tables, a bridge offset in
 * front of an IOMMU, nested (two-stage) IOMMUs, a vIOMMU in front of a host IOMMU. A filter such
 * as the confidential-guest check is a composition too (see `confidential.ts`).
 *
 * @module
 */

import type { U64 } from "../memory/u64.ts";
import type { DmaAccess } from "./errors.ts";
import { type DmaAddressSpace, DmaTranslation } from "./types.ts";
import type { DmaWindowTable } from "./window.ts";

/**
 * `lower(upper(bus))`: `upper` turns the bus address into an intermediate address, `lower` turns
 * that into a GPA. The prefix is the shorter of the two stages'. Allocation-free (one scratch
 * translation per instance).
 */
export class StackedAddressSpace implements DmaAddressSpace {
  /** Layer name, default `"<upper>+<lower>"`. */
  readonly name: string;
  /** First stage (closest to the device). */
  readonly upper: DmaAddressSpace;
  /** Second stage (closest to memory). */
  readonly lower: DmaAddressSpace;
  readonly #mid = new DmaTranslation();

  /**
   * Creates the composition.
   * @param upper first stage.
   * @param lower second stage.
   * @param name layer name.
   */
  constructor(upper: DmaAddressSpace, lower: DmaAddressSpace, name?: string) {
    this.upper = upper;
    this.lower = lower;
    this.name = name ?? `${upper.name}+${lower.name}`;
  }

  /** See {@link DmaAddressSpace.translate}. @throws DmaFault from either stage. */
  translate(bus: U64, length: number, access: DmaAccess, out: DmaTranslation): void {
    const mid = this.#mid;
    this.upper.translate(bus, length, access, mid);
    this.lower.translate(mid.gpa, mid.length, access, out);
  }
}

/**
 * A direct-mapped window in front of a second view, as alpha chipsets do (DMA_MODES.md §2.3,
 * alpha `pci_map_single_1`: the direct window when the buffer fits, else the scatter-gather
 * IOMMU window): a bus address inside one of `windows` translates by offset; any other goes to
 * `fallback` (e.g. an IOMMU endpoint whose IOVAs lie outside the windows).
 */
export class WindowOrAddressSpace implements DmaAddressSpace {
  /** Layer name, default `"window|<fallback>"`. */
  readonly name: string;
  /** The direct windows. */
  readonly windows: DmaWindowTable;
  /** Where bus addresses outside every window go. */
  readonly fallback: DmaAddressSpace;

  /**
   * Creates the view.
   * @param windows direct windows (bus = window base + (GPA - CPU base)).
   * @param fallback the view for every other bus address.
   * @param name layer name.
   */
  constructor(windows: DmaWindowTable, fallback: DmaAddressSpace, name?: string) {
    this.windows = windows;
    this.fallback = fallback;
    this.name = name ?? `window|${fallback.name}`;
  }

  /** See {@link DmaAddressSpace.translate}. @throws DmaFault from the fallback. */
  translate(bus: U64, length: number, access: DmaAccess, out: DmaTranslation): void {
    if (this.windows.busToPhys(bus, length, out)) return;
    this.fallback.translate(bus, length, access, out);
  }
}
