/**
 * The back-end's device IOTLB fed from the project's IOMMU models (vhost-user.rst "IOMMU
 * support"; VHOST_USER.md "Device IOTLB"): with VIRTIO_F_ACCESS_PLATFORM negotiated every ring
 * and buffer address the back-end sees is an IOVA from the project's DMA API, and the back-end
 * learns translations only through IOTLB messages:
 *
 * - **on demand**: the back-end sends IOTLB MISS (iova, perm) on the back-end request channel;
 *   we walk our page table (the model IOMMU domain) and answer with UPDATE, or nothing when the
 *   IOVA is unmapped or the permission is not granted (QEMU's `vhost_device_iotlb_miss` sends
 *   nothing when translation fails);
 * - **prefault**: every `map` of the driver pushes an UPDATE at once;
 * - **invalidation**: a strict unmap sends INVALIDATE for the range at once; a lazy unmap sends
 *   it when dma-iommu's flush queue flushes (so the stale window is real on the device too).
 *
 * {@link DeviceIotlbDmaApi} is a {@link DmaApi}: hand it to a driver queue unchanged.
 *
 * @module
 */

import type { U64 } from "../memory/mod.ts";
import {
  DMA_ACCESS_READ,
  DMA_ACCESS_WRITE,
  type DmaApi,
  type DmaDirection,
  type DmaMode,
  DmaTranslation,
  IoPageWalk,
  type PendingIova,
} from "../dma/mod.ts";
import type { VhostIotlbMsg } from "./codec.ts";
import type { VhostUserFrontend } from "./frontend.ts";
import type { SharedGuestMemory } from "./shared_memory.ts";
import { VHOST_ACCESS_RO, VHOST_ACCESS_RW, VHOST_ACCESS_WO } from "./protocol.ts";

const PAGE = 4096;

/** How translations reach the back-end. */
export type IotlbFill = "on-demand" | "prefault";

/** Counters of a {@link DeviceIotlbDmaApi}. */
export interface DeviceIotlbStats {
  /** UPDATE messages sent (prefault and miss answers). */
  updates: number;
  /** INVALIDATE messages sent. */
  invalidates: number;
  /** MISS requests received. */
  misses: number;
  /** MISS requests left unanswered (IOVA unmapped, permission refused, outside guest RAM). */
  unserved: number;
}

/**
 * A {@link DmaApi} that forwards to a DMA mode's driver API and keeps the back-end's device
 * IOTLB consistent with it through IOTLB messages.
 */
export class DeviceIotlbDmaApi implements DmaApi {
  /** Mode name, e.g. `"iommu-lazy+prefault"`. */
  readonly name: string;
  /** The wrapped mode. */
  readonly mode: DmaMode;
  /** How translations are filled. */
  readonly fill: IotlbFill;
  /**
   * Grant read on every writable page (default true), as VT-d does when the IOMMU lacks the
   * zero-length-read capability (Linux intel-iommu adds DMA_PTE_READ unless `cap_zlr`). DPDK
   * asks RW for every descriptor buffer, so with `false` a from-device (write-only) buffer is
   * never translated for it: a permission edge case to fuzz, not a working data path.
   */
  readonly writeImpliesRead: boolean;
  /**
   * Send every INVALIDATE one byte short (default false). DPDK's `vhost_user_iotlb_cache_remove`
   * (lib/vhost/iotlb.c) stops at the first entry with `iova + size < node->iova`, so it also
   * drops the entry that starts exactly at the end of the range; with strict unmaps that is
   * often a live RX buffer, re-missed after every TX completion (a wedged queue). One byte short
   * still overlaps every page of the range, so the same entries go and the neighbour stays.
   */
  readonly shortInvalidate: boolean;
  /** Counters. */
  readonly stats: DeviceIotlbStats = { updates: 0, invalidates: 0, misses: 0, unserved: 0 };
  readonly #fe: VhostUserFrontend;
  readonly #shared: SharedGuestMemory;
  readonly #walk = new IoPageWalk();
  readonly #tr = new DmaTranslation();
  #pending: PendingIova[] = [];
  readonly #coherent: { bus: number; gpa: number; length: number }[] = [];
  #seenInvalidations = 0;

