/**
 * The one assembly of DMA layers: from a **description** (plain data: the driver's layers in
 * mapping order, the device's layers in translation order, the IOMMU units they share) to a
 * consistent driver view ({@link DmaApi}) and device view ({@link DmaAddressSpace}) over one
 * {@link GuestMemory}. {@link createDmaMode} describes each DMA mode with it; the platform
 * resolver (`src/platform/assembly.ts`) describes each device of a topology with it, adding its
 * own layers (virtio-iommu, Xen grants) as `api` / `space` layers built by a callback.
 *
 * One IOMMU unit serves both sides: the driver's dma-iommu layer maps into the unit's paged
 * domain, and a device layer in state `paged` translates through that same domain.
 *
 * @module
 */

import type { GuestMemory } from "../memory/guest_memory.ts";
import type { U64 } from "../memory/u64.ts";
import { StackedAddressSpace, WindowOrAddressSpace } from "./compose.ts";
import { ConfidentialAddressSpace } from "./confidential.ts";
import { DirectDmaApi, type ReversibleDmaApi } from "./direct_api.ts";
import { FallbackDmaApi } from "./fallback_api.ts";
import { IdentityAddressSpace, RawGpaDmaApi } from "./identity.ts";
import { Iommu, type IommuDomain, type ReservedRegion } from "./iommu.ts";
import { IommuDmaApi, type IommuDmaApiOptions } from "./iommu_api.ts";
import { SwiotlbDmaApi } from "./swiotlb.ts";
import type { DmaAddressSpace, DmaApi, DmaDirection } from "./types.ts";
import { type DmaWindow, type DmaWindowTable, WindowAddressSpace } from "./window.ts";

/** An IOMMU unit shared by driver and device layers (see {@link DmaAssemblySpec.units}). */
export interface IommuUnitSpec {
  /** Layer name used in faults (`"vt-d"`, `"iommu"`). */
  name: string;
  /** Reserved regions (default none). */
  reservedRegions?: readonly ReservedRegion[];
  /** IOTLB capacity in entries (default the {@link Iommu}'s). */
  iotlbCapacity?: number;
  /** Page-table levels (default the {@link Iommu}'s). */
  levels?: 3 | 4;
}

/** dma-direct, optionally through `dma-ranges` windows (M1, M2). */
export interface DirectLayerSpec {
  /** Kind. */
  kind: "direct";
  /** Layer name (default `"direct"`). */
  name?: string;
  /** DMA mask. */
  mask?: U64;
  /** Windows (a shared {@link DmaWindowTable} keeps driver and device on one table). */
  windows?: readonly DmaWindow[] | DmaWindowTable;
  /** Give the API the guest memory (mask checks against RAM, syncs), default `true`. */
  memory?: boolean;
}

/**
 * dma-iommu mapping into unit `unit`'s paged domain (M5): the {@link IommuDmaApi} options but the
 * IOMMU and domain, which the assembly supplies.
 */
export interface IommuLayerSpec extends Omit<IommuDmaApiOptions, "iommu" | "domain"> {
  /** Kind. */
  kind: "iommu";
  /** Key in {@link DmaAssemblySpec.units}. */
  unit: string;
}

/**
 * One driver layer, in mapping order (GPA first). A `bounce` layer bounces into a pool and maps
 * the slot through the layer after it; every other kind produces bus addresses itself.
 */
export type DriverDmaLayerSpec =
  | { kind: "raw-gpa" }
  | DirectLayerSpec
  | IommuLayerSpec
  | { kind: "fallback"; name: string; first: DirectLayerSpec; second: IommuLayerSpec }
  | { kind: "bounce"; name: string; poolGpa: number; poolSize: number }
  | { kind: "api"; make: () => DmaApi };

/** One device layer, in translation order (bus address first). */
export type DeviceDmaLayerSpec =
  | { kind: "identity"; name?: string }
  | { kind: "window"; windows: readonly DmaWindow[] | DmaWindowTable; name?: string }
  | {
    kind: "iommu";
    unit: string;
    /** `paged`: the unit's shared paged domain; `identity`: a new identity domain; `blocked`. */
    domain: "paged" | "identity" | "blocked";
    /** Bus ranges that bypass the IOMMU through a direct window (alpha, POWER DDW). */
    window?: { windows: DmaWindowTable; name?: string };
  }
  | { kind: "confidential"; inner: DeviceDmaLayerSpec; name?: string }
  | { kind: "space"; make: () => DmaAddressSpace };

