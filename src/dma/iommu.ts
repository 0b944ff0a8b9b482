/**
 * A paged IOMMU (DMA_MODES.md M5/M6): domains with VT-d-format I/O page tables, one shared
 * {@link Iotlb}, reserved regions, and endpoints ({@link IommuAddressSpace}) attached to a domain.
 *
 * Device-side semantics, following QEMU's VT-d and virtio-iommu models (DMA_MODES.md §3.2, §3.3):
 * - a bus address at or beyond the IOVA width (39 or 48 bits) faults `out-of-window` (VT-d fault
 *   reason 4, ADDR_BEYOND_MGAW);
 * - a bus address inside a reserved region faults `reserved-region` (virtio-iommu RESV_MEM
 *   `RESERVED`; an MSI doorbell window is not memory either, so DMA to it faults too);
 * - a page not present faults `unmapped`; an access the entry does not allow faults `permission`
 *   (VT-d reasons 5 WRITE / 6 READ; virtio-iommu R_MAPPING);
 * - an endpoint attached to no domain faults `no-domain` unless bypass is on (virtio-iommu
 *   R_DOMAIN / bypass "translated using the identity function");
 * - an identity (pass-through) domain translates bus = GPA, but the IOMMU still checks the
 *   address: it must be guest RAM (virtio-iommu identity domains are built from MAPs of RAM),
 *   outside reserved regions and below the IOVA width.
 *
 * The driver side programs the IOMMU through {@link Iommu.map} / {@link Iommu.unmap} (page-table
 * updates, no implicit invalidation) and the `invalidate*` methods, so strict and lazy unmap
 * policies (see `iommu_api.ts`) decide when the IOTLB forgets a translation.
 *
 * @module
 */

import type { GuestMemory } from "../memory/guest_memory.ts";
import { hex64, type U64 } from "../memory/u64.ts";
import { type DmaAccess, DmaFault, DmaMapError } from "./errors.ts";
import { Iotlb } from "./iotlb.ts";
import { IO_PAGE_SIZES_ALL, IoPageTable, IoPageWalk } from "./page_table.ts";
import type { DmaAddressSpace, DmaTranslation } from "./types.ts";

const TWO_32 = 0x1_0000_0000;

/** A range of bus addresses the IOMMU never translates to memory (virtio-iommu RESV_MEM). */
export interface ReservedRegion {
  /** First bus address. */
  start: number;
  /** Last bus address, inclusive (as virtio-iommu's `end` and DMAR's RMRR limit). */
  end: number;
  /** `reserved` (RESV_MEM_T_RESERVED) or `msi` (RESV_MEM_T_MSI, the interrupt doorbell). */
  kind: "reserved" | "msi";
}

/** The x86 interrupt window 0xFEE00000-0xFEEFFFFF (VT-d; QEMU pc's virtio-iommu MSI region). */
export const X86_MSI_REGION: Readonly<ReservedRegion> = Object.freeze({
  start: 0xfee0_0000,
  end: 0xfeef_ffff,
  kind: "msi",
});

/** Options of an {@link Iommu}. */
export interface IommuOptions {
  /** Layer name used in faults, default `"iommu"`. */
  name?: string;
  /** IOTLB capacity in entries, default 1024 (QEMU VT-d). */
  iotlbCapacity?: number;
  /** Page-table levels: 3 (39-bit IOVAs) or 4 (48-bit, default). */
  levels?: 3 | 4;
  /** Supported leaf page sizes (mask of `IO_PAGE_4K` etc.), default 4 KiB, 2 MiB and 1 GiB. */
  pageSizes?: number;
  /** Reserved regions (default none). */
  reservedRegions?: readonly ReservedRegion[];
  /**
   * Take the fused IOTLB-miss path of the device's translate when it applies (default `true`).
   * It has exactly the general path's effect (same translations, faults, IOTLB contents and
   * counters); `false` keeps only the general path, for differential tests.
   */
  fastPath?: boolean;
}

/** Counters of an {@link Iommu} besides its IOTLB's. */
export interface IommuStats {
  /** Page-table walks (IOTLB misses that walked). */
  walks: number;
  /** Page-table entries read by walks (a walk-cost model). */
  walkEntries: number;
  /** Translation faults raised. */
  faults: number;
  /** Page-table map operations. */
  maps: number;
  /** Page-table unmap operations. */
  unmaps: number;
}