  /**
   * Wraps `mode` (its `api` maps, its domain or address space answers misses) and installs
   * itself as the front-end's IOTLB miss handler.
   */
  constructor(
    fe: VhostUserFrontend,
    shared: SharedGuestMemory,
    mode: DmaMode,
    fill: IotlbFill,
    writeImpliesRead = true,
    shortInvalidate = false,
  ) {
    this.writeImpliesRead = writeImpliesRead;
    this.shortInvalidate = shortInvalidate;
    this.#fe = fe;
    this.#shared = shared;
    this.mode = mode;
    this.fill = fill;
    this.name = `${mode.name}+${fill}`;
    this.#seenInvalidations = mode.iommuApi?.stats.invalidations ?? 0;
    fe.onIotlbMiss = (m) => this.serveMiss(m);
  }

  /**
   * With a pass-through (identity) translation and prefault, one UPDATE per region covers all
   * guest RAM; call once after SET_MEM_TABLE.
   */
  prefaultIdentity(): void {
    if (this.fill !== "prefault" || this.mode.domain?.table) return;
    for (const r of this.#shared.regions) {
      this.#update(BigInt(r.gpa), BigInt(r.size), r.userAddr, VHOST_ACCESS_RW);
    }
  }

  #update(iova: bigint, size: bigint, uaddr: bigint, perm: number): void {
    if (this.writeImpliesRead && perm & VHOST_ACCESS_WO) perm |= VHOST_ACCESS_RO;
    this.#fe.iotlbUpdate(iova, size, uaddr, perm);
    this.stats.updates++;
  }

  #prefault(bus: U64, gpa: number, length: number, perm: number): void {
    if (this.fill !== "prefault" || !this.mode.domain?.table || typeof bus !== "number") return;
    const off = bus % PAGE;
    const size = Math.ceil((off + length) / PAGE) * PAGE;
    const ua = this.#shared.userAddrOf(gpa - off);
    if (ua < 0n) return;
    this.#update(BigInt(bus - off), BigInt(size), ua, perm);
  }

  /** `dma_map_single` through the mode, then UPDATE (prefault). @throws DmaMapError */
  map(gpa: number, length: number, dir: DmaDirection): U64 {
    const bus = this.mode.api.map(gpa, length, dir);
    this.#afterInner();
    const perm = dir === 1 ? VHOST_ACCESS_RO : dir === 2 ? VHOST_ACCESS_WO : VHOST_ACCESS_RW;
    this.#prefault(bus, gpa, length, perm);
    return bus;
  }

  /** Coherent mapping through the mode, then UPDATE read-write (prefault). */
  mapCoherent(gpa: number, length: number): U64 {
    const bus = this.mode.api.mapCoherent(gpa, length);
    this.#afterInner();
    if (typeof bus === "number") this.#coherent.push({ bus, gpa, length });
    this.#prefault(bus, gpa, length, VHOST_ACCESS_RW);
    return bus;
  }

  /**
   * Pushes the UPDATEs of every live coherent mapping (the ring areas) again (prefault only).
   * DPDK keeps one IOTLB cache per vring and inserts an UPDATE only into vrings that exist,
   * so translations pushed before SET_VRING_NUM created a vring are lost for it
   * (lib/vhost `vhost_user_iotlb_msg` loops over `dev->nr_vring`).
   */
  repushCoherent(): void {
    for (const c of this.#coherent) this.#prefault(c.bus, c.gpa, c.length, VHOST_ACCESS_RW);
  }

  /** Unmap through the mode; strict: INVALIDATE now; lazy: at the flush. @throws DmaMapError */
  unmap(bus: U64, length: number, dir: DmaDirection): void {
    this.mode.api.unmap(bus, length, dir);
    this.#afterUnmap(bus, length);
  }

  /** Ends a coherent mapping (INVALIDATE as {@link DeviceIotlbDmaApi.unmap}). */
  unmapCoherent(bus: U64, length: number): void {
    this.mode.api.unmapCoherent(bus, length);
    const i = this.#coherent.findIndex((c) => c.bus === bus);
    if (i >= 0) this.#coherent.splice(i, 1);
    this.#afterUnmap(bus, length);
  }

  /** Forwards. */
  syncForCpu(bus: U64, length: number, dir: DmaDirection): void {
    this.mode.api.syncForCpu(bus, length, dir);
  }

  /** Forwards. */
  syncForDevice(bus: U64, length: number, dir: DmaDirection): void {
    this.mode.api.syncForDevice(bus, length, dir);
  }

  /** Lets the lazy flush-queue timer act, sending the INVALIDATEs of a flush. */
  tick(): void {
    this.mode.tick();
    this.#afterInner();
  }

  #afterUnmap(bus: U64, length: number): void {
    const api = this.mode.iommuApi;
    if (api === null || typeof bus !== "number") return;
    const start = bus - (bus % PAGE);
    const size = Math.ceil((bus + length) / PAGE) * PAGE - start;
    if (api.policy === "strict") {
      this.#seenInvalidations = api.stats.invalidations;
      this.#invalidate(start, size);
    } else {
      this.#pending.push({ bus: start, length: size });
      this.#afterInner();
    }
  }

  #invalidate(bus: number, length: number): void {
    this.#fe.iotlbInvalidate(BigInt(bus), BigInt(this.shortInvalidate ? length - 1 : length));
    this.stats.invalidates++;
  }

  // A lazy flush happened inside the mode (stats.invalidations moved): every range we saw
  // unmapped and that the flush queue no longer holds is invalidated on the device now.
  #afterInner(): void {
    const api = this.mode.iommuApi;
    if (api === null || api.policy !== "lazy") return;
    if (api.stats.invalidations === this.#seenInvalidations) return;
    this.#seenInvalidations = api.stats.invalidations;
    const still = api.pendingIovas();
    const keep: PendingIova[] = [];
    for (const p of this.#pending) {
      if (still.some((s) => s.bus <= p.bus && p.bus < s.bus + s.length)) keep.push(p);
      else this.#invalidate(p.bus, p.length);
    }
    this.#pending = keep;
  }

  /** Ranges unmapped by the driver whose INVALIDATE still waits for the lazy flush. */
  pendingInvalidations(): readonly PendingIova[] {
    return this.#pending;
  }

  /**
   * Answers an IOTLB MISS: walks the domain's page table (or the mode's address space for a
   * pass-through domain) and sends UPDATE for the leaf page with its permission. Sends nothing
   * when the IOVA is unmapped, the asked permission is not granted, or the page is outside the
   * shared guest RAM.
   * @returns the result for a back-end reply (0 served, 1 not served).
   */
  serveMiss(m: VhostIotlbMsg): bigint {
    this.stats.misses++;
    const iova = m.iova;
    if (iova > BigInt(Number.MAX_SAFE_INTEGER)) return this.#unserved();
    const n = Number(iova);
    const want = m.perm & VHOST_ACCESS_RW;
    const table = this.mode.domain?.table ?? null;
    if (table !== null) {
      if (!table.walk(n, this.#walk)) return this.#unserved();
      const w = this.#walk;
      const granted = this.writeImpliesRead && w.perm & VHOST_ACCESS_WO
        ? w.perm | VHOST_ACCESS_RO
        : w.perm;
      if ((want & ~granted) !== 0) return this.#unserved();
      const pageIova = n - (n % w.pageSize);
      const ua = this.#shared.userAddrOf(w.pageGpa);
      const region = this.#shared.regionOf(w.pageGpa);
      if (ua < 0n || region === undefined) return this.#unserved();
      const size = Math.min(w.pageSize, region.gpa + region.size - w.pageGpa);
      this.#update(BigInt(pageIova), BigInt(size), ua, w.perm);
      return 0n;
    }
    // Pass-through or no IOMMU: translate through the device's address space.
    const access = (want & VHOST_ACCESS_WO ? DMA_ACCESS_WRITE : 0) |
      (want & VHOST_ACCESS_RO || want === 0 ? DMA_ACCESS_READ : 0);
    const pageIova = n - (n % PAGE);
    try {
      this.mode.space.translate(pageIova, PAGE, access, this.#tr);
    } catch {
      return this.#unserved();
    }
    const region = this.#shared.regionOf(this.#tr.gpa);
    if (region === undefined) return this.#unserved();
    const size = region.gpa + region.size - this.#tr.gpa;
    const ua = this.#shared.userAddrOf(this.#tr.gpa);
    this.#update(BigInt(pageIova), BigInt(size), ua, VHOST_ACCESS_RW);
    return 0n;
  }

  #unserved(): bigint {
    this.stats.unserved++;
    return 1n;
  }
}
