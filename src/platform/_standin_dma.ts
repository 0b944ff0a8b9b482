/**
 * PRIVATE STAND-INS, TO DELETE when the `dma` stream lands `src/dma/modes.ts` (windows, paged
 * IOMMU + IOTLB with strict/lazy, swiotlb, confidential filter, grants) on main.
 *
 * Small, cold-path models of the DMA modes of DMA_MODES.md that the platform resolver needs to run
 * buffers end to end. They implement the shared interfaces of `src/dma/types.ts` only; nothing
 * outside `src/platform/` may import this file and `src/mod.ts` does not export it.
 *
 * @module
 */

import type { U64 } from "../memory/u64.ts";
import { type DmaAccess, DmaFault, DmaMapError } from "../dma/errors.ts";
import {
  DMA_FROM_DEVICE,
  DMA_TO_DEVICE,
  type DmaAddressSpace,
  type DmaApi,
  type DmaDirection,
  DmaTranslation,
} from "../dma/types.ts";
import type { GuestMemory } from "../memory/guest_memory.ts";

const big = (v: U64): bigint => BigInt(v);
const canon = (v: bigint): U64 => v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;

// ---------------------------------------------------------------------------------------------
// Paged IOMMU (M5) with strict / lazy invalidation

/** One IOMMU domain's page table, shared by the driver's mapping API and the device's view. */
export class StandinIommuDomain {
  /** IOVA page number -> GPA page base. */
  readonly pages = new Map<number, number>();
  /** Unmapped pages whose IOTLB entries are still valid until the flush queue drains (lazy). */
  readonly flushQueue: number[] = [];
  /**
   * @param name layer name (`"vt-d"`, `"smmuv3"`, `"tce"`, ...).
   * @param pageSize granule in bytes.
   * @param lazy lazy invalidation (flush queue of 256 entries, Linux `IOVA_DEFAULT_FQ_SIZE`).
   */
  constructor(readonly name: string, readonly pageSize: number, readonly lazy: boolean) {}
  /** Invalidates every queued IOTLB entry (flush-queue drain or timeout). */
  flush(): void {
    for (const p of this.flushQueue) this.pages.delete(p);
    this.flushQueue.length = 0;
  }
}

/** Reserved IOVA ranges the allocator avoids, inclusive ends. */
export interface ReservedRange {
  start: number;
  end: number;
  subtype: "reserved" | "msi";
}