/** One IOMMU domain: an address space shared by the endpoints attached to it. */
export class IommuDomain {
  /** 16-bit domain ID (VT-d DID), the IOTLB tag. */
  readonly id: number;
  /** `paged`: translated by `table`; `identity`: pass-through (bus = GPA, still checked). */
  readonly kind: "paged" | "identity";
  /** The I/O page table (`null` for an identity domain). */
  readonly table: IoPageTable | null;
  /** Creates a domain (use {@link Iommu.createDomain}). */
  constructor(id: number, kind: "paged" | "identity", table: IoPageTable | null) {
    this.id = id;
    this.kind = kind;
    this.table = table;
  }
}

/** The IOMMU unit: domains, one IOTLB, reserved regions, statistics. */
export class Iommu {
  /** Layer name used in faults. */
  readonly name: string;
  /** Guest memory behind the IOMMU (identity domains check against its regions). */
  readonly memory: GuestMemory;
  /** The IOTLB shared by all domains. */
  readonly iotlb: Iotlb;
  /** Page-table levels of every domain. */
  readonly levels: 3 | 4;
  /** IOVA width in bits. */
  readonly addressWidth: number;
  /** One past the highest IOVA (`2 ** addressWidth`). */
  readonly iovaLimit: number;
  /** Supported leaf page sizes. */
  readonly pageSizes: number;
  /** Reserved regions, sorted by start. */
  readonly reservedRegions: readonly Readonly<ReservedRegion>[];
  /** Counters. */
  readonly stats: IommuStats = { walks: 0, walkEntries: 0, faults: 0, maps: 0, unmaps: 0 };
  readonly #resvStart: Float64Array;
  readonly #resvEnd: Float64Array; // exclusive
  readonly #resvMin: number; // lowest reserved start (Infinity when none)
  readonly #resvMax: number; // highest reserved end, exclusive (-Infinity when none)
  readonly #resvLoPfn: number; // first 4 KiB page a reserved region touches (Infinity: none)
  readonly #resvHiPfn: number; // one past the last such page
  readonly #limitPfn: number; // iovaLimit / 4096
  readonly #domains = new Map<number, IommuDomain>();
  #nextDomain = 1;
  readonly #walk = new IoPageWalk();
  readonly #fast: boolean;

  /**
   * Creates an IOMMU in front of `memory`.
   * @throws RangeError for bad options (levels, IOTLB capacity, a reserved region with end < start).
   */
  constructor(memory: GuestMemory, options: IommuOptions = {}) {
    this.memory = memory;
    this.name = options.name ?? "iommu";
    this.iotlb = new Iotlb(options.iotlbCapacity ?? 1024);
    this.levels = options.levels ?? 4;
    if (this.levels !== 3 && this.levels !== 4) throw new RangeError("levels must be 3 or 4");
    this.addressWidth = 12 + 9 * this.levels;
    this.iovaLimit = 2 ** this.addressWidth;
    this.pageSizes = options.pageSizes ?? IO_PAGE_SIZES_ALL;
    const resv = [...(options.reservedRegions ?? [])].sort((a, b) => a.start - b.start);
    for (const r of resv) {
      if (!(r.end >= r.start) || !Number.isSafeInteger(r.start) || !Number.isSafeInteger(r.end)) {
        throw new RangeError(`reserved region ${hex64(r.start)}..${r.end} is invalid`);
      }
    }
    this.reservedRegions = Object.freeze(resv.map((r) => Object.freeze({ ...r })));
    this.#resvStart = Float64Array.from(resv, (r) => r.start);
    this.#resvEnd = Float64Array.from(resv, (r) => r.end + 1);
    this.#resvMin = resv.length ? Math.min(...resv.map((r) => r.start)) : Infinity;
    this.#resvMax = resv.length ? Math.max(...resv.map((r) => r.end + 1)) : -Infinity;
    this.#resvLoPfn = resv.length ? Math.floor(this.#resvMin / 4096) : Infinity;
    this.#resvHiPfn = resv.length ? Math.ceil(this.#resvMax / 4096) : Infinity;
    this.#limitPfn = this.iovaLimit / 4096;
    this.#fast = options.fastPath ?? true;
  }

