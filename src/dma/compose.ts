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
