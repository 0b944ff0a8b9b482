/**
 * A device's DMA view behind a captured Intel vIOMMU: a {@link DmaAddressSpace} whose every
 * translation is a fresh {@link vtdWalk} over the captured pages (no IOTLB: the inspector is a
 * cold path, and a capture has no invalidation history). The inspector's views call it at every
 * address use (ring areas, indirect tables, buffers), exactly as they call the identity space for
 * GPA rings.
 *
 * A walk that stops throws {@link VtdTranslationFault} (a {@link DmaFault} that keeps the walk)
 * and is logged in {@link VtdAddressSpace.stops}, so the inspector can report the IOVA and the
 * level (`IOVA_UNTRANSLATED`) or, when a table page was not captured, a capture limit.
 *
 * @module
 */

import { GUEST_PAGE_SIZE, type GuestMemory } from "../memory/guest_memory.ts";
import type { U64 } from "../memory/u64.ts";
import { DMA_ACCESS_WRITE, type DmaAccess, DmaFault } from "../dma/errors.ts";
import type { DmaAddressSpace, DmaTranslation } from "../dma/types.ts";
import type { Fixture, FixtureQueue } from "./fixture.ts";
import {
  formatBdf,
  parseBdf,
  type VtdPageSource,
  vtdWalk,
  type VtdWalkOk,
  type VtdWalkResult,
  type VtdWalkStop,
} from "./vtd_walk.ts";

/** A {@link DmaFault} raised by a VT-d walk that stopped; `walk` says where and why. */
export class VtdTranslationFault extends DmaFault {
  /** The stopped walk (structure, level, reason, every level visited). */
  readonly walk: VtdWalkStop;
  /**
   * Creates the fault.
   * @param walk the stopped walk.
   * @param length access length in bytes.
   * @param access attempted access bits.
   * @param layer address-space name.
   */
  constructor(walk: VtdWalkStop, length: number, access: DmaAccess, layer: string) {
    const reason = walk.reason === "beyond-address-width" ? "out-of-window" : "unmapped";
    super(reason, walk.iova, length, access, layer, walk.message);
    this.name = "VtdTranslationFault";
    this.walk = walk;
  }
}

/**
 * A page source over a {@link GuestMemory} made of captured pages: a page exists when the memory
 * holds all 4096 bytes of it.
 */
export function memoryPageSource(memory: GuestMemory): VtdPageSource {
  return (gpa: bigint) => {
    if (gpa > BigInt(Number.MAX_SAFE_INTEGER)) return undefined;
    const g = Number(gpa);
    const r = memory.regionAt(g);
    if (r === undefined || g + GUEST_PAGE_SIZE > r.end) return undefined;
    return r.bytes.subarray(g - r.gpa, g - r.gpa + GUEST_PAGE_SIZE);
  };
}

/** The device view of one PCI function behind a captured VT-d. */
export class VtdAddressSpace implements DmaAddressSpace {
  /** Layer name, `vt-d(BB:DD.F)`. */
  readonly name: string;
  /** RTADDR_REG value. */
  readonly rtaddr: bigint;
  /** Requester id. */
  readonly sourceId: number;
  /** Every walk that stopped, in order (cleared by the caller when it wants per-chain results). */
  readonly stops: VtdWalkStop[] = [];
  #source: VtdPageSource;

  /**
   * Creates the view of one requester.
   * @param rtaddr Root Table Address register value.
   * @param sourceId requester id `bus << 8 | devfn`.
   * @param source captured pages.
   */
  constructor(rtaddr: bigint, sourceId: number, source: VtdPageSource) {
    this.rtaddr = rtaddr;
    this.sourceId = sourceId;
    this.#source = source;
    this.name = `vt-d(${formatBdf(sourceId)})`;
  }