/** The description {@link assembleDma} builds. */
export interface DmaAssemblySpec {
  /** IOMMU units by key, created on first use. */
  units?: Readonly<Record<string, IommuUnitSpec>>;
  /** Driver layers, GPA -> bus address (at most one `bounce`, first). */
  driver: readonly DriverDmaLayerSpec[];
  /** Device layers, bus address -> GPA; several are stacked. */
  device: readonly DeviceDmaLayerSpec[];
  /** Wraps each built device layer before stacking (e.g. to back the GPAs it produces). */
  wrapDeviceLayer?: (layer: DmaAddressSpace) => DmaAddressSpace;
}

/** One IOMMU unit as assembled. */
export interface AssembledIommu {
  /** The model. */
  iommu: Iommu;
  /** Its paged domain (shared by both sides), once a layer used it. */
  paged: IommuDomain | null;
  /** The driver's dma-iommu API over it, if a driver layer maps into it. */
  api: IommuDmaApi | null;
  /** The domain of the last endpoint a device layer attached, if any. */
  endpointDomain: IommuDomain | null;
}

/** The assembled views. */
export interface DmaAssembly {
  /** The driver's API (the bounce layer when there is one). */
  api: DmaApi;
  /** The API below the bounce layer (or `api` itself). */
  base: DmaApi;
  /** The bounce layer, or `null`. */
  bounce: SwiotlbDmaApi | null;
  /** Device layers as built (and wrapped), bus first. */
  spaceLayers: DmaAddressSpace[];
  /** The composed device view. */
  space: DmaAddressSpace;
  /** IOMMU units by key. */
  units: Map<string, AssembledIommu>;
}

/**
 * Builds the driver and device views a {@link DmaAssemblySpec} describes over `memory`: driver
 * layers from the bus end up (the bounce layer last, over the layer below it), then device
 * layers in order, stacked as `a > b`.
 * @throws RangeError for a layer naming an undeclared IOMMU unit, and as the layers' constructors.
 */
export function assembleDma(memory: GuestMemory, spec: DmaAssemblySpec): DmaAssembly {
  const units = new Map<string, AssembledIommu>();
  const unit = (key: string): AssembledIommu => {
    let u = units.get(key);
    if (!u) {
      const s = spec.units?.[key];
      if (!s) throw new RangeError(`DMA assembly: no IOMMU unit "${key}" in units`);
      const iommu = new Iommu(memory, {
        name: s.name,
        iotlbCapacity: s.iotlbCapacity,
        levels: s.levels,
        reservedRegions: s.reservedRegions,
      });
      u = { iommu, paged: null, api: null, endpointDomain: null };
      units.set(key, u);
    }
    return u;
  };
  const paged = (u: AssembledIommu) => (u.paged ??= u.iommu.createDomain("paged"));
  const driverPart = assembleDriver(memory, spec.driver, unit, paged);
  const built = spec.device.map((l) => deviceLayer(memory, l, unit, paged));
  const spaceLayers = spec.wrapDeviceLayer ? built.map(spec.wrapDeviceLayer) : built;
  if (spaceLayers.length === 0) throw new RangeError("DMA assembly: no device layer");
  const space = spaceLayers.reduce(
    (a: DmaAddressSpace | null, l) =>
      a === null ? l : new StackedAddressSpace(a, l, `${a.name} > ${l.name}`),
    null,
  )!;
  return { ...driverPart, spaceLayers, space, units };
}

type UnitOf = (key: string) => AssembledIommu;
type PagedOf = (u: AssembledIommu) => IommuDomain;

