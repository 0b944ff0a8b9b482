/**
 * The driver side of virtio-iommu as a {@link DmaApi} mode, `virtio-iommu` (DMA_MODES.md M5 with
 * virtio-iommu MAP; Linux `drivers/iommu/virtio-iommu.c` behind `dma-iommu`):
 *
 * - `init()` PROBEs the endpoint (with `VIRTIO_IOMMU_F_PROBE`) to learn its RESV_MEM regions,
 *   then ATTACHes it to the driver's domain (spec §5.13.6.3, §5.13.6.7);
 * - IOVAs come from the same allocator dma-iommu uses for every IOMMU ({@link IovaAllocator},
 *   Linux `iova.c`: top-down below the limit, size-aligned), set up as `iommu_dma_init_domain`
 *   does for a virtio-iommu domain: the granule is the smallest page size in `page_size_mask`
 *   (spec §5.13.4), the allocatable window is `input_range` (spec §5.13.6.5.1, with
 *   `VIRTIO_IOMMU_F_INPUT_RANGE`) clipped to the device's DMA mask, never IOVA 0, and every
 *   RESV_MEM region PROBE reported is reserved (`iommu_get_resv_regions` -> `reserve_iova`; the
 *   driver SHOULD NOT map them, spec §5.13.6.8.2);
 * - `map` allocates a range for the granules covering the buffer (rounded up to a power of two
 *   below 32 granules, as `iommu_dma_alloc_iova`) and sends one MAP for exactly those granules
 *   (READ for `DMA_TO_DEVICE`, WRITE for `DMA_FROM_DEVICE`, both for `DMA_BIDIRECTIONAL`);
 *   `mapBatch` sends several MAPs with one kick;
 * - `unmap` sends one UNMAP for exactly the range that was mapped (never splitting a mapping,
 *   spec §5.13.6.6.1) and frees the IOVA range;
 * - any status other than OK, a used length of 0 or a broken requestq is a
 *   {@link DmaMapError} with reason `transport` (nothing is left half-done on the driver side).
 *
 * Syncs are no-ops (the IOMMU does not bounce) that only check that `[bus, bus + length)` lies
 * inside one live mapping, anywhere in it (Linux `dma_sync_single_for_*` takes any sub-range).
 *
 * Live mappings are the allocator's own ranges (sorted arrays, binary search; the mapped
 * granule count is the range's caller value `a`): no `Map` and no object per mapping.
 *
 * @module
 */

import { type U64, u64Compare } from "../../memory/u64.ts";
import { DmaMapError } from "../../dma/errors.ts";
import { DMA_FROM_DEVICE, DMA_TO_DEVICE, type DmaApi, type DmaDirection } from "../../dma/types.ts";
import {
  viommuStatusName,
  VIRTIO_IOMMU_F_INPUT_RANGE,
  VIRTIO_IOMMU_F_PROBE,
  VIRTIO_IOMMU_MAP_F_READ,
  VIRTIO_IOMMU_MAP_F_WRITE,
  VIRTIO_IOMMU_MAP_SIZE,
  VIRTIO_IOMMU_REQ_TAIL_SIZE,
  VIRTIO_IOMMU_S_OK,
  VIRTIO_IOMMU_T_ATTACH,
  VIRTIO_IOMMU_T_DETACH,
  VIRTIO_IOMMU_T_MAP,
  VIRTIO_IOMMU_T_PROBE,
  VIRTIO_IOMMU_T_UNMAP,
  VIRTIO_IOMMU_UNMAP_SIZE,
} from "./constants.ts";
import { viommuGranule, type VirtioIommuConfig } from "./config.ts";
import { encodeViommuRequest, type ViommuRequest, viommuTailSize } from "./requests.ts";
import { parseProbeProperties, type ViommuResvMem } from "./probe.ts";
import { IovaAllocator } from "../../dma/iova_allocator.ts";
import type { ViommuSubmission, ViommuTransport } from "./transport.ts";

