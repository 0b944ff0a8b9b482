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
import {
  formatBdf,
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