  /** Walks one IOVA (no fault thrown, nothing logged). */
  walk(iova: bigint): VtdWalkResult {
    return vtdWalk({ rtaddr: this.rtaddr, sourceId: this.sourceId, iova }, this.#source);
  }

  /**
   * See {@link DmaAddressSpace.translate}: the prefix inside the IOVA's leaf page, extended over
   * following pages while they stay GPA-contiguous with the same permissions.
   * @throws VtdTranslationFault when the first byte does not translate (logged in `stops`).
   * @throws DmaFault `permission` when the leaf does not allow the access; `wrap` past 2^64.
   */
  translate(bus: U64, length: number, access: DmaAccess, out: DmaTranslation): void {
    const iova = BigInt(bus);
    if (iova + BigInt(length) > 1n << 64n) {
      throw new DmaFault("wrap", bus, length, access, this.name);
    }
    const first = this.#walkOrThrow(iova, length, access);
    const gpa = first.gpa;
    if (gpa + BigInt(length) > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new DmaFault("out-of-window", bus, length, access, this.name, "GPA beyond 2^53");
    }
    let done = Number(first.pageGpa + BigInt(first.pageSize) - gpa);
    while (done < length) {
      const next = this.walk(iova + BigInt(done));
      if (!next.ok || next.gpa !== gpa + BigInt(done) || !allows(next, access)) break;
      done += next.pageSize;
    }
    out.gpa = Number(gpa);
    out.length = Math.min(done, length);
  }

  #walkOrThrow(iova: bigint, length: number, access: DmaAccess): VtdWalkOk {
    const r = this.walk(iova);
    if (!r.ok) {
      this.stops.push(r);
      throw new VtdTranslationFault(r, length, access, this.name);
    }
    if (!allows(r, access)) {
      throw new DmaFault(
        "permission",
        iova,
        length,
        access,
        this.name,
        `page ${"0x" + r.pageGpa.toString(16)} is ${r.read ? "R" : "-"}${r.write ? "W" : "-"}`,
      );
    }
    return r;
  }
}

function allows(r: VtdWalkOk, access: DmaAccess): boolean {
  if ((access & DMA_ACCESS_WRITE) !== 0 && !r.write) return false;
  if ((access & ~DMA_ACCESS_WRITE) !== 0 && !r.read) return false;
  return true;
}

/**
 * The DMA view a fixture queue's addresses need: a {@link VtdAddressSpace} over the captured
 * pages when the queue's addresses are IOVAs, else `undefined` (identity: addresses are GPAs).
 * `loadFixture` has already checked that such a queue has a `bdf` and the fixture an `iommu`.
 */
export function fixtureDmaSpace(fx: Fixture, q: FixtureQueue): VtdAddressSpace | undefined {
  if (!q.addressesAreIova || fx.iommu === undefined || q.sourceId === undefined) return undefined;
  return new VtdAddressSpace(fx.iommu.rtaddr, q.sourceId, memoryPageSource(fx.memory));
}

/** One entry of a capture's `iova_to_gpa` map that the walk does not confirm. */
export interface IovaMapDifference {
  /** Device function. */
  bdf: string;
  /** The IOVA. */
  iova: bigint;
  /** What the capture tool wrote. */
  capture: bigint;
  /** What the walk gives: a GPA, or where it stopped. */
  walk: bigint | string;
}

/**
 * Cross-checks the capture tool's `iova_to_gpa` map against the inspector's own walk of the
 * captured tables. The inspector never uses the map to translate; it reports where they differ.
 * @returns the entries checked and the differences.
 */
export function crossCheckIovaMap(
  fx: Fixture,
): { checked: number; differences: IovaMapDifference[] } {
  const differences: IovaMapDifference[] = [];
  let checked = 0;
  if (fx.iommu === undefined) return { checked, differences };
  const source = memoryPageSource(fx.memory);
  for (const [bdf, m] of fx.iommu.iovaToGpa) {
    const sourceId = parseBdf(bdf);
    for (const [iova, gpa] of m) {
      checked++;
      if (sourceId === null) {
        differences.push({ bdf, iova, capture: gpa, walk: "not a PCI address" });
        continue;
      }
      let r: VtdWalkResult;
      try {
        r = vtdWalk({ rtaddr: fx.iommu.rtaddr, sourceId, iova }, source);
      } catch (e) {
        differences.push({ bdf, iova, capture: gpa, walk: (e as Error).message });
        continue;
      }
      if (!r.ok) differences.push({ bdf, iova, capture: gpa, walk: r.message });
      else if (r.gpa !== gpa) differences.push({ bdf, iova, capture: gpa, walk: r.gpa });
    }
  }
  return { checked, differences };
}