  /**
   * Creates a domain.
   * @param kind `paged` (default) or `identity` (pass-through).
   * @param id 16-bit domain ID; default the next free one.
   * @throws RangeError when the ID is in use or not a 16-bit integer.
   */
  createDomain(kind: "paged" | "identity" = "paged", id?: number): IommuDomain {
    let did = id;
    if (did === undefined) {
      while (this.#domains.has(this.#nextDomain)) {
        this.#nextDomain = (this.#nextDomain + 1) & 0xffff;
      }
      did = this.#nextDomain;
    }
    if (!Number.isInteger(did) || did < 0 || did > 0xffff || this.#domains.has(did)) {
      throw new RangeError(`domain ID ${did} is not a free 16-bit ID`);
    }
    const d = new IommuDomain(
      did,
      kind,
      kind === "paged" ? new IoPageTable(this.levels, this.pageSizes) : null,
    );
    this.#domains.set(did, d);
    return d;
  }

  /** Destroys a domain and invalidates its IOTLB entries. */
  destroyDomain(domain: IommuDomain): void {
    this.#domains.delete(domain.id);
    this.iotlb.invalidateDomain(domain.id);
  }

  /** The domain with ID `id`, if any. */
  domain(id: number): IommuDomain | undefined {
    return this.#domains.get(id);
  }

  /**
   * An endpoint (one device's view) attached to `domain`, or unattached (`null`).
   * @param bypass when unattached: identity (`true`) or fault `no-domain` (`false`, default).
   */
  endpoint(domain: IommuDomain | null, bypass = false): IommuAddressSpace {
    return new IommuAddressSpace(this, domain, bypass);
  }

  /**
   * Programs the page table of a paged domain (no IOTLB invalidation: mapping a not-present
   * page needs none, as the IOTLB caches only present entries).
   * @param perm `IOPTE_READ` | `IOPTE_WRITE`.
   * @throws DmaMapError (`misaligned`, `mask`, `overlap`, `reserved-region` when the range
   * touches a reserved region).
   */
  map(domain: IommuDomain, iova: number, gpa: number, size: number, perm: number): void {
    if (domain.table === null) throw new RangeError(`domain ${domain.id} is not paged`);
    if (this.overlapsReserved(iova, size)) {
      throw new DmaMapError("reserved-region", iova, size, this.name, "IOVA range is reserved");
    }
    this.stats.maps++;
    domain.table.map(iova, gpa, size, perm);
  }