function assembleDriver(
  memory: GuestMemory,
  layers: readonly DriverDmaLayerSpec[],
  unit: UnitOf,
  paged: PagedOf,
): { api: DmaApi; base: DmaApi; bounce: SwiotlbDmaApi | null } {
  const direct = (l: DirectLayerSpec) =>
    new DirectDmaApi({
      name: l.name,
      mask: l.mask,
      windows: l.windows,
      memory: l.memory === false ? undefined : memory,
    });
  const iommuApi = (l: IommuLayerSpec) => {
    const u = unit(l.unit);
    u.api = new IommuDmaApi({
      iommu: u.iommu,
      domain: paged(u),
      policy: l.policy,
      name: l.name,
      mask: l.mask,
      sacFirst: l.sacFirst,
      fqSize: l.fqSize,
      fqTimeoutMs: l.fqTimeoutMs,
      clock: l.clock,
    });
    return u.api;
  };
  let bounce: SwiotlbDmaApi | null = null;
  let base: DmaApi = new RawGpaDmaApi();
  for (const l of [...layers].reverse()) {
    switch (l.kind) {
      case "raw-gpa":
        base = new RawGpaDmaApi();
        break;
      case "direct":
        base = direct(l);
        break;
      case "iommu":
        base = iommuApi(l);
        break;
      case "fallback":
        base = new FallbackDmaApi(direct(l.first), iommuApi(l.second), l.name);
        break;
      case "api":
        base = l.make();
        break;
      case "bounce":
        bounce = new SwiotlbDmaApi({
          memory,
          poolGpa: l.poolGpa,
          poolSize: l.poolSize,
          inner: isReversible(base) ? base : new ReversibleAdapter(base),
          name: l.name,
        });
        break;
    }
  }
  return { api: bounce ?? base, base, bounce };
}

function deviceLayer(
  memory: GuestMemory,
  l: DeviceDmaLayerSpec,
  unit: UnitOf,
  paged: PagedOf,
): DmaAddressSpace {
  switch (l.kind) {
    case "identity":
      return new IdentityAddressSpace(l.name);
    case "window":
      return new WindowAddressSpace(l.windows, l.name);
    case "confidential":
      return new ConfidentialAddressSpace(
        deviceLayer(memory, l.inner, unit, paged),
        memory,
        l.name,
      );
    case "space":
      return l.make();
    case "iommu": {
      const u = unit(l.unit);
      if (l.domain === "blocked") {
        u.endpointDomain = null;
        return u.iommu.endpoint(null, false);
      }
      const domain = l.domain === "paged" ? paged(u) : u.iommu.createDomain("identity");
      u.endpointDomain = domain;
      const ep = u.iommu.endpoint(domain);
      return l.window ? new WindowOrAddressSpace(l.window.windows, ep, l.window.name) : ep;
    }
  }
}

const isReversible = (a: DmaApi): a is ReversibleDmaApi =>
  typeof (a as Partial<ReversibleDmaApi>).busToGpa === "function";

/**
 * Wraps a driver API that cannot reverse its mappings (a paravirtual IOMMU driver) so that
 * swiotlb can use it as its inner API: remembers each live mapping's GPA.
 */
class ReversibleAdapter implements ReversibleDmaApi {
  /** The inner API's name. */
  readonly name: string;
  readonly #live = new Map<U64, { gpa: number; len: number }>();
  /** Wraps `inner`. */
  constructor(readonly inner: DmaApi) {
    this.name = inner.name;
  }
  /** See {@link DmaApi.map}. */
  map(gpa: number, length: number, dir: DmaDirection): U64 {
    const b = this.inner.map(gpa, length, dir);
    this.#live.set(b, { gpa, len: length });
    return b;
  }
  /** See {@link DmaApi.unmap}. */
  unmap(bus: U64, length: number, dir: DmaDirection): void {
    this.inner.unmap(bus, length, dir);
    this.#live.delete(bus);
  }
  /** See {@link DmaApi.syncForCpu}. */
  syncForCpu(bus: U64, length: number, dir: DmaDirection): void {
    this.inner.syncForCpu(bus, length, dir);
  }
  /** See {@link DmaApi.syncForDevice}. */
  syncForDevice(bus: U64, length: number, dir: DmaDirection): void {
    this.inner.syncForDevice(bus, length, dir);
  }
  /** See {@link DmaApi.mapCoherent}. */
  mapCoherent(gpa: number, length: number): U64 {
    const b = this.inner.mapCoherent(gpa, length);
    this.#live.set(b, { gpa, len: length });
    return b;
  }
  /** See {@link DmaApi.unmapCoherent}. */
  unmapCoherent(bus: U64, length: number): void {
    this.inner.unmapCoherent(bus, length);
    this.#live.delete(bus);
  }
  /** The GPA behind a live bus address, or -1. */
  busToGpa(bus: U64): number {
    const m = this.#live.get(bus);
    if (m) return m.gpa;
    for (const [b, v] of this.#live) {
      const off = Number(BigInt(bus) - BigInt(b));
      if (off >= 0 && off < v.len) return v.gpa + off;
    }
    return -1;
  }
}
