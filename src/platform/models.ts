/**
 * Platform-specific DMA pieces that `src/dma/` does not provide, built only from its interfaces:
 * - {@link XenGrantDmaApi} / {@link XenGrantAddressSpace}: Xen grant DMA (M7,
 *   `B = 1<<63 | gref<<12 | offset`, linux drivers/xen/grant-dma-ops.c) and a back-end that maps
 *   grants;
 * - {@link FaultingAddressSpace}: a device side that cannot translate at all (a vhost back-end
 *   with ACCESS_PLATFORM but without device-IOTLB support, EDGE_CASES E8).
 *
 * @module
 */

import type { U64 } from "../memory/u64.ts";
import { type DmaAccess, DmaFault, type DmaFaultReason, DmaMapError } from "../dma/errors.ts";
import type { ReversibleDmaApi } from "../dma/direct_api.ts";
import type { DmaAddressSpace, DmaDirection, DmaTranslation } from "../dma/types.ts";

const GRANT_BIT = 1n << 63n;

/** Xen grant DMA (M7): every page gets a grant reference; the bus address encodes it. */
export class XenGrantDmaApi implements ReversibleDmaApi {
  /** Mode name, `"xen-grant"`. */
  readonly name = "xen-grant";
  /** Live grants: reference -> GPA of the granted page. */
  readonly grants: Map<number, number> = new Map();
  #next = 1;
  /** Grants the pages of the buffer; returns `1<<63 | gref<<12 | offset`. */
  map(gpa: number, length: number, _dir: DmaDirection): U64 {
    const off = gpa % 4096;
    const n = Math.max(1, Math.ceil((off + length) / 4096));
    const first = this.#next;
    for (let i = 0; i < n; i++) this.grants.set(this.#next++, gpa - off + i * 4096);
    return GRANT_BIT | (BigInt(first) << 12n) | BigInt(off);
  }
  /** Revokes the grants of a mapping. @throws DmaMapError `not-mapped` */
  unmap(bus: U64, length: number, _dir: DmaDirection): void {
    const b = BigInt(bus);
    const gref = Number((b & ~GRANT_BIT) >> 12n);
    if ((b & GRANT_BIT) === 0n || !this.grants.has(gref)) {
      throw new DmaMapError("not-mapped", bus, length, this.name);
    }
    const n = Math.max(1, Math.ceil((Number(b & 0xfffn) + length) / 4096));
    for (let i = 0; i < n; i++) this.grants.delete(gref + i);
  }
  /** No-op (grants are coherent). */
  syncForCpu(): void {}
  /** No-op. */
  syncForDevice(): void {}
  /** Grants long-lived memory the same way. */
  mapCoherent(gpa: number, length: number): U64 {
    return this.map(gpa, length, 0);
  }
  /** Revokes. @throws DmaMapError `not-mapped` */
  unmapCoherent(bus: U64, length: number): void {
    this.unmap(bus, length, 0);
  }
  /** The GPA a live grant address refers to, or -1. */
  busToGpa(bus: U64): number {
    const b = BigInt(bus);
    if ((b & GRANT_BIT) === 0n) return -1;
    const g = this.grants.get(Number((b & ~GRANT_BIT) >> 12n));
    return g === undefined ? -1 : g + Number(b & 0xfffn);
  }
}

/** A Xen back-end that maps grant references (`xen,grant-dma`). */
export class XenGrantAddressSpace implements DmaAddressSpace {
  /** Layer name, `"xen-grant-map"`. */
  readonly name = "xen-grant-map";
  /** The guest's grant table. */
  readonly api: XenGrantDmaApi;
  /**
   * Creates the back-end's view.
   * @param api the guest's grant table (the driver side).
   */
  constructor(api: XenGrantDmaApi) {
    this.api = api;
  }
  /** Maps the grant; the prefix stops at the page end. @throws DmaFault `unmapped` */
  translate(bus: U64, length: number, access: DmaAccess, out: DmaTranslation): void {
    const g = this.api.busToGpa(bus);
    if (g < 0) {
      throw new DmaFault("unmapped", bus, length, access, this.name, "not a live grant reference");
    }
    out.gpa = g;
    out.length = Math.min(length, 4096 - (g % 4096));
  }
}

/** A device side that faults every access, with a fixed reason. */
export class FaultingAddressSpace implements DmaAddressSpace {
  /** Layer name. */
  readonly name: string;
  /** Fault reason. */
  readonly reason: DmaFaultReason;
  /** Explanation appended to each fault. */
  readonly detail: string;
  /**
   * Creates the layer.
   * @param name layer name (e.g. `"vhost-kernel"`).
   * @param reason fault reason.
   * @param detail why it cannot translate.
   */
  constructor(name: string, reason: DmaFaultReason, detail: string) {
    this.name = name;
    this.reason = reason;
    this.detail = detail;
  }
  /** Always throws. @throws DmaFault */
  translate(bus: U64, length: number, access: DmaAccess, _out: DmaTranslation): void {
    throw new DmaFault(this.reason, bus, length, access, this.name, this.detail);
  }
}
