/**
 * The translation a device behind a virtio-iommu endpoint sees: an endpoint's
 * {@link DmaAddressSpace} (spec §5.13.6 "Device operations", bypass rules of §5.13.6.2 and fault
 * reasons of §5.13.6.9; QEMU `virtio_iommu_translate` order of checks).
 *
 * Order of checks for an access to IOVA `a` by endpoint `e`:
 * 1. `e` is unknown to the IOMMU: identity if bypass is on, else fault (R_UNKNOWN).
 * 2. `a` in a RESV_MEM region of `e`: MSI → identity; RESERVED → fault `reserved-region`
 *    (R_MAPPING).
 * 3. `e` unattached: identity if bypass is on, else fault `no-domain` (R_DOMAIN).
 * 4. `e` attached to a bypass domain: identity.
 * 5. no mapping contains `a`: fault `unmapped` (R_MAPPING); the mapping lacks READ for a read or
 *    WRITE for a write: fault `permission` (R_MAPPING). Otherwise `gpa = a - virtStart + physStart`.
 *
 * Every fault is thrown as a {@link DmaFault} and also reported to the device's eventq (when the
 * driver provided event buffers). A hit allocates nothing: the last mapping used is cached and
 * checked against the tree's generation, otherwise a binary search over typed arrays.
 *
 * @module
 */

import { type U64, u64Hi, u64Lo } from "../../memory/u64.ts";
import { DMA_ACCESS_READ, DMA_ACCESS_WRITE, type DmaAccess, DmaFault } from "../../dma/errors.ts";
import type { DmaAddressSpace, DmaTranslation } from "../../dma/types.ts";
import {
  VIRTIO_IOMMU_FAULT_F_ADDRESS,
  VIRTIO_IOMMU_FAULT_F_READ,
  VIRTIO_IOMMU_FAULT_F_WRITE,
  VIRTIO_IOMMU_FAULT_R_DOMAIN,
  VIRTIO_IOMMU_FAULT_R_MAPPING,
  VIRTIO_IOMMU_FAULT_R_UNKNOWN,
  VIRTIO_IOMMU_MAP_F_READ,
  VIRTIO_IOMMU_MAP_F_WRITE,
  VIRTIO_IOMMU_RESV_MEM_T_MSI,
} from "./constants.ts";
import { cmpHiLo, type ViommuMappingTree } from "./mappings.ts";
import type { ViommuResvMem } from "./probe.ts";

const TWO32 = 0x1_0000_0000;
/** Largest GPA + 1 (52 physical address bits), as in `IdentityAddressSpace`. */
const GPA_LIMIT = 2 ** 52;

/** A domain as the device keeps it. */
export interface ViommuDomain {
  /** Domain ID. */
  readonly id: number;
  /** Created with `VIRTIO_IOMMU_ATTACH_F_BYPASS`: identity for its endpoints, no MAP. */
  readonly bypass: boolean;
  /** Its mappings. */
  readonly tree: ViommuMappingTree;
  /** IDs of the endpoints attached to it. */
  readonly endpoints: Set<number>;
}

/** An endpoint as the device keeps it. */
export interface ViommuEndpoint {
  /** Endpoint ID (e.g. a PCI BDF). */
  readonly id: number;
  /** False for an ID the IOMMU does not manage (ATTACH answers NOENT; accesses: R_UNKNOWN). */
  readonly known: boolean;
  /** Its RESV_MEM regions, as reported by PROBE. */
  readonly resvMem: readonly ViommuResvMem[];
  /** The domain it is attached to, or `null`. */
  domain: ViommuDomain | null;
}

/** What an endpoint space needs from its device. */
export interface ViommuEndpointHost {
  /** True when unattached (and unknown) endpoints are translated by identity. */
  readonly bypassUnattached: boolean;
  /** Reports a fault on the eventq (drops it when no buffer is available). */
  reportFault(reason: number, flags: number, endpoint: number, address: U64): void;
}

/**
 * One endpoint's view of DMA through the virtio-iommu. Obtain it from
 * `VirtioIommuDevice.endpointSpace(id)`; it follows ATTACH/DETACH/MAP/UNMAP live.
 */