  /**
   * {@link Iommu.map} of `pages` 4 KiB pages from page number `pfn` to `gpa` (one page by page
   * number: the call boxes nothing). Same checks and errors as `map`.
   * @throws DmaMapError as `map`; RangeError for a domain that is not paged.
   */
  mapPages(domain: IommuDomain, pfn: number, gpa: number, pages: number, perm: number): void {
    if (pages !== 1) {
      this.map(domain, pfn * 4096, gpa, pages * 4096, perm);
      return;
    }
    if (domain.table === null) throw new RangeError(`domain ${domain.id} is not paged`);
    // a page outside every page a reserved region touches needs no scan (nor a boxed IOVA)
    if (
      (pfn >= this.#resvLoPfn && pfn < this.#resvHiPfn) && this.overlapsReserved(pfn * 4096, 4096)
    ) {
      const iova = pfn * 4096;
      throw new DmaMapError("reserved-region", iova, 4096, this.name, "IOVA range is reserved");
    }
    this.stats.maps++;
    domain.table.mapPage(pfn, gpa, perm);
  }

  /**
   * {@link Iommu.unmap} of `pages` 4 KiB pages from page number `pfn` (one page by page number:
   * the call boxes nothing).
   * @returns bytes unmapped.
   */
  unmapPages(domain: IommuDomain, pfn: number, pages: number): number {
    if (domain.table === null) throw new RangeError(`domain ${domain.id} is not paged`);
    this.stats.unmaps++;
    return pages === 1 ? domain.table.unmapPage(pfn) : domain.table.unmap(pfn * 4096, pages * 4096);
  }
  /**
   * Clears page-table entries of a paged domain. Does **not** invalidate the IOTLB: the caller
   * does that now (strict) or later (lazy, flush queue).
   * @returns bytes unmapped.
   */
  unmap(domain: IommuDomain, iova: number, size: number): number {
    if (domain.table === null) throw new RangeError(`domain ${domain.id} is not paged`);
    this.stats.unmaps++;
    return domain.table.unmap(iova, size);
  }

  /** True when `[start, start + size)` overlaps a reserved region. */
  overlapsReserved(start: number, size: number): boolean {
    for (let i = 0; i < this.#resvStart.length; i++) {
      if (start < this.#resvEnd[i] && this.#resvStart[i] < start + size) return true;
    }
    return false;
  }

  /**
   * Translates for an endpoint attached to `domain` (the device's hot path). On an IOTLB hit this
   * allocates nothing and touches only typed arrays.
   * @throws DmaFault (`out-of-window`, `reserved-region`, `unmapped`, `permission`).
   */
  translate(
    domain: IommuDomain,
    bus: U64,
    length: number,
    access: DmaAccess,
    out: DmaTranslation,
  ): void {
    if (typeof bus !== "number" || bus >= this.iovaLimit) this.#beyondWidth(bus, length, access);
    const pfn = Math.floor(bus / 4096);
    this.translatePage(domain, pfn, bus - pfn * 4096, length, access, out);
  }

  /**
   * {@link Iommu.translate} with the bus address given as a 4 KiB page number and an offset in
   * the page (`bus = pfn * 4096 + offset`), the allocation-free form: both are small integers for
   * IOVAs below 4 TiB, so no heap number is boxed on an IOTLB hit even for IOVAs >= 2^31.
   * @throws DmaFault (`out-of-window`, `reserved-region`, `unmapped`, `permission`).
   */
  translatePage(
    domain: IommuDomain,
    pfn: number,
    offset: number,
    length: number,
    access: DmaAccess,
    out: DmaTranslation,
  ): void {
    // IOTLB front-cache hit (the hot path, small enough for V8 to inline): an access inside one
    // 4 KiB page below the IOVA width and outside every page a reserved region touches, whose
    // cached entry allows it. Anything else takes the full path, which re-checks everything.
    const tlb = this.iotlb;
    if (
      offset + length <= 4096 && pfn < this.#limitPfn &&
      (pfn < this.#resvLoPfn || pfn >= this.#resvHiPfn)
    ) {
      if (tlb.probeFront(domain.id, pfn)) {
        if ((access & ~tlb.hitPerm) === 0) {
          tlb.stats.hits++;
          out.gpa = tlb.hitGpa + offset;
          out.length = length;
          return;
        }
      } else if (domain.table !== null) {
        this.#translateInPage(domain, domain.table, pfn, offset, length, access, out);
        return;
      }
    }
    this.#translatePageFull(domain, pfn, offset, length, access, out);
  }

  // #translatePageFull for an access inside one 4 KiB page, below the IOVA width and outside
  // every page a reserved region touches, of a paged domain, whose front-cache probe missed:
  // nothing to clip, and whatever page maps it holds the whole access (no #extend).
  #translateInPage(
    domain: IommuDomain,
    table: IoPageTable,
    pfn: number,
    offset: number,
    length: number,
    access: DmaAccess,
    out: DmaTranslation,
  ): void {
    const tlb = this.iotlb;
    if (this.#fast) {
      // Fused 4 KiB miss: one IOTLB probe, the cached level-1 entry, the insert into the slot the
      // probe ended on. Each step does exactly what the general step does (same counters and
      // IOTLB contents), or changes nothing and hands over to it.
      const slot = tlb.missSlot(domain.id, pfn);
      if (slot >= 0) {
        const w = this.#walk;
        if (table.walkPageCached(pfn, w)) {
          this.stats.walks++;
          this.stats.walkEntries += w.entriesRead;
          const perm = w.perm;
          tlb.insertPageAt(slot, domain.id, pfn, w.pageGpa, perm);
          if ((access & ~perm) !== 0) {
            this.#permissionFault(pfn * 4096 + offset, length, access, perm);
          }
          out.gpa = w.pageGpa + offset;
          out.length = length;
          return;
        }
      } else if (slot === -2) {
        const perm = tlb.hitPerm;
        if ((access & ~perm) !== 0) {
          this.#permissionFault(pfn * 4096 + offset, length, access, perm);
        }
        out.gpa = tlb.hitGpa + offset;
        out.length = length;
        return;
      }
    }
    let base: number, size: number, perm: number;
    if (tlb.lookupPageBehindFront(domain.id, pfn)) {
      base = tlb.hitGpa;
      size = tlb.hitSize;
      perm = tlb.hitPerm;
    } else {
      const w = this.#miss(domain, table, pfn, offset, length, access);
      base = w.pageGpa;
      size = w.pageSize;
      perm = w.perm;
    }
    if ((access & ~perm) !== 0) this.#permissionFault(pfn * 4096 + offset, length, access, perm);
    out.gpa = base + (size === 4096 ? offset : ((pfn & (size / 4096 - 1)) * 4096) + offset);
    out.length = length;
  }

  #translatePageFull(
    domain: IommuDomain,
    pfn: number,
    offset: number,
    length: number,
    access: DmaAccess,
    out: DmaTranslation,
  ): void {
    // Every fault and the walk live in cold helpers.
    const bus = pfn * 4096 + offset;
    if (bus >= this.iovaLimit) this.#beyondWidth(bus, length, access);
    let want = length;
    if (bus + want > this.iovaLimit) want = this.iovaLimit - bus;
    if (bus < this.#resvMax && bus + want > this.#resvMin) {
      want = this.#clipReserved(bus, want, length, access);
    }
    const table = domain.table;
    if (table === null) {
      this.#identity(bus, want, length, access, out);
      return;
    }
    const tlb = this.iotlb;
    let base: number, size: number, perm: number;
    if (tlb.lookupPage(domain.id, pfn)) {
      base = tlb.hitGpa;
      size = tlb.hitSize;
      perm = tlb.hitPerm;
    } else {
      const w = this.#miss(domain, table, pfn, offset, length, access);
      base = w.pageGpa;
      size = w.pageSize;
      perm = w.perm;
    }
    if ((access & ~perm) !== 0) this.#permissionFault(bus, length, access, perm);
    // offset inside the (possibly large) page, from the small page number: no 2^31 overflow
    const inPage = size === 4096 ? offset : ((pfn & (size / 4096 - 1)) * 4096) + offset;
    const room = size - inPage;
    out.gpa = base + inPage;
    if (room >= want) {
      out.length = want;
      return;
    }
    out.length = this.#extend(domain, bus - inPage + size, base + size, room, want, access);
  }

  // IOTLB miss: walk the table, cache the result, or fault `unmapped`.
  // The IOTLB miss: a walk and an insert, by page number (no IOVA >= 2^31 passed around).
  #miss(
    domain: IommuDomain,
    table: IoPageTable,
    pfn: number,
    offset: number,
    length: number,
    access: DmaAccess,
  ): IoPageWalk {
    const w = this.#walk;
    const ok = table.walkPage(pfn, w);
    this.stats.walks++;
    this.stats.walkEntries += w.entriesRead;
    if (!ok) {
      this.stats.faults++;
      const bus = pfn * 4096 + offset;
      throw new DmaFault("unmapped", bus, length, access, this.name, "I/O page not present");
    }
    if (w.level === 1) this.iotlb.insertPage(domain.id, pfn, w.pageGpa, w.perm);
    else this.iotlb.insert(domain.id, pfn * 4096, w.level, w.pageGpa, w.perm);
    return w;
  }