/** Options of {@link VirtioIommuDmaApi}. */
export interface VirtioIommuDmaApiOptions {
  /** How requests reach the device. */
  transport: ViommuTransport;
  /** The device config as the driver read it (see `decodeViommuConfig`). */
  config: VirtioIommuConfig;
  /** Negotiated feature bits (bigint mask). */
  features: bigint;
  /** Endpoint ID of the device this API maps for. */
  endpoint: number;
  /** Domain ID the driver uses for it (default: `domain_range.start`). */
  domain?: number;
  /**
   * Highest IOVA the device can address (its DMA mask), default 2^48 - 1; the allocator also
   * stays inside `input_range` and below 2^53.
   */
  dmaMask?: number;
  /**
   * A long-lived mapping made once by `init` (READ|WRITE, page-rounded): buffers wholly inside
   * `[gpa, gpa + size)` map and unmap with no request at all (bus = window IOVA + offset), as a
   * driver with premapped buffers (or Linux's identity-mapped domains) does. Buffers outside it
   * take the per-buffer MAP/UNMAP path.
   */
  longLived?: { gpa: number; size: number };
}

/** Caller value `b` of an allocator range whose UNMAP failed: leaked, no longer live. */
const LEAKED = 1;

/** The `virtio-iommu` DMA API mode. Call {@link VirtioIommuDmaApi.init} before mapping. */
export class VirtioIommuDmaApi implements DmaApi {
  /** Mode name, `"virtio-iommu"`. */
  readonly name = "virtio-iommu";
  /** Endpoint ID. */
  readonly endpoint: number;
  /** Domain ID. */
  readonly domain: number;
  /** Mapping granule in bytes (lowest bit of `page_size_mask`). */
  readonly granule: number;
  /** RESV_MEM regions learned by PROBE (empty before `init` or without F_PROBE). */
  resvMem: readonly ViommuResvMem[] = [];
  /** MAP requests sent. */
  maps = 0;
  /** UNMAP requests sent. */
  unmaps = 0;
  /** Maps served by the long-lived window without a request. */
  windowMaps = 0;

  readonly #t: ViommuTransport;
  readonly #cfg: VirtioIommuConfig;
  readonly #features: bigint;
  readonly #dmaMask: number;
  #iova: IovaAllocator | null = null;
  /** Exclusive limit PFN (granules) of allocations: `input_range` end and DMA mask. */
  #limitPfn = 0;
  #liveCount = 0;
  // Result of #prepare: first GPA of the mapped granules and their count.
  #pBase = 0;
  #pPages = 0;
  readonly #tail = new Uint8Array(VIRTIO_IOMMU_REQ_TAIL_SIZE);
  readonly #mapBuf = new Uint8Array(VIRTIO_IOMMU_MAP_SIZE);
  readonly #mapView = new DataView(this.#mapBuf.buffer);
  readonly #unmapBuf = new Uint8Array(VIRTIO_IOMMU_UNMAP_SIZE);
  readonly #unmapView = new DataView(this.#unmapBuf.buffer);
  readonly #longLived: { gpa: number; size: number } | null;
  // The long-lived window: GPA range [#wGpa, #wGpaEnd) at IOVA #wIova; #wIova < 0 when none.
  #wGpa = 0;
  #wGpaEnd = 0;
  #wIova = -1;

  /**
   * Creates the mode (no request is sent until `init`).
   * @throws DmaMapError (`window`) when the granule is not usable (above 2^52).
   */
  constructor(opts: VirtioIommuDmaApiOptions) {
    this.#t = opts.transport;
    this.#cfg = opts.config;
    this.#features = opts.features;
    this.endpoint = opts.endpoint;
    this.domain = opts.domain ?? opts.config.domainStart;
    const g = viommuGranule(opts.config.pageSizeMask);
    if (typeof g !== "number" || g > 2 ** 52) {
      throw new DmaMapError("window", 0, 0, this.name, `granule ${g} too large`);
    }
    this.granule = g;
    this.#dmaMask = opts.dmaMask ?? 2 ** 48 - 1;
    this.#longLived = opts.longLived ?? null;
  }

  #has(bit: number): boolean {
    return (this.#features & (1n << BigInt(bit))) !== 0n;
  }