export class ViommuEndpointSpace implements DmaAddressSpace {
  /** Layer name, `virtio-iommu:ep<id>`. */
  readonly name: string;
  readonly #ep: ViommuEndpoint;
  readonly #host: ViommuEndpointHost;
  // RESV_MEM regions as (hi, lo) words; kind 1 = MSI.
  readonly #rsh: Uint32Array;
  readonly #rsl: Uint32Array;
  readonly #reh: Uint32Array;
  readonly #rel: Uint32Array;
  readonly #rmsi: Uint8Array;
  // Last-hit cache: the index of the last mapping used in its tree (slow path), and its numeric
  // form for the fast path (filled only when the mapping's addresses are safe integers and no
  // RESV_MEM region of this endpoint intersects it).
  #cTree: ViommuMappingTree | null = null;
  #cGen = -1;
  #cIdx = -1;
  #fDom: ViommuDomain | null = null;
  #fGen = -1;
  #fStart = 0;
  #fEnd = -1;
  #fPhys = 0;
  #fFlags = 0;

  /**
   * Creates the view of one endpoint (the device does this in `endpointSpace`).
   * @param endpoint the device's endpoint record.
   * @param host the device (bypass state, fault reporting).
   */
  constructor(endpoint: ViommuEndpoint, host: ViommuEndpointHost) {
    this.name = `virtio-iommu:ep${endpoint.id}`;
    this.#ep = endpoint;
    this.#host = host;
    const n = endpoint.resvMem.length;
    this.#rsh = new Uint32Array(n);
    this.#rsl = new Uint32Array(n);
    this.#reh = new Uint32Array(n);
    this.#rel = new Uint32Array(n);
    this.#rmsi = new Uint8Array(n);
    endpoint.resvMem.forEach((r, i) => {
      this.#rsh[i] = u64Hi(r.start);
      this.#rsl[i] = u64Lo(r.start);
      this.#reh[i] = u64Hi(r.end);
      this.#rel[i] = u64Lo(r.end);
      this.#rmsi[i] = r.subtype === VIRTIO_IOMMU_RESV_MEM_T_MSI ? 1 : 0;
    });
  }

  /** The endpoint ID. */
  get endpointId(): number {
    return this.#ep.id;
  }

  /**
   * See {@link DmaAddressSpace.translate}. Allocation-free on a hit.
   * @throws DmaFault `reserved-region`, `no-domain`, `unmapped`, `permission`, or
   * `out-of-window` (identity beyond 2^52 in bypass).
   */
  translate(bus: U64, length: number, access: DmaAccess, out: DmaTranslation): void {
    // Fast path: a number address inside the cached mapping of the current domain, unchanged.
    const fd = this.#fDom;
    if (
      fd !== null && typeof bus === "number" && this.#ep.domain === fd &&
      fd.tree.generation === this.#fGen && bus >= this.#fStart && bus <= this.#fEnd
    ) {
      const f = this.#fFlags;
      if (
        ((access & DMA_ACCESS_READ) === 0 || (f & VIRTIO_IOMMU_MAP_F_READ) !== 0) &&
        ((access & DMA_ACCESS_WRITE) === 0 || (f & VIRTIO_IOMMU_MAP_F_WRITE) !== 0)
      ) {
        const remaining = this.#fEnd - bus + 1;
        out.gpa = this.#fPhys + (bus - this.#fStart);
        out.length = remaining < length ? remaining : length;
        return;
      }
    }
    this.#translateSlow(bus, length, access, out);
  }