  /**
   * {@link Iommu.mapPages} of one page, fused for dma-iommu's common case: a paged domain, a page
   * outside every page a reserved region touches, whose entry in the table's cached level-1 table
   * is free ({@link IoPageTable.mapPageCached}). Then the entry is set and counted exactly as
   * `mapPages` would and `true` is returned; otherwise nothing changes (`false`: call `mapPages`).
   * `gpa` must be a 4 KiB-aligned safe integer >= 0 (as for the table's `mapPageCached`).
   */
  mapPageCached(domain: IommuDomain, pfn: number, gpa: number, perm: number): boolean {
    const t = domain.table;
    if (t === null || (pfn >= this.#resvLoPfn && pfn < this.#resvHiPfn)) return false;
    if (!t.mapPageCached(pfn, gpa, perm)) return false;
    this.stats.maps++;
    return true;
  }

  /**
   * {@link Iommu.unmapPages} of one page, fused for dma-iommu's common case
   * ({@link IoPageTable.unmapPageCached}): `true` when done and counted exactly as `unmapPages`
   * would; otherwise nothing changes (`false`: call `unmapPages`).
   */
  unmapPageCached(domain: IommuDomain, pfn: number): boolean {
    const t = domain.table;
    if (t === null || !t.unmapPageCached(pfn)) return false;
    this.stats.unmaps++;
    return true;
  }

  #beyondWidth(bus: U64, length: number, access: DmaAccess): never {
    this.stats.faults++;
    throw new DmaFault(
      "out-of-window",
      bus,
      length,
      access,
      this.name,
      `beyond the ${this.addressWidth}-bit IOVA width`,
    );
  }

  #permissionFault(bus: number, length: number, access: DmaAccess, perm: number): never {
    this.stats.faults++;
    throw new DmaFault(
      "permission",
      bus,
      length,
      access,
      this.name,
      `entry allows ${perm & 1 ? "R" : "-"}${perm & 2 ? "W" : "-"}`,
    );
  }