  /** Sends one request and checks its status. @throws DmaMapError (`transport`) */
  #send(req: ViommuRequest, what: string, address: U64, length: number): void {
    const s: ViommuSubmission = {
      readable: encodeViommuRequest(req),
      writable: this.#tail,
      used: 0,
    };
    this.#submit([s], address, length);
    this.#check(s, what, address, length);
  }

  #submit(batch: ViommuSubmission[], address: U64, length: number): void {
    try {
      this.#t.submit(batch);
    } catch (e) {
      throw new DmaMapError(
        "transport",
        address,
        length,
        this.name,
        `requestq failed: ${e instanceof Error ? e.message : String(e)}`,
      );
    }
  }

  #check(s: ViommuSubmission, what: string, address: U64, length: number): void {
    const w = s.writable;
    if (s.used === 0) {
      throw new DmaMapError("transport", address, length, this.name, `${what}: used length 0`);
    }
    const status = w[w.length - VIRTIO_IOMMU_REQ_TAIL_SIZE];
    if (status !== VIRTIO_IOMMU_S_OK) {
      throw new DmaMapError(
        "transport",
        address,
        length,
        this.name,
        `${what} answered ${viommuStatusName(status)}`,
      );
    }
  }

  /**
   * PROBE (when negotiated) then ATTACH the endpoint to the domain; sets up the IOVA allocator.
   * @throws DmaMapError (`transport`) when a request fails.
   */
  init(): void {
    if (this.#has(VIRTIO_IOMMU_F_PROBE)) {
      const w = new Uint8Array(viommuTailSize(VIRTIO_IOMMU_T_PROBE, this.#cfg.probeSize));
      const s: ViommuSubmission = {
        readable: encodeViommuRequest({ type: VIRTIO_IOMMU_T_PROBE, endpoint: this.endpoint }),
        writable: w,
        used: 0,
      };
      this.#submit([s], 0, 0);
      this.#check(s, "PROBE", 0, 0);
      // Spec §2.7.8.2: nothing beyond the first `used` bytes may be trusted, so a property is
      // read only when the device reported writing all of it.
      this.resvMem = parseProbeProperties(w.subarray(0, Math.min(this.#cfg.probeSize, s.used)));
    }
    const att: ViommuSubmission = {
      readable: encodeViommuRequest({
        type: VIRTIO_IOMMU_T_ATTACH,
        domain: this.domain,
        endpoint: this.endpoint,
        flags: 0,
      }),
      writable: new Uint8Array(viommuTailSize(VIRTIO_IOMMU_T_ATTACH, 0)),
      used: 0,
    };
    this.#submit([att], 0, 0);
    this.#check(att, "ATTACH", 0, 0);
    let low = 0, high = Math.min(this.#dmaMask, Number.MAX_SAFE_INTEGER);
    if (this.#has(VIRTIO_IOMMU_F_INPUT_RANGE)) {
      // Spec §5.13.6.5.1: with INPUT_RANGE the driver MUST stay inside input_range.
      if (u64Compare(this.#cfg.inputStart, low) > 0) low = Number(this.#cfg.inputStart);
      if (u64Compare(this.#cfg.inputEnd, high) < 0) high = Number(this.#cfg.inputEnd);
    }
    // Linux iommu_dma_init_domain: base_pfn = max(1, aperture_start >> order) (rounded up here,
    // so the first granule lies inside input_range); the limit is the last whole granule at or
    // below min(dma_mask, aperture_end). An empty window leaves every map iova-exhausted.
    const g = this.granule;
    low = Math.min(low, high + 1);
    const a = new IovaAllocator({ granule: g, startPfn: Math.max(1, Math.ceil(low / g)) });
    this.#limitPfn = Math.floor((high + 1) / g);
    // iova_reserve_iommu_regions: every RESV_MEM region (spec §5.13.6.8.2) is reserve_iova'd.
    for (const r of this.resvMem) {
      if (u64Compare(r.start, high) > 0) continue;
      a.reserveIova(Number(r.start), u64Compare(r.end, high) > 0 ? high : Number(r.end));
    }
    this.#iova = a;
    this.#liveCount = 0;
    if (this.#longLived !== null) {
      const { gpa, size } = this.#longLived;
      const pfn = this.#prepare(gpa, size);
      const iova = pfn * g, base = this.#pBase, bytes = this.#pPages * g;
      const s = this.#mapRequest(iova, bytes, base, 0);
      try {
        this.#submit([s], gpa, size);
        this.maps++;
        this.#check(s, "MAP (long-lived)", gpa, size);
      } catch (e) {
        a.free(pfn);
        throw e;
      }
      this.#liveCount++;
      this.#wGpa = base;
      this.#wGpaEnd = base + bytes;
      this.#wIova = iova;
    }
  }

  /** DETACH the endpoint (after unmapping nothing: the domain's mappings vanish with it). */
  detach(): void {
    this.#wIova = -1;
    this.#send(
      { type: VIRTIO_IOMMU_T_DETACH, domain: this.domain, endpoint: this.endpoint },
      "DETACH",
      0,
      0,
    );
    this.#liveCount = 0;
    this.#iova = null;
  }

  /** Live mappings the driver holds (the long-lived window counts as one). */
  get liveMappings(): number {
    return this.#liveCount;
  }

  #flags(dir: DmaDirection): number {
    return dir === DMA_TO_DEVICE
      ? VIRTIO_IOMMU_MAP_F_READ
      : dir === DMA_FROM_DEVICE
      ? VIRTIO_IOMMU_MAP_F_WRITE
      : VIRTIO_IOMMU_MAP_F_READ | VIRTIO_IOMMU_MAP_F_WRITE;
  }

  /**
   * Allocates the IOVA range for the granules covering `[gpa, gpa + length)`; sets `#pBase`
   * (their first GPA) and `#pPages` (their count, the caller value `a` of the range).
   * @returns the first PFN. @throws DmaMapError (`transport`, `window`, `iova-exhausted`)
   */
  #prepare(gpa: number, length: number): number {
    const a = this.#iova;
    if (a === null) throw new DmaMapError("transport", gpa, length, this.name, "init() not called");
    if (!Number.isSafeInteger(gpa) || gpa < 0 || !Number.isSafeInteger(length) || length <= 0) {
      throw new DmaMapError("window", gpa, length, this.name, "empty or invalid buffer");
    }
    const g = this.granule;
    const first = Math.floor(gpa / g);
    const pages = Math.ceil((gpa + length) / g) - first;
    // iommu_dma_alloc_iova: sizes below 32 granules are rounded up to a power of two.
    let len = pages;
    if (len < 32) {
      let p = 1;
      while (p < len) p *= 2;
      len = p;
    }
    const pfn = a.alloc(len, this.#limitPfn, pages, 0);
    if (pfn < 0) {
      throw new DmaMapError(
        "iova-exhausted",
        gpa,
        length,
        this.name,
        `no ${len * g}-byte IOVA range`,
      );
    }
    this.#pBase = first * g;
    this.#pPages = pages;
    return pfn;
  }

  #mapRequest(iova: number, size: number, gpaBase: number, dir: DmaDirection): ViommuSubmission {
    return {
      readable: encodeViommuRequest({
        type: VIRTIO_IOMMU_T_MAP,
        domain: this.domain,
        virtStart: iova,
        virtEnd: iova + size - 1,
        physStart: gpaBase,
        flags: this.#flags(dir),
      }),
      writable: new Uint8Array(viommuTailSize(VIRTIO_IOMMU_T_MAP, 0)),
      used: 0,
    };
  }

  /** Sends one request from a reusable buffer and checks the tail. @throws DmaMapError */
  #sendOne(readable: Uint8Array, what: string, address: U64, length: number): void {
    const tail = this.#tail;
    let used: number;
    try {
      used = this.#t.submitOne(readable, tail);
    } catch (e) {
      throw new DmaMapError(
        "transport",
        address,
        length,
        this.name,
        `requestq failed: ${e instanceof Error ? e.message : String(e)}`,
      );
    }
    if (used === 0 || tail[0] !== VIRTIO_IOMMU_S_OK) {
      throw new DmaMapError(
        "transport",
        address,
        length,
        this.name,
        used === 0 ? `${what}: used length 0` : `${what} answered ${viommuStatusName(tail[0])}`,
      );
    }
  }

  #mapOne(gpa: number, length: number, dir: DmaDirection): U64 {
    const pfn = this.#prepare(gpa, length);
    const g = this.granule, iova = pfn * g, base = this.#pBase;
    // MAP layout (spec §5.13.6.5): head, domain @4, virt_start @8, virt_end @16, phys_start @24,
    // flags @32; all values here are safe integers.
    const v = this.#mapView, end = iova + this.#pPages * g - 1;
    v.setUint32(0, VIRTIO_IOMMU_T_MAP, true);
    v.setUint32(4, this.domain, true);
    v.setUint32(8, iova >>> 0, true);
    v.setUint32(12, Math.floor(iova / 0x1_0000_0000), true);
    v.setUint32(16, end >>> 0, true);
    v.setUint32(20, Math.floor(end / 0x1_0000_0000), true);
    v.setUint32(24, base >>> 0, true);
    v.setUint32(28, Math.floor(base / 0x1_0000_0000), true);
    v.setUint32(32, this.#flags(dir), true);
    try {
      this.maps++;
      this.#sendOne(this.#mapBuf, "MAP", gpa, length);
    } catch (e) {
      this.#iova!.free(pfn);
      throw e;
    }
    this.#liveCount++;
    return iova + (gpa - base);
  }

  /**
   * See {@link DmaApi.map}. Inside the long-lived window: no request, allocation-free.
   * @throws DmaMapError (`iova-exhausted`, `window`, `transport`)
   */
  map(gpa: number, length: number, dir: DmaDirection): U64 {
    if (this.#wIova >= 0 && gpa >= this.#wGpa && gpa + length <= this.#wGpaEnd && length > 0) {
      this.windowMaps++;
      return this.#wIova + (gpa - this.#wGpa);
    }
    return this.#mapOne(gpa, length, dir);
  }

  /**
   * {@link DmaApi.mapNumber}: the long-lived window's IOVA for a buffer inside it; -1 (nothing
   * mapped) otherwise, so the caller's `map` sends the MAP request.
   */
  mapNumber(gpa: number, length: number, _dir: DmaDirection): number {
    if (this.#wIova >= 0 && gpa >= this.#wGpa && gpa + length <= this.#wGpaEnd && length > 0) {
      this.windowMaps++;
      return this.#wIova + (gpa - this.#wGpa);
    }
    return -1;
  }

  /** True when `[bus, bus + length)` lies in the long-lived window. */
  #inWindow(bus: U64, length: number): boolean {
    return this.#wIova >= 0 && typeof bus === "number" && bus >= this.#wIova &&
      bus + length <= this.#wIova + (this.#wGpaEnd - this.#wGpa);
  }

  /**
   * Maps several buffers with one kick (MAP requests batched on the requestq, as Linux queues
   * requests and syncs once). All or nothing: on any failure the ones that succeeded are
   * unmapped again and a {@link DmaMapError} is thrown.
   * @returns the bus address of each buffer, in order.
   */
  mapBatch(gpas: readonly number[], lengths: readonly number[], dir: DmaDirection): U64[] {
    const pfns: number[] = [], bases: number[] = [], pages: number[] = [];
    const free = () => {
      for (const pfn of pfns) this.#iova!.free(pfn);
    };
    try {
      for (let i = 0; i < gpas.length; i++) {
        pfns.push(this.#prepare(gpas[i], lengths[i]));
        bases.push(this.#pBase);
        pages.push(this.#pPages);
      }
    } catch (e) {
      free();
      throw e;
    }
    const g = this.granule;
    const batch = pfns.map((pfn, i) => this.#mapRequest(pfn * g, pages[i] * g, bases[i], dir));
    try {
      this.#submit(batch, gpas[0] ?? 0, lengths[0] ?? 0);
    } catch (e) {
      free();
      throw e;
    }
    this.maps += batch.length;
    let failed: DmaMapError | null = null;
    const ok: boolean[] = [];
    for (let i = 0; i < batch.length; i++) {
      try {
        this.#check(batch[i], "MAP", gpas[i], lengths[i]);
        this.#liveCount++;
        ok.push(true);
      } catch (e) {
        this.#iova!.free(pfns[i]);
        ok.push(false);
        failed ??= e as DmaMapError;
      }
    }
    if (failed !== null) {
      for (let i = 0; i < pfns.length; i++) {
        if (ok[i]) this.#unmapLive(this.#iova!.findStart(pfns[i]), pfns[i] * g, lengths[i]);
      }
      throw failed;
    }
    return pfns.map((pfn, i) => pfn * g + (gpas[i] - bases[i]));
  }

  /**
   * The allocator index of the live mapping holding all of `[bus, bus + length)`; with `head`,
   * `bus` must also lie in the mapping's first granule (the handle `map` returned, as unmap needs).
   * @throws DmaMapError (`not-mapped`)
   */
  #lookup(bus: U64, length: number, head: boolean): number {
    const a = this.#iova;
    if (typeof bus === "number" && a !== null) {
      const pfn = Math.floor(bus / this.granule);
      const i = a.findContaining(pfn);
      if (i >= 0 && a.dataB(i) !== LEAKED) {
        const lo = a.rangeLo(i);
        // The allocated range may be longer (power-of-two rounding) than the mapped granules.
        const end = (lo + a.dataA(i)) * this.granule;
        if (bus < end && bus + length <= end && (!head || pfn === lo)) return i;
      }
    }
    throw new DmaMapError("not-mapped", bus, length, this.name);
  }

  #unmapLive(i: number, bus: U64, length: number): void {
    const a = this.#iova!, g = this.granule;
    const pfn = a.rangeLo(i);
    const iova = pfn * g, end = iova + a.dataA(i) * g - 1;
    this.#liveCount--;
    this.unmaps++;
    // UNMAP layout (spec §5.13.6.6): head, domain @4, virt_start @8, virt_end @16, reserved @24.
    const v = this.#unmapView;
    v.setUint32(0, VIRTIO_IOMMU_T_UNMAP, true);
    v.setUint32(4, this.domain, true);
    v.setUint32(8, iova >>> 0, true);
    v.setUint32(12, Math.floor(iova / 0x1_0000_0000), true);
    v.setUint32(16, end >>> 0, true);
    v.setUint32(20, Math.floor(end / 0x1_0000_0000), true);
    try {
      this.#sendOne(this.#unmapBuf, "UNMAP", bus, length);
    } catch (e) {
      // When UNMAP fails the IOVA range stays allocated (leaked, never reused): the device may
      // still hold the mapping, and reusing it would make a later MAP overlap (INVAL).
      a.setDataB(i, LEAKED);
      throw e;
    }
    a.free(pfn);
  }

  /**
   * See {@link DmaApi.unmap}. Inside the long-lived window: nothing to do.
   * @throws DmaMapError (`not-mapped`, `transport`)
   */
  unmap(bus: U64, length: number, _dir: DmaDirection): void {
    if (this.#inWindow(bus, length)) return;
    this.#unmapLive(this.#lookup(bus, length, true), bus, length);
  }

  /**
   * Checks that `[bus, bus + length)` lies inside one live mapping, at any offset (no bounce to
   * copy; Linux `dma_sync_single_for_cpu` accepts any sub-range of a live mapping).
   * @throws DmaMapError (`not-mapped`) when it does not, or runs past the mapping's end.
   */
  syncForCpu(bus: U64, length: number, _dir: DmaDirection): void {
    if (!this.#inWindow(bus, length)) this.#lookup(bus, length, false);
  }

  /**
   * Checks that `[bus, bus + length)` lies inside one live mapping, at any offset (Linux
   * `dma_sync_single_for_device`). @throws DmaMapError (`not-mapped`) as `syncForCpu`.
   */
  syncForDevice(bus: U64, length: number, _dir: DmaDirection): void {
    if (!this.#inWindow(bus, length)) this.#lookup(bus, length, false);
  }

  /** See {@link DmaApi.mapCoherent}: a bidirectional mapping. @throws DmaMapError */
  mapCoherent(gpa: number, length: number): U64 {
    return this.#mapOne(gpa, length, 0);
  }

  /** See {@link DmaApi.unmapCoherent}. @throws DmaMapError (`not-mapped`, `transport`) */
  unmapCoherent(bus: U64, length: number): void {
    this.#unmapLive(this.#lookup(bus, length, true), bus, length);
  }
}