  #translateSlow(bus: U64, length: number, access: DmaAccess, out: DmaTranslation): void {
    let hi: number, lo: number;
    if (typeof bus === "number") {
      hi = Math.floor(bus / TWO32);
      lo = bus >>> 0;
    } else {
      hi = u64Hi(bus);
      lo = u64Lo(bus);
    }
    const ep = this.#ep;
    if (!ep.known) {
      if (this.#host.bypassUnattached) return this.#identity(bus, length, access, out);
      this.#fault(
        "no-domain",
        VIRTIO_IOMMU_FAULT_R_UNKNOWN,
        bus,
        length,
        access,
        "unknown endpoint",
      );
    }
    const nr = this.#rmsi.length;
    for (let i = 0; i < nr; i++) {
      if (
        cmpHiLo(this.#rsh[i], this.#rsl[i], hi, lo) <= 0 &&
        cmpHiLo(this.#reh[i], this.#rel[i], hi, lo) >= 0
      ) {
        if (this.#rmsi[i] === 1) return this.#identity(bus, length, access, out);
        this.#fault(
          "reserved-region",
          VIRTIO_IOMMU_FAULT_R_MAPPING,
          bus,
          length,
          access,
          "RESV_MEM",
        );
      }
    }
    const dom = ep.domain;
    if (dom === null) {
      if (this.#host.bypassUnattached) return this.#identity(bus, length, access, out);
      this.#fault("no-domain", VIRTIO_IOMMU_FAULT_R_DOMAIN, bus, length, access, "not attached");
    }
    if (dom.bypass) return this.#identity(bus, length, access, out);
    const t = dom.tree;
    let i = this.#cIdx;
    if (
      !(this.#cTree === t && this.#cGen === t.generation &&
        cmpHiLo(t.startHi[i], t.startLo[i], hi, lo) <= 0 &&
        cmpHiLo(t.endHi[i], t.endLo[i], hi, lo) >= 0)
    ) {
      i = t.lookup(hi, lo);
      if (i < 0) {
        this.#fault("unmapped", VIRTIO_IOMMU_FAULT_R_MAPPING, bus, length, access, "no mapping");
      }
      this.#cTree = t;
      this.#cGen = t.generation;
      this.#cIdx = i;
      this.#fillFast(dom, i);
    }
    const f = t.flags[i];
    if (
      ((access & DMA_ACCESS_READ) !== 0 && (f & VIRTIO_IOMMU_MAP_F_READ) === 0) ||
      ((access & DMA_ACCESS_WRITE) !== 0 && (f & VIRTIO_IOMMU_MAP_F_WRITE) === 0)
    ) {
      this.#fault("permission", VIRTIO_IOMMU_FAULT_R_MAPPING, bus, length, access, "MAP flags");
    }
    const offset = (hi - t.startHi[i]) * TWO32 + (lo - t.startLo[i]);
    const remaining = (t.endHi[i] - hi) * TWO32 + (t.endLo[i] - lo) + 1;
    out.gpa = t.physHi[i] * TWO32 + t.physLo[i] + offset;
    out.length = remaining < length ? remaining : length;
    if (nr !== 0) this.#clampToResv(hi, lo, out);
  }

  /** Caches mapping `i` of `dom` for the fast path when it is numeric and avoids RESV_MEM. */
  #fillFast(dom: ViommuDomain, i: number): void {
    const t = dom.tree;
    this.#fDom = null;
    if (t.endHi[i] > 0x1f_ffff || t.physHi[i] > 0x1f_ffff) return; // not a safe integer
    for (let r = 0; r < this.#rmsi.length; r++) {
      if (
        cmpHiLo(this.#rsh[r], this.#rsl[r], t.endHi[i], t.endLo[i]) <= 0 &&
        cmpHiLo(this.#reh[r], this.#rel[r], t.startHi[i], t.startLo[i]) >= 0
      ) return;
    }
    this.#fStart = t.startHi[i] * TWO32 + t.startLo[i];
    this.#fEnd = t.endHi[i] * TWO32 + t.endLo[i];
    this.#fPhys = t.physHi[i] * TWO32 + t.physLo[i];
    this.#fFlags = t.flags[i];
    this.#fGen = t.generation;
    this.#fDom = dom;
  }

  #identity(bus: U64, length: number, access: DmaAccess, out: DmaTranslation): void {
    if (typeof bus !== "number" || bus + length > GPA_LIMIT) {
      throw new DmaFault("out-of-window", bus, length, access, this.name, "identity beyond 2^52");
    }
    out.gpa = bus;
    out.length = length;
    if (this.#rmsi.length !== 0) this.#clampToResv(Math.floor(bus / TWO32), bus >>> 0, out);
  }

  /** Shortens `out.length` so that the prefix stops before the next RESV_MEM region. */
  #clampToResv(hi: number, lo: number, out: DmaTranslation): void {
    for (let i = 0; i < this.#rmsi.length; i++) {
      const sh = this.#rsh[i], sl = this.#rsl[i];
      if (cmpHiLo(sh, sl, hi, lo) > 0) {
        const dist = (sh - hi) * TWO32 + (sl - lo);
        if (dist < out.length) out.length = dist;
      }
    }
  }

  #fault(
    reason: "no-domain" | "reserved-region" | "unmapped" | "permission",
    viommuReason: number,
    bus: U64,
    length: number,
    access: DmaAccess,
    detail: string,
  ): never {
    const flags = ((access & DMA_ACCESS_READ) !== 0 ? VIRTIO_IOMMU_FAULT_F_READ : 0) |
      ((access & DMA_ACCESS_WRITE) !== 0 ? VIRTIO_IOMMU_FAULT_F_WRITE : 0) |
      VIRTIO_IOMMU_FAULT_F_ADDRESS;
    this.#host.reportFault(viommuReason, flags, this.#ep.id, bus);
    throw new DmaFault(reason, bus, length, access, this.name, detail);
  }
}