/** Driver side of a paged IOMMU domain: allocates IOVAs top-down and maps pages. */
export class StandinIommuApi implements DmaApi {
  readonly name: string;
  #cursor: number;
  /**
   * @param domain the page table.
   * @param iovaStart lowest IOVA to allocate.
   * @param iovaEnd highest IOVA + 1; allocation goes down from here.
   * @param avoid ranges the allocator must skip (RESV_MEM when the guest honours them).
   */
  constructor(
    readonly domain: StandinIommuDomain,
    readonly iovaStart: number,
    iovaEnd: number,
    readonly avoid: readonly ReservedRange[] = [],
  ) {
    this.name = `${domain.name}-${domain.lazy ? "lazy" : "strict"}`;
    this.#cursor = iovaEnd;
  }
  map(gpa: number, length: number, _dir: DmaDirection): U64 {
    const ps = this.domain.pageSize;
    const off = gpa % ps;
    const n = Math.ceil((off + length) / ps);
    let iova = Math.floor((this.#cursor - n * ps) / ps) * ps;
    for (const r of this.avoid) {
      if (iova <= r.end && r.start < iova + n * ps) iova = Math.floor((r.start - n * ps) / ps) * ps;
    }
    if (iova < this.iovaStart) {
      throw new DmaMapError("iova-exhausted", gpa, length, this.name);
    }
    this.#cursor = iova;
    const base = gpa - off;
    for (let i = 0; i < n; i++) this.domain.pages.set(iova / ps + i, base + i * ps);
    return iova + off;
  }
  unmap(bus: U64, length: number, _dir: DmaDirection): void {
    const ps = this.domain.pageSize;
    const b = Number(bus);
    const first = Math.floor(b / ps);
    const last = Math.floor((b + length - 1) / ps);
    for (let p = first; p <= last; p++) {
      if (!this.domain.pages.has(p)) throw new DmaMapError("not-mapped", bus, length, this.name);
      if (this.domain.lazy) {
        this.domain.flushQueue.push(p);
        if (this.domain.flushQueue.length >= 256) this.domain.flush();
      } else this.domain.pages.delete(p);
    }
  }
  syncForCpu(): void {}
  syncForDevice(): void {}
  mapCoherent(gpa: number, length: number): U64 {
    return this.map(gpa, length, 0);
  }
  unmapCoherent(bus: U64, length: number): void {
    this.unmap(bus, length, 0);
  }
  /**
   * Fault injection (virtio-iommu UNMAP that splits a mapping, QEMU semantics): removes the
   * pages of every mapping that `[start, end]` touches.
   */
  removeRange(start: number, end: number): void {
    const ps = this.domain.pageSize;
    for (let p = Math.floor(start / ps); p <= Math.floor(end / ps); p++) {
      this.domain.pages.delete(p);
    }
  }
}

/** Device side of a paged IOMMU domain. */
export class StandinIommuSpace implements DmaAddressSpace {
  readonly name: string;
  /**
   * @param domain the page table the driver fills.
   * @param resv reserved regions (virtio-iommu RESV_MEM): RESERVED faults, MSI passes through.
   */
  constructor(readonly domain: StandinIommuDomain, readonly resv: readonly ReservedRange[] = []) {
    this.name = domain.name;
  }
  translate(bus: U64, length: number, access: DmaAccess, out: DmaTranslation): void {
    if (typeof bus !== "number") {
      throw new DmaFault("out-of-window", bus, length, access, this.name, "beyond the IOVA space");
    }
    for (const r of this.resv) {
      if (bus >= r.start && bus <= r.end) {
        if (r.subtype === "msi") {
          out.gpa = bus;
          out.length = Math.min(length, r.end - bus + 1);
          return;
        }
        throw new DmaFault("reserved-region", bus, length, access, this.name, "RESV_MEM RESERVED");
      }
    }
    const ps = this.domain.pageSize;
    const p = Math.floor(bus / ps);
    const g = this.domain.pages.get(p);
    if (g === undefined) {
      throw new DmaFault("unmapped", bus, length, access, this.name, "no page-table entry");
    }
    const off = bus - p * ps;
    let n = ps - off;
    let next = p + 1;
    while (n < length && this.domain.pages.get(next) === g + (next - p) * ps) {
      n += ps;
      next++;
    }
    out.gpa = g + off;
    out.length = Math.min(n, length);
  }
}

// ---------------------------------------------------------------------------------------------
// Fixed-offset windows (M2): dma-ranges, alpha direct window, POWER DDW

/** One window: CPU (GPA) range `[cpu, cpu + size)` appears at bus `[bus, bus + size)`. */
export interface Window {
  cpu: U64;
  bus: U64;
  size: U64;
}

/** Driver side of fixed-offset windows (Linux `translate_phys_to_dma`). */
export class StandinOffsetApi implements DmaApi {
  constructor(readonly name: string, readonly windows: readonly Window[]) {}
  map(gpa: number, length: number, _dir: DmaDirection): U64 {
    for (const w of this.windows) {
      const c = big(w.cpu), s = big(w.size), g = BigInt(gpa);
      if (g >= c && g + BigInt(length) <= c + s) return canon(big(w.bus) + (g - c));
    }
    throw new DmaMapError("window", gpa, length, this.name, "no DMA window covers the buffer");
  }
  unmap(): void {}
  syncForCpu(): void {}
  syncForDevice(): void {}
  mapCoherent(gpa: number, length: number): U64 {
    return this.map(gpa, length, 0);
  }
  unmapCoherent(): void {}
}

/** Device side of fixed-offset windows: bus -> CPU address, faults outside every window. */
export class StandinOffsetSpace implements DmaAddressSpace {
  constructor(readonly name: string, readonly windows: readonly Window[]) {}
  translate(bus: U64, length: number, access: DmaAccess, out: DmaTranslation): void {
    const b = big(bus);
    for (const w of this.windows) {
      const wb = big(w.bus), s = big(w.size);
      if (b >= wb && b < wb + s) {
        const g = big(w.cpu) + (b - wb);
        if (g > BigInt(Number.MAX_SAFE_INTEGER)) break;
        out.gpa = Number(g);
        out.length = Number(BigInt(length) < wb + s - b ? BigInt(length) : wb + s - b);
        return;
      }
    }
    throw new DmaFault("out-of-window", bus, length, access, this.name, "no window covers it");
  }
}

// ---------------------------------------------------------------------------------------------
// Alpha: direct window if the buffer fits, else scatter-gather (pci_map_single_1)

/** Driver side of alpha `pci_map_single_1`: direct window first, SGMAP otherwise. */
export class StandinAlphaApi implements DmaApi {
  readonly name = "alpha-window";
  constructor(readonly direct: StandinOffsetApi, readonly sg: StandinIommuApi) {}
  map(gpa: number, length: number, dir: DmaDirection): U64 {
    try {
      return this.direct.map(gpa, length, dir);
    } catch {
      return this.sg.map(gpa, length, dir);
    }
  }
  unmap(bus: U64, length: number, dir: DmaDirection): void {
    if (
      this.direct.windows.some((w) => big(bus) >= big(w.bus) && big(bus) < big(w.bus) + big(w.size))
    ) return;
    this.sg.unmap(bus, length, dir);
  }
  syncForCpu(): void {}
  syncForDevice(): void {}
  mapCoherent(gpa: number, length: number): U64 {
    return this.map(gpa, length, 0);
  }
  unmapCoherent(bus: U64, length: number): void {
    this.unmap(bus, length, 0);
  }
}

/** Device side of the Typhoon windows: direct window, else the SG window. */
export class StandinAlphaSpace implements DmaAddressSpace {
  constructor(
    readonly direct: StandinOffsetSpace,
    readonly sg: StandinIommuSpace,
    readonly name = "typhoon",
  ) {}
  translate(bus: U64, length: number, access: DmaAccess, out: DmaTranslation): void {
    try {
      this.direct.translate(bus, length, access, out);
    } catch {
      try {
        this.sg.translate(bus, length, access, out);
      } catch (e) {
        if (e instanceof DmaFault) {
          throw new DmaFault(e.reason, bus, length, access, this.name, "outside both windows");
        }
        throw e;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// swiotlb bounce buffers (M4)

/** swiotlb slot size: 2 KiB (`IO_TLB_SHIFT` 11). */
export const IO_TLB_SIZE = 2048;
/** Most contiguous slots per mapping (`IO_TLB_SEGSIZE` 128): 256 KiB. */
export const IO_TLB_SEGSIZE = 128;

/** Driver side of swiotlb: copies through a shared pool; `inner` maps the slot further. */
export class StandinBounceApi implements DmaApi {
  readonly name: string;
  readonly #used: Uint8Array;
  readonly #live = new Map<U64, { slot: number; n: number; gpa: number; innerBus: U64 }>();
  /**
   * @param memory guest memory (the pool must be backed).
   * @param poolGpa GPA of the pool (shared memory).
   * @param slots pool size in slots.
   * @param inner mapping applied to the slot address (dma-direct identity when `null`).
   * @param name layer name (`swiotlb`, `restricted-dma-pool`).
   */
  constructor(
    readonly memory: GuestMemory,
    readonly poolGpa: number,
    readonly slots: number,
    readonly inner: DmaApi | null,
    name = "swiotlb",
  ) {
    this.name = name;
    this.#used = new Uint8Array(slots);
  }
  map(gpa: number, length: number, dir: DmaDirection): U64 {
    const n = Math.ceil(length / IO_TLB_SIZE);
    if (n > IO_TLB_SEGSIZE) {
      throw new DmaMapError("too-large", gpa, length, this.name, "above 128 slots x 2 KiB");
    }
    let slot = -1;
    for (let s = 0; s + n <= this.slots && slot < 0; s++) {
      let free = true;
      for (let k = 0; k < n && free; k++) free = this.#used[s + k] === 0;
      if (free) slot = s;
    }
    if (slot < 0) throw new DmaMapError("pool-exhausted", gpa, length, this.name);
    this.#used.fill(1, slot, slot + n);
    const s = this.poolGpa + slot * IO_TLB_SIZE;
    if (dir !== DMA_FROM_DEVICE) this.memory.copy(s, gpa, length);
    const innerBus = this.inner ? this.inner.map(s, length, dir) : s;
    this.#live.set(innerBus, { slot, n, gpa, innerBus });
    return innerBus;
  }
  unmap(bus: U64, length: number, dir: DmaDirection): void {
    const m = this.#live.get(bus);
    if (!m) throw new DmaMapError("not-mapped", bus, length, this.name);
    if (dir !== DMA_TO_DEVICE) {
      this.memory.copy(m.gpa, this.poolGpa + m.slot * IO_TLB_SIZE, length);
    }
    if (this.inner) this.inner.unmap(bus, length, dir);
    this.#used.fill(0, m.slot, m.slot + m.n);
    this.#live.delete(bus);
  }
  syncForCpu(): void {}
  syncForDevice(): void {}
  mapCoherent(gpa: number, length: number): U64 {
    return this.inner ? this.inner.mapCoherent(gpa, length) : gpa;
  }
  unmapCoherent(bus: U64, length: number): void {
    if (this.inner) this.inner.unmapCoherent(bus, length);
  }
}

// ---------------------------------------------------------------------------------------------
// Xen grants (M7)

/** Driver side of Xen grant DMA: `B = 1<<63 | gref<<12 | offset`. */
export class StandinGrantApi implements DmaApi {
  readonly name = "xen-grant";
  readonly grants = new Map<number, number>();
  #next = 1;
  map(gpa: number, length: number, _dir: DmaDirection): U64 {
    const off = gpa % 4096;
    const n = Math.ceil((off + length) / 4096);
    const first = this.#next;
    for (let i = 0; i < n; i++) this.grants.set(this.#next++, gpa - off + i * 4096);
    return (1n << 63n) | (BigInt(first) << 12n) | BigInt(off);
  }
  unmap(bus: U64, length: number): void {
    const gref = Number((big(bus) & ~(1n << 63n)) >> 12n);
    const n = Math.ceil(((Number(big(bus) & 0xfffn)) + length) / 4096);
    for (let i = 0; i < n; i++) this.grants.delete(gref + i);
  }
  syncForCpu(): void {}
  syncForDevice(): void {}
  mapCoherent(gpa: number, length: number): U64 {
    return this.map(gpa, length, 0);
  }
  unmapCoherent(bus: U64, length: number): void {
    this.unmap(bus, length);
  }
}

/** Device side of a Xen back-end that maps grant references. */
export class StandinGrantSpace implements DmaAddressSpace {
  readonly name = "xen-grant-map";
  constructor(readonly api: StandinGrantApi) {}
  translate(bus: U64, length: number, access: DmaAccess, out: DmaTranslation): void {
    const b = big(bus);
    if ((b >> 63n) !== 1n) {
      throw new DmaFault("unmapped", bus, length, access, this.name, "not a grant address");
    }
    const gref = Number((b & ~(1n << 63n)) >> 12n);
    const off = Number(b & 0xfffn);
    const g = this.api.grants.get(gref);
    if (g === undefined) throw new DmaFault("unmapped", bus, length, access, this.name, "no grant");
    out.gpa = g + off;
    out.length = Math.min(length, 4096 - off);
  }
}

// ---------------------------------------------------------------------------------------------
// Filters and compositions

/** A layer that faults every access (a vhost back-end without IOTLB support, for example). */
export class StandinFaultSpace implements DmaAddressSpace {
  constructor(
    readonly name: string,
    readonly reason: "unmapped" | "no-domain" | "out-of-window",
    readonly detail: string,
  ) {}
  translate(bus: U64, length: number, access: DmaAccess, _out: DmaTranslation): void {
    throw new DmaFault(this.reason, bus, length, access, this.name, this.detail);
  }
}

/** Confidential-guest filter: the host reaches shared memory only. */
export class StandinPrivateFilter implements DmaAddressSpace {
  constructor(readonly name: string, readonly isPrivate: (gpa: number) => boolean) {}
  translate(bus: U64, length: number, access: DmaAccess, out: DmaTranslation): void {
    if (typeof bus === "number" && this.isPrivate(bus)) {
      throw new DmaFault("private-memory", bus, length, access, this.name, "private page");
    }
    out.gpa = Number(bus);
    out.length = length;
  }
}

/** Device-side composition: the output GPA of each layer is the input bus address of the next. */
export class ChainedSpace implements DmaAddressSpace {
  readonly name: string;
  readonly #t = new DmaTranslation();
  constructor(readonly layers: readonly DmaAddressSpace[]) {
    this.name = layers.map((l) => l.name).join(" > ");
  }
  translate(bus: U64, length: number, access: DmaAccess, out: DmaTranslation): void {
    let b: U64 = bus;
    let len = length;
    for (const l of this.layers) {
      l.translate(b, len, access, this.#t);
      b = this.#t.gpa;
      len = this.#t.length;
    }
    out.gpa = b as number;
    out.length = len;
  }
}

/** Driver-side composition: each layer maps the previous layer's output address. */
export class ChainedApi implements DmaApi {
  readonly name: string;
  readonly #inter = new Map<U64, U64[]>();
  constructor(readonly layers: readonly DmaApi[]) {
    this.name = layers.map((l) => l.name).join(" > ");
  }
  map(gpa: number, length: number, dir: DmaDirection): U64 {
    const addrs: U64[] = [];
    let a: U64 = gpa;
    for (const l of this.layers) {
      addrs.push(a);
      a = l.map(Number(a), length, dir);
    }
    this.#inter.set(a, addrs);
    return a;
  }
  unmap(bus: U64, length: number, dir: DmaDirection): void {
    const addrs = this.#inter.get(bus);
    if (!addrs) throw new DmaMapError("not-mapped", bus, length, this.name);
    let b: U64 = bus;
    for (let i = this.layers.length - 1; i >= 0; i--) {
      this.layers[i].unmap(b, length, dir);
      b = addrs[i];
    }
    this.#inter.delete(bus);
  }
  syncForCpu(): void {}
  syncForDevice(): void {}
  mapCoherent(gpa: number, length: number): U64 {
    const addrs: U64[] = [];
    let a: U64 = gpa;
    for (const l of this.layers) {
      addrs.push(a);
      a = l.mapCoherent(Number(a), length);
    }
    this.#inter.set(a, addrs);
    return a;
  }
  unmapCoherent(bus: U64, length: number): void {
    const addrs = this.#inter.get(bus);
    if (!addrs) throw new DmaMapError("not-mapped", bus, length, this.name);
    let b: U64 = bus;
    for (let i = this.layers.length - 1; i >= 0; i--) {
      this.layers[i].unmapCoherent(b, length);
      b = addrs[i];
    }
    this.#inter.delete(bus);
  }
}