  // Longest contiguous prefix beyond the first page: follows pages while they translate to the
  // next GPA with the needed permission. Stops silently (the caller's next call faults).
  #extend(
    domain: IommuDomain,
    nextBus: number,
    nextGpa: number,
    got: number,
    want: number,
    access: DmaAccess,
  ): number {
    const tlb = this.iotlb;
    const table = domain.table!;
    while (got < want) {
      let base: number, size: number, perm: number;
      if (tlb.lookup(domain.id, nextBus)) {
        base = tlb.hitGpa;
        size = tlb.hitSize;
        perm = tlb.hitPerm;
      } else {
        const w = this.#walk;
        const ok = table.walk(nextBus, w);
        this.stats.walks++;
        this.stats.walkEntries += w.entriesRead;
        if (!ok) break;
        base = w.pageGpa;
        size = w.pageSize;
        perm = w.perm;
        tlb.insert(domain.id, nextBus, w.level, base, perm);
      }
      const inPage = (nextBus >>> 0) & (size - 1); // 0 unless a large page starts mid-way
      if ((access & ~perm) !== 0 || base + inPage !== nextGpa) break;
      const room = size - inPage;
      got += room;
      nextBus += room;
      nextGpa += room;
    }
    return got < want ? got : want;
  }

  #clipReserved(bus: number, want: number, length: number, access: DmaAccess): number {
    for (let i = 0; i < this.#resvStart.length; i++) {
      const s = this.#resvStart[i], e = this.#resvEnd[i];
      if (bus >= s && bus < e) {
        this.stats.faults++;
        throw new DmaFault(
          "reserved-region",
          bus,
          length,
          access,
          this.name,
          `reserved ${hex64(s)}..${hex64(e - 1)}`,
        );
      }
      if (s > bus && s - bus < want) want = s - bus;
    }
    return want;
  }

  #identity(bus: number, want: number, length: number, access: DmaAccess, out: DmaTranslation) {
    const r = this.memory.regionAt(bus);
    if (r === undefined) {
      this.stats.faults++;
      throw new DmaFault("unmapped", bus, length, access, this.name, "identity domain: not RAM");
    }
    out.gpa = bus;
    out.length = r.end - bus < want ? r.end - bus : want;
  }
}

/**
 * One endpoint's view of an {@link Iommu}: the device's {@link DmaAddressSpace} when it sits
 * behind the IOMMU (ACCESS_PLATFORM negotiated). Attach/detach switch its domain.
 */
export class IommuAddressSpace implements DmaAddressSpace {
  /** Layer name (the IOMMU's). */
  readonly name: string;
  /** The IOMMU. */
  readonly iommu: Iommu;
  /** The attached domain, or `null`. */
  domain: IommuDomain | null;
  /** When unattached: identity (`true`) or `no-domain` faults (`false`). */
  bypass: boolean;

  /** Creates an endpoint (use {@link Iommu.endpoint}). */
  constructor(iommu: Iommu, domain: IommuDomain | null, bypass: boolean) {
    this.iommu = iommu;
    this.name = iommu.name;
    this.domain = domain;
    this.bypass = bypass;
  }

  /**
   * See {@link DmaAddressSpace.translate}.
   * @throws DmaFault (`out-of-window`, `reserved-region`, `unmapped`, `permission`, `no-domain`)
   */
  translate(bus: U64, length: number, access: DmaAccess, out: DmaTranslation): void {
    const d = this.domain;
    if (d !== null && typeof bus === "number") {
      // page number + offset: small integers, so this call boxes nothing (see translatePage);
      // below 2^32 (the common case) they come from integer shifts instead of a division
      if (bus >= 0 && bus < TWO_32) {
        this.iommu.translatePage(d, bus >>> 12, bus & 0xfff, length, access, out);
        return;
      }
      const pfn = Math.floor(bus / 4096);
      this.iommu.translatePage(d, pfn, bus - pfn * 4096, length, access, out);
    } else this.#slow(bus, length, access, out);
  }

  // bigint bus addresses (always out of the IOVA width) and unattached endpoints.
  #slow(bus: U64, length: number, access: DmaAccess, out: DmaTranslation): void {
    const d = this.domain;
    if (d !== null) {
      this.iommu.translate(d, bus, length, access, out);
      return;
    }
    if (!this.bypass) {
      this.iommu.stats.faults++;
      throw new DmaFault("no-domain", bus, length, access, this.name, "endpoint not attached");
    }
    if (typeof bus !== "number" || bus + length > 2 ** 52) {
      throw new DmaFault("out-of-window", bus, length, access, this.name, "bypass: beyond 2^52");
    }
    out.gpa = bus;
    out.length = length;
  }
}
