/**
 * Resolution of a {@link Topology}: for each virtio device, the negotiated features, the driver's
 * {@link DmaApi} and the device's {@link DmaAddressSpace} built from the policy plan, and a
 * verdict obtained by **running buffers through the rings** (a driver queue and a loopback device
 * queue over sparse guest memory): a known pattern goes out through a device-readable buffer, the
 * device copies it into a device-writable buffer, and the driver checks what came back where.
 *
 * Two verdicts are computed and compared:
 * - `predicted`: one DMA traced through the two views alone, layer by layer (driver mapping
 *   layers, then device translation layers), the basis of the explanation;
 * - `observed`: the ring run.
 * They agree on every preset; the topology fuzz target checks that they always do.
 *
 * @module
 */

import { hex64, toU64, type U64 } from "../memory/u64.ts";
import type { GuestMemory } from "../memory/guest_memory.ts";
import { MemoryFault } from "../memory/fault.ts";
import { DMA_ACCESS_READ, DMA_ACCESS_WRITE, DmaFault, DmaMapError } from "../dma/errors.ts";
import { IdentityAddressSpace, RawGpaDmaApi } from "../dma/identity.ts";
import {
  DMA_FROM_DEVICE,
  DMA_TO_DEVICE,
  type DmaAddressSpace,
  type DmaApi,
  type DmaDirection,
  DmaTranslation,
} from "../dma/types.ts";
import { FakeClock } from "../dma/clock.ts";
import { StackedAddressSpace, WindowOrAddressSpace } from "../dma/compose.ts";
import { FallbackDmaApi } from "../dma/fallback_api.ts";
import { ConfidentialAddressSpace } from "../dma/confidential.ts";
import { DirectDmaApi, type ReversibleDmaApi } from "../dma/direct_api.ts";
import { Iommu, type IommuDomain, type ReservedRegion, X86_MSI_REGION } from "../dma/iommu.ts";
import { IommuDmaApi } from "../dma/iommu_api.ts";
import { IO_TLB_SEGSIZE, IO_TLB_SIZE, SwiotlbDmaApi } from "../dma/swiotlb.ts";
import { type DmaWindow, DmaWindowTable, WindowAddressSpace } from "../dma/window.ts";
import { SgList } from "../virtio/sg_list.ts";
import { featureBit, VIRTIO_F_RING_PACKED } from "../virtio/features.ts";
import { VirtqError } from "../virtio/errors.ts";
import { createQueuePair } from "../virtio/pair.ts";
import { VirtioIommuDevice } from "../devices/virtio_iommu/device.ts";
import { VirtioIommuDmaApi } from "../devices/virtio_iommu/driver_api.ts";
import { decodeViommuConfig } from "../devices/virtio_iommu/config.ts";
import { ViommuDirectTransport } from "../devices/virtio_iommu/transport.ts";
import { encodeViommuRequest } from "../devices/virtio_iommu/requests.ts";
import {
  VIRTIO_IOMMU_F_PROBE,
  VIRTIO_IOMMU_RESV_MEM_T_MSI,
  VIRTIO_IOMMU_RESV_MEM_T_RESERVED,
  VIRTIO_IOMMU_T_UNMAP,
} from "../devices/virtio_iommu/constants.ts";
import { FaultingAddressSpace, XenGrantAddressSpace, XenGrantDmaApi } from "./models.ts";
import { planTopology } from "./policy.ts";
import {
  type DeviceLayerPlan,
  type DevicePlan,
  featureNames,
  type WindowPlan,
} from "./policy_types.ts";
import { BackingAddressSpace, SparseGuestMemory } from "./sparse_memory.ts";
import type { FeatureName, Topology, TopologyIommu, Verdict } from "./topology_types.ts";
import { requesterId, RUN_RING_BYTES, runLayout } from "./topology_layout.ts";

/** Queue Size used for topology runs. */
export const RUN_QUEUE_SIZE = 8;

/** One step of a traced DMA: a layer and the address before and after it. */
export interface TraceStep {
  /** `driver` (mapping, GPA -> bus) or `device` (translation, bus -> GPA). */
  side: "driver" | "device";
  /** Layer name as it appears in faults (`"vt-d"`, `"swiotlb"`, `"address_space_memory"`). */
  layer: string;
  /** Address entering the layer. */
  from: U64;
  /** Address leaving it, or `null` when the layer failed. */
  to: U64 | null;
  /** What the layer did or why it failed. */
  note: string;
}

/** A verdict with the layer that caused it and a readable reason. */
export interface Outcome {
  /** The verdict. */
  verdict: Verdict;
  /** Faulting layer (`fault`), or the layer where data went astray (`corrupt`), else `null`. */
  layer: string | null;
  /** One line: what happened. */
  detail: string;
  /** For `fault`: the `DmaFault` / `DmaMapError` reason (`unmapped`, `too-large`, ...), if any. */
  reason?: string;
}

/** The resolution of one device. */
export interface DeviceResolution {
  /** Device id. */
  id: string;
  /** Offered feature names. */
  offered: FeatureName[];
  /** Negotiated feature names (empty when refused). */
  negotiated: FeatureName[];
  /** The policy plan (layers and the reason for each). */
  plan: DevicePlan;
  /** Name of the driver's composed DMA API (`"swiotlb > vt-d-strict"`), or `null`. */
  driverApi: string | null;
  /** Name of the device's composed address space, or `null`. */
  deviceSpace: string | null;
  /** One traced DMA (ring, then the device-readable buffer), layer by layer. */
  trace: TraceStep[];
  /** Verdict predicted from the two views (the trace). */
  predicted: Outcome;
  /** Verdict observed by running buffers through the rings. */
  observed: Outcome;
  /** Where the driver's and the device's views part, or `null` when they agree. */
  partsAt: string | null;
  /** Recorded expectation from the topology's `expect`, if any. */
  expected: { verdict: Verdict; layer?: string } | null;
  /** Notes that do not change the verdict. */
  warnings: string[];
}

/** The resolution of a whole topology. */
export interface TopologyResolution {
  /** Topology name. */
  name: string;
  /** Topology title. */
  title: string;
  /** Catalogue rows. */
  catalogue: string[];
  /** Why the recorded verdicts differ from the catalogue's outcome, when they do. */
  deviation?: string;
  /** One entry per device, in file order. */
  devices: DeviceResolution[];
}

// ---------------------------------------------------------------------------------------------
// Building the two views

interface Built {
  sparse: SparseGuestMemory;
  /** The driver's API (the bounce layer when there is one). */
  api: DmaApi;
  /** The bounce layer, or `null`. */
  bounce: SwiotlbDmaApi | null;
  /** The API below the bounce layer (or `api` itself). */
  base: DmaApi;
  /** Device layers, bus first; each backs the GPAs it produces. */
  spaceLayers: DmaAddressSpace[];
  /** The composed device view. */
  space: DmaAddressSpace;
  /** Does the driver's unmap revoke the device's access (IOMMU / grant)? */
  revokes: boolean;
  /** Fault injection (virtio-iommu UNMAP under QEMU semantics), or `null`. */
  splitUnmap: ((bus: U64, len: number) => void) | null;
  ringGpa: number;
  bufferGpa: number;
  poolGpa: number;
}

function layout(t: Topology) {
  return runLayout(t);
}

const toWindows = (w: readonly WindowPlan[]): DmaWindow[] =>
  w.map((x) => ({ cpuStart: Number(x.cpu), busStart: x.bus, size: Number(x.size) }));

/** Wraps a driver API that cannot reverse its mappings (virtio-iommu) for swiotlb's use. */
class ReversibleAdapter implements ReversibleDmaApi {
  readonly name: string;
  readonly #live = new Map<U64, { gpa: number; len: number }>();
  constructor(readonly inner: DmaApi) {
    this.name = inner.name;
  }
  map(gpa: number, length: number, dir: DmaDirection): U64 {
    const b = this.inner.map(gpa, length, dir);
    this.#live.set(b, { gpa, len: length });
    return b;
  }
  unmap(bus: U64, length: number, dir: DmaDirection): void {
    this.inner.unmap(bus, length, dir);
    this.#live.delete(bus);
  }
  syncForCpu(bus: U64, length: number, dir: DmaDirection): void {
    this.inner.syncForCpu(bus, length, dir);
  }
  syncForDevice(bus: U64, length: number, dir: DmaDirection): void {
    this.inner.syncForDevice(bus, length, dir);
  }
  mapCoherent(gpa: number, length: number): U64 {
    const b = this.inner.mapCoherent(gpa, length);
    this.#live.set(b, { gpa, len: length });
    return b;
  }
  unmapCoherent(bus: U64, length: number): void {
    this.inner.unmapCoherent(bus, length);
    this.#live.delete(bus);
  }
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

interface ViommuParts {
  device: VirtioIommuDevice;
  api: VirtioIommuDmaApi | null;
  transport: ViommuDirectTransport | null;
}

const isReversible = (a: DmaApi): a is ReversibleDmaApi =>
  typeof (a as Partial<ReversibleDmaApi>).busToGpa === "function";

function build(t: Topology, plan: DevicePlan): Built {
  const sparse = new SparseGuestMemory(
    t.memory.map((m, i) => ({
      gpa: Number(m.gpa),
      size: Number(m.size),
      kind: m.kind,
      private: m.private,
      name: m.name ?? `${m.kind}${i}`,
    })),
  );
  const memory: GuestMemory = sparse.memory;
  const { ringGpa, bufferGpa, poolGpa, stagingGpa } = layout(t);
  // The driver's own memory exists before anything maps it.
  // (rings and buffers as one span when they are close, so that neither straddles two regions)
  const bufEnd = bufferGpa + 2 * align4k(t.workload.bufferBytes);
  if (bufferGpa >= ringGpa && bufEnd - ringGpa <= 64 * 1024 * 1024) {
    sparse.ensure(ringGpa, bufEnd - ringGpa);
  }
  sparse.ensure(ringGpa, RUN_RING_BYTES);
  sparse.ensure(bufferGpa, bufEnd - bufferGpa);
  const bounced = plan.driverLayers.some((l) => l.kind === "bounce");
  if (bounced) {
    // Confidential guests: the pool and (with the DMA API) the coherent rings are shared.
    sparse.share(poolGpa, t.guest.swiotlbSlots * IO_TLB_SIZE);
    if (plan.usesDmaApi) sparse.share(ringGpa, RUN_RING_BYTES);
  }
  const iommuOf = (id: string) => t.iommus.find((m) => m.id === id)!;
  const x86 = t.machine.arch.startsWith("x86");
  const lazy = plan.driverLayers.some((l) => l.kind === "iommu" && l.lazy);

  // One model per IOMMU, shared by the driver's mappings and the device's translation.
  const units = new Map<
    string,
    { iommu: Iommu; domain: IommuDomain | null; api: IommuDmaApi | null }
  >();
  const unit = (m: TopologyIommu) => {
    let u = units.get(m.id);
    if (!u) {
      const resv: ReservedRegion[] = x86 && m.kind !== "alpha-typhoon" && m.kind !== "tce"
        ? [X86_MSI_REGION]
        : [];
      const name = m.kind === "alpha-typhoon" ? "typhoon-sg" : m.kind;
      u = { iommu: new Iommu(memory, { name, reservedRegions: resv }), domain: null, api: null };
      units.set(m.id, u);
    }
    return u;
  };
  const pagedApi = (m: TopologyIommu): IommuDmaApi => {
    const u = unit(m);
    if (!u.api) {
      u.domain = u.iommu.createDomain("paged");
      const end = m.iova
        ? Number(m.iova.end)
        : m.kind === "tce"
        ? Number(m.window32Size)
        : m.kind === "alpha-typhoon"
        ? 0x100_0000
        : 0;
      u.api = new IommuDmaApi({
        iommu: u.iommu,
        domain: u.domain,
        policy: lazy ? "lazy" : "strict",
        name: `${u.iommu.name}-${lazy ? "lazy" : "strict"}`,
        mask: end > 0 ? end - 1 : undefined,
        clock: new FakeClock(),
      });
    }
    return u.api;
  };
  const alphaDirect = (m: TopologyIommu): DmaWindow[] =>
    m.kind === "alpha-typhoon"
      ? [{ cpuStart: 0, busStart: m.directBase, size: Number(m.directSize) }]
      : [];

  // virtio-iommu: the device model, and the guest driver's API when it has one.
  let viommu: ViommuParts | null = null;
  const rid = requesterId(plan.device.bdf) ?? 0;
  const viommuFor = (m: TopologyIommu, withDriver: boolean, bypass = false) => {
    if (viommu) return viommu;
    if (m.kind !== "virtio-iommu") throw new Error("not a virtio-iommu");
    const device = new VirtioIommuDevice({
      endpoints: [{
        id: rid,
        resvMem: m.resvMem.map((r) => ({
          subtype: r.subtype === "msi"
            ? VIRTIO_IOMMU_RESV_MEM_T_MSI
            : VIRTIO_IOMMU_RESV_MEM_T_RESERVED,
          start: r.start,
          end: r.end,
        })),
      }],
      config: {
        bypass: m.bootBypass || bypass ? 1 : 0,
        // The topology's IOVA range is the device's input_range.
        ...(m.iova ? { inputStart: m.iova.start, inputEnd: toU64(BigInt(m.iova.end) - 1n) } : {}),
      },
    });
    let api: VirtioIommuDmaApi | null = null;
    let transport: ViommuDirectTransport | null = null;
    if (withDriver) {
      // A guest that does not honour RESV_MEM behaves as a driver without F_PROBE: it never
      // learns the reserved regions.
      const want = t.guest.honoursResvMem
        ? device.deviceFeatures
        : device.deviceFeatures & ~(1n << BigInt(VIRTIO_IOMMU_F_PROBE));
      const features = device.negotiate(want);
      sparse.ensure(stagingGpa, 0x4000);
      transport = new ViommuDirectTransport(device, memory, stagingGpa);
      api = new VirtioIommuDmaApi({
        transport,
        config: decodeViommuConfig(device.readConfig()),
        features,
        endpoint: rid,
        domain: 1,
      });
      api.init();
    }
    viommu = { device, api, transport };
    return viommu;
  };

  // --- driver side ---
  let bounce: SwiotlbDmaApi | null = null;
  let grant: XenGrantDmaApi | null = null;
  let base: DmaApi = new RawGpaDmaApi();
  for (const l of [...plan.driverLayers].reverse()) {
    switch (l.kind) {
      case "raw-gpa":
        base = new RawGpaDmaApi();
        break;
      case "direct":
        base = new DirectDmaApi({ name: "dma-direct", memory });
        break;
      case "swiotlb-xen":
        base = new DirectDmaApi({ name: "swiotlb-xen", memory });
        break;
      case "offset":
        base = new DirectDmaApi({ name: l.name, windows: toWindows(l.windows), memory });
        break;
      case "passthrough": {
        const m = iommuOf(l.iommu);
        base = new DirectDmaApi({ name: `${m.kind}-passthrough`, memory });
        break;
      }
      case "grant":
        base = grant = new XenGrantDmaApi();
        break;
      case "alpha": {
        const m = iommuOf(l.iommu);
        base = new FallbackDmaApi(
          new DirectDmaApi({ name: "typhoon-direct", windows: alphaDirect(m) }),
          pagedApi(m),
          "alpha-window",
        );
        break;
      }
      case "iommu": {
        const m = iommuOf(l.iommu);
        base = m.kind === "virtio-iommu" ? viommuFor(m, true).api! : pagedApi(m);
        break;
      }
      case "bounce":
        bounce = new SwiotlbDmaApi({
          memory,
          poolGpa,
          poolSize: t.guest.swiotlbSlots * IO_TLB_SIZE,
          inner: isReversible(base) ? base : new ReversibleAdapter(base),
          name: l.name,
        });
        break;
    }
  }
  const api: DmaApi = bounce ?? base;

  // --- device side ---
  const spaceLayers: DmaAddressSpace[] = plan.deviceLayers.map(
    (l: DeviceLayerPlan): DmaAddressSpace => {
      switch (l.kind) {
        case "identity":
          return new IdentityAddressSpace(l.name);
        case "bridge-offset":
          return new WindowAddressSpace(toWindows(l.windows), "pci-bridge");
        case "no-iotlb":
          return new FaultingAddressSpace(
            l.backend,
            "unmapped",
            "no device IOTLB support: it cannot translate the bus address",
          );
        case "grant-map":
          return l.supported
            ? new XenGrantAddressSpace(grant ?? new XenGrantDmaApi())
            : new IdentityAddressSpace("xen-backend");
        case "private-filter":
          return new ConfidentialAddressSpace(new IdentityAddressSpace(l.tech), memory, l.tech);
        case "iommu": {
          const m = iommuOf(l.iommu);
          if (m.kind === "virtio-iommu") {
            if (l.state === "disabled") return new IdentityAddressSpace("virtio-iommu(disabled)");
            // Pass-through (identity) is modelled as an unattached endpoint with bypass on.
            return viommuFor(m, l.state === "dma", l.state === "identity").device
              .endpointSpace(rid);
          }
          const u = unit(m);
          switch (l.state) {
            case "disabled":
              return new IdentityAddressSpace(`${u.iommu.name}(disabled)`);
            case "identity":
              return u.iommu.endpoint(u.iommu.createDomain("identity"));
            case "blocked":
              return u.iommu.endpoint(null, false);
            case "dma": {
              if (!u.domain) u.domain = u.iommu.createDomain("paged"); // nobody maps into it
              const paged = u.iommu.endpoint(u.domain);
              if (m.kind === "alpha-typhoon") {
                return new WindowOrAddressSpace(
                  new DmaWindowTable(alphaDirect(m)),
                  paged,
                  "typhoon",
                );
              }
              if (m.kind === "tce" && m.ddw) {
                return new WindowOrAddressSpace(
                  new DmaWindowTable([{ cpuStart: 0, busStart: m.ddwStart, size: 2 ** 52 }]),
                  paged,
                  "tce",
                );
              }
              return paged;
            }
          }
        }
      }
    },
  ).map((l) => new BackingAddressSpace(l, sparse));
  const space = spaceLayers.reduce(
    (a: DmaAddressSpace | null, l) =>
      a === null ? l : new StackedAddressSpace(a, l, `${a.name} > ${l.name}`),
    null,
  )!;

  const baseLayer = plan.driverLayers.at(-1);
  const core = plan.deviceLayers.find((l) => l.kind === "iommu" || l.kind === "grant-map");
  const revokes = (baseLayer?.kind === "iommu" && core?.kind === "iommu" && core.state === "dma") ||
    (baseLayer?.kind === "grant" && core?.kind === "grant-map" && core.supported);

  // QEMU's UNMAP loop removes the mappings wholly inside the range before it meets the one it
  // would split: model the racy driver's UNMAP as the removal of the out buffer's mapping.
  let splitUnmap: Built["splitUnmap"] = null;
  const vm = baseLayer?.kind === "iommu" ? iommuOf(baseLayer.iommu) : undefined;
  const vv = viommu as ViommuParts | null;
  if (
    t.guest.splitUnmap && vm?.kind === "virtio-iommu" && vm.unmapSemantics === "qemu" && vv?.api &&
    vv.transport
  ) {
    const { api: va, transport } = vv;
    splitUnmap = (bus, len) => {
      const g = va.granule;
      const start = Math.floor(Number(bus) / g) * g;
      const end = Math.ceil((Number(bus) + len) / g) * g - 1;
      transport.submit([{
        readable: encodeViommuRequest({
          type: VIRTIO_IOMMU_T_UNMAP,
          domain: va.domain,
          virtStart: start,
          virtEnd: end,
        }),
        writable: new Uint8Array(4),
        used: 0,
      }]);
    };
  }
  return {
    sparse,
    api,
    bounce,
    base,
    spaceLayers,
    space,
    revokes,
    splitUnmap,
    ringGpa,
    bufferGpa,
    poolGpa,
  };
}

// ---------------------------------------------------------------------------------------------
// Data patterns and segmentation

function pattern(n: number, seed: number): Uint8Array {
  const p = new Uint8Array(n);
  for (let i = 0; i < n; i++) p[i] = ((i * 31 + seed) & 0xff) | 1;
  return p;
}

function segments(t: Topology, plan: DevicePlan, gpa: number): SgList {
  const bytes = t.workload.bufferBytes;
  const b = plan.driverLayers.find((l) => l.kind === "bounce");
  const max = b && b.kind === "bounce" && b.limitSegments ? IO_TLB_SIZE * IO_TLB_SEGSIZE : bytes;
  const l = new SgList();
  for (let off = 0; off < bytes; off += max) l.push(gpa + off, Math.min(max, bytes - off));
  return l;
}

const align4k = (n: number) => Math.ceil(n / 4096) * 4096;

function describe(e: unknown): Outcome | null {
  let c: unknown = e;
  while (c instanceof VirtqError && c.cause !== undefined) c = c.cause;
  if (c instanceof DmaFault) {
    return { verdict: "fault", layer: c.layer, detail: c.message, reason: c.reason };
  }
  if (c instanceof DmaMapError) {
    return { verdict: "fault", layer: c.mode, detail: c.message, reason: c.reason };
  }
  if (c instanceof MemoryFault) {
    return { verdict: "fault", layer: "memory", detail: `${c.message} (unassigned: no RAM there)` };
  }
  if (c instanceof VirtqError && (c.code === "DESC_BUFFER_FAULT" || c.code === "RING_UNMAPPED")) {
    return { verdict: "fault", layer: "memory", detail: `${c.message} (unassigned: no RAM there)` };
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// Prediction: one DMA through the views

interface Mapped {
  /** Addresses: the GPA, (the bounce slot,) the bus address. */
  addrs: U64[];
  /** Name of the layer that produced each address after the first. */
  names: string[];
}

function predict(
  t: Topology,
  plan: DevicePlan,
): { outcome: Outcome; trace: TraceStep[]; partsAt: string | null } {
  const v = build(t, plan);
  const mem = v.sparse.memory;
  const trace: TraceStep[] = [];
  const t0 = new DmaTranslation();
  let partsAt: string | null = null;
  const baseName = v.base.name;

  const mapThrough = (
    gpa: number,
    len: number,
    dir: DmaDirection,
    coherent: boolean,
    what: string,
  ): Mapped => {
    try {
      if (coherent) {
        const b = v.api.mapCoherent(gpa, len);
        trace.push({
          side: "driver",
          layer: baseName,
          from: gpa,
          to: b,
          note: `${what}: mapCoherent${v.bounce ? " (coherent memory is not bounced)" : ""}`,
        });
        return { addrs: [gpa, b], names: [baseName] };
      }
      const b = v.api.map(gpa, len, dir);
      if (v.bounce) {
        const slot = v.bounce.inner.busToGpa(b);
        trace.push({
          side: "driver",
          layer: v.bounce.name,
          from: gpa,
          to: slot,
          note: `${what}: bounce into a shared slot`,
        });
        trace.push({
          side: "driver",
          layer: baseName,
          from: slot,
          to: b,
          note: `${what}: map the slot`,
        });
        return { addrs: [gpa, slot, b], names: [v.bounce.name, baseName] };
      }
      trace.push({ side: "driver", layer: v.api.name, from: gpa, to: b, note: `${what}: map` });
      return { addrs: [gpa, b], names: [v.api.name] };
    } catch (e) {
      const layer = e instanceof DmaMapError ? e.mode : v.api.name;
      trace.push({
        side: "driver",
        layer,
        from: gpa,
        to: null,
        note: `${what}: ${(e as Error).message}`,
      });
      throw e;
    }
  };
  const translateThrough = (bus: U64, len: number, access: number, what: string): U64[] => {
    const addrs: U64[] = [bus];
    let b: U64 = bus;
    for (const l of v.spaceLayers) {
      try {
        l.translate(b, len, access, t0);
        trace.push({
          side: "device",
          layer: l.name,
          from: b,
          to: t0.gpa,
          note: `${what}: translate`,
        });
        b = t0.gpa;
        len = t0.length;
        addrs.push(b);
      } catch (e) {
        trace.push({
          side: "device",
          layer: l.name,
          from: b,
          to: null,
          note: `${what}: ${(e as Error).message}`,
        });
        throw e;
      }
    }
    const g = Number(b);
    if (!v.sparse.ensure(g, Math.min(len, 64))) {
      trace.push({
        side: "device",
        layer: "memory",
        from: g,
        to: null,
        note: `${what}: no RAM at ${hex64(g)}`,
      });
      throw new MemoryFault("unmapped", g, len);
    }
    return addrs;
  };
  // Where the views part: walk the device's translations against the driver's mappings undone
  // in reverse; the data lives at the driver's GPA, or at the bounce slot when it bounced.
  const part = (drv: Mapped, dev: U64[]) => {
    if (partsAt !== null) return;
    const bounced = drv.addrs.length === 3;
    const rev = drv.addrs.slice(bounced ? 1 : 0).reverse();
    const revNames = drv.names.slice(bounced ? 1 : 0).reverse();
    let j = 0;
    for (let i = 1; i < dev.length; i++) {
      const x = String(dev[i]);
      if (x === String(rev[j])) continue;
      if (j + 1 < rev.length && x === String(rev[j + 1])) {
        j++;
        continue;
      }
      partsAt = `device layer "${v.spaceLayers[i - 1].name}" turns ${hex64(dev[i - 1])} into ` +
        `${hex64(dev[i])}, but the driver's "${
          revNames[Math.min(j, revNames.length - 1)]
        }" meant ` +
        hex64(rev.at(-1)!);
      return;
    }
    if (j !== rev.length - 1) {
      partsAt = `the device dereferences ${hex64(dev.at(-1)!)} as a GPA, but the driver's ` +
        `"${revNames[j]}" produced it as a bus address for ${hex64(rev.at(-1)!)}`;
    }
  };
  const lastLayer = v.spaceLayers.at(-1)!.name;

  const outcome = ((): Outcome => {
    try {
      // In the order things happen: the driver maps its rings (coherent DMA) at set-up, then one
      // buffer (`add`: every readable, then every writable segment), then kicks.
      const ring = mapThrough(v.ringGpa, 4096, 0, true, "ring");
      // The device activates the queue at once (DRIVER_OK): its ring areas must translate now;
      // whether they land where the driver wrote shows only when it reads them after the kick.
      const ringDev = translateThrough(ring.addrs.at(-1)!, 64, DMA_ACCESS_READ, "ring");
      const n = Math.min(t.workload.bufferBytes, 64);
      mem.write(v.bufferGpa, pattern(t.workload.bufferBytes, 0xa5));
      const seg = segments(t, plan, v.bufferGpa);
      const rd = mapThrough(v.bufferGpa, seg.len[0], DMA_TO_DEVICE, false, "out buffer");
      for (let i = 1; i < seg.count; i++) {
        mapThrough(seg.gpa[i], seg.len[i], DMA_TO_DEVICE, false, "out buffer");
      }
      const wGpa = v.bufferGpa + align4k(t.workload.bufferBytes);
      const wseg = segments(t, plan, wGpa);
      const wd = mapThrough(wGpa, wseg.len[0], DMA_FROM_DEVICE, false, "in buffer");
      for (let i = 1; i < wseg.count; i++) {
        mapThrough(wseg.gpa[i], wseg.len[i], DMA_FROM_DEVICE, false, "in buffer");
      }
      const bus = rd.addrs.at(-1)!;
      if (v.splitUnmap) {
        v.splitUnmap(bus, seg.len[0]);
        trace.push({
          side: "driver",
          layer: baseName,
          from: bus,
          to: null,
          note: "a racy UNMAP: QEMU already removed this mapping",
        });
      }
      // Then the device reads the rings: they must be where the driver wrote them.
      part(ring, ringDev);
      if (ringDev.at(-1) !== v.ringGpa) {
        return {
          verdict: "corrupt",
          layer: lastLayer,
          detail: `the device reads the rings at ${
            hex64(ringDev.at(-1)!)
          } but the driver wrote them at ${hex64(v.ringGpa)}`,
        };
      }
      // The device-readable buffer.
      const dev = translateThrough(bus, n, DMA_ACCESS_READ, "out buffer");
      part(rd, dev);
      const dataAt = Number(rd.addrs.length === 3 ? rd.addrs[1] : rd.addrs[0]);
      if (!equalBytes(mem.view(Number(dev.at(-1)!), n), mem.view(dataAt, n))) {
        return {
          verdict: "corrupt",
          layer: lastLayer,
          detail: `the device reads ${hex64(dev.at(-1)!)} instead of ${hex64(dataAt)}`,
        };
      }
      // The device-writable buffer: the device writes, the driver unmaps (bounce copies back).
      const wdev = translateThrough(wd.addrs.at(-1)!, n, DMA_ACCESS_WRITE, "in buffer");
      part(wd, wdev);
      const marker = pattern(n, 0x3c);
      mem.write(Number(wdev.at(-1)!), marker);
      v.api.unmap(wd.addrs.at(-1)!, wseg.len[0], DMA_FROM_DEVICE);
      if (!equalBytes(mem.view(wGpa, n), marker)) {
        return {
          verdict: "corrupt",
          layer: lastLayer,
          detail: `the device writes ${hex64(wdev.at(-1)!)}; the driver's buffer at ${
            hex64(wGpa)
          } never sees it`,
        };
      }
      // Use after unmap: can the device still reach the out buffer?
      if (!v.splitUnmap) v.api.unmap(bus, seg.len[0], DMA_TO_DEVICE);
      if (v.revokes) {
        try {
          v.space.translate(bus, n, DMA_ACCESS_READ, t0);
          trace.push({
            side: "device",
            layer: v.spaceLayers[0].name,
            from: bus,
            to: t0.gpa,
            note: "after unmap: the IOTLB entry is still valid (lazy flush queue)",
          });
          return {
            verdict: "stale-window",
            layer: v.spaceLayers[0].name,
            detail: `after unmap the device still reaches ${hex64(t0.gpa)} through ${hex64(bus)}`,
          };
        } catch (e) {
          if (!(e instanceof DmaFault)) throw e;
        }
      }
      return { verdict: "ok", layer: null, detail: "data arrives intact both ways" };
    } catch (e) {
      const o = describe(e);
      if (o) return o;
      throw e;
    }
  })();
  if (outcome.verdict === "fault" && partsAt === null) {
    partsAt = `layer "${outcome.layer}" cannot handle what the driver programmed`;
  }
  if (outcome.verdict === "ok") partsAt = null;
  return { outcome, trace, partsAt };
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

// ---------------------------------------------------------------------------------------------
// Observation: buffers through the rings

/** Wraps a DmaApi and records the bus address of every streaming map (cold path). */
class RecordingApi implements DmaApi {
  readonly name: string;
  readonly maps: { bus: U64; len: number; dir: DmaDirection }[] = [];
  constructor(readonly inner: DmaApi) {
    this.name = inner.name;
  }
  map(gpa: number, length: number, dir: DmaDirection): U64 {
    const bus = this.inner.map(gpa, length, dir);
    this.maps.push({ bus, len: length, dir });
    return bus;
  }
  unmap(bus: U64, length: number, dir: DmaDirection): void {
    this.inner.unmap(bus, length, dir);
  }
  syncForCpu(bus: U64, length: number, dir: DmaDirection): void {
    this.inner.syncForCpu(bus, length, dir);
  }
  syncForDevice(bus: U64, length: number, dir: DmaDirection): void {
    this.inner.syncForDevice(bus, length, dir);
  }
  mapCoherent(gpa: number, length: number): U64 {
    return this.inner.mapCoherent(gpa, length);
  }
  unmapCoherent(bus: U64, length: number): void {
    this.inner.unmapCoherent(bus, length);
  }
}

function observe(t: Topology, plan: DevicePlan): Outcome {
  const v = build(t, plan);
  const mem = v.sparse.memory;
  const bytes = t.workload.bufferBytes;
  const out = pattern(bytes, 0xa5);
  const wGpa = v.bufferGpa + align4k(bytes);
  mem.write(v.bufferGpa, out);
  mem.fill(wGpa, bytes, 0xcc);
  const api = new RecordingApi(v.api);
  const layout = t.workload.layout;
  const features = plan.negotiated |
    (layout === "packed" ? featureBit(VIRTIO_F_RING_PACKED) : 0n);
  const lastLayer = v.spaceLayers.at(-1)!.name;
  try {
    const pair = createQueuePair<number>({
      layout,
      size: RUN_QUEUE_SIZE,
      features,
      memory: mem,
      ringGpa: v.ringGpa,
      dmaApi: api,
      dmaSpace: v.space,
    });
    pair.driver.add(segments(t, plan, v.bufferGpa), segments(t, plan, wGpa), 1);
    pair.driver.kick();
    if (v.splitUnmap && api.maps.length > 0) v.splitUnmap(api.maps[0].bus, api.maps[0].len);
    const chain = pair.device.pop();
    if (chain === null) {
      return {
        verdict: "corrupt",
        layer: lastLayer,
        detail: "the device read the driver area at the wrong GPA and saw no buffer",
      };
    }
    const written = chain.copyReadableToWritable();
    pair.device.push(chain, written);
    pair.device.flush();
    const token = pair.driver.getUsed();
    if (token === undefined) {
      return {
        verdict: "corrupt",
        layer: lastLayer,
        detail:
          "the device wrote the used ring at the wrong GPA: the driver never sees the buffer back",
      };
    }
    const back = mem.view(wGpa, bytes);
    if (!equalBytes(back, out)) {
      let i = 0;
      while (i < bytes && back[i] === out[i]) i++;
      return {
        verdict: "corrupt",
        layer: lastLayer,
        detail: `used len ${pair.driver.usedLen}: returned data differs from byte ${i} ` +
          `(got 0x${back[i].toString(16)}, sent 0x${out[i].toString(16)})`,
      };
    }
    if (v.revokes && api.maps.length > 0) {
      const t0 = new DmaTranslation();
      const m0 = api.maps[0];
      try {
        v.space.translate(m0.bus, Math.min(m0.len, 64), DMA_ACCESS_READ, t0);
        return {
          verdict: "stale-window",
          layer: v.spaceLayers[0].name,
          detail: `after unmap the device still reaches ${hex64(t0.gpa)} through ${hex64(m0.bus)}`,
        };
      } catch (e) {
        if (!(e instanceof DmaFault)) throw e;
      }
    }
    return {
      verdict: "ok",
      layer: null,
      detail:
        `${bytes} bytes out and back intact over a ${layout} ring (used len ${pair.driver.usedLen})`,
    };
  } catch (e) {
    const o = describe(e);
    if (o) return o;
    if (e instanceof VirtqError) {
      return {
        verdict: "corrupt",
        layer: lastLayer,
        detail: `the device read garbage ring contents: ${e.message}`,
      };
    }
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// Public entry points

/**
 * Resolves one device of a topology from its plan: prediction (trace) and observation (rings).
 * @param t the topology.
 * @param plan the device's plan from {@link planTopology}.
 */
export function resolveDevice(t: Topology, plan: DevicePlan): DeviceResolution {
  const base = {
    id: plan.device.id,
    offered: featureNames(plan.offered),
    plan,
    expected: t.expect[plan.device.id] ?? null,
    warnings: plan.warnings,
  };
  if (plan.probe.status !== "ok") {
    const o: Outcome = { verdict: plan.probe.status, layer: null, detail: plan.probe.why };
    return {
      ...base,
      negotiated: plan.probe.status === "refused" ? [] : featureNames(plan.negotiated),
      driverApi: null,
      deviceSpace: null,
      trace: [],
      predicted: o,
      observed: o,
      partsAt: plan.probe.status === "refused"
        ? "feature negotiation: the device requires ACCESS_PLATFORM, the driver refuses it"
        : null,
    };
  }
  const p = predict(t, plan);
  const o = observe(t, plan);
  const v = build(t, plan);
  return {
    ...base,
    negotiated: featureNames(plan.negotiated),
    driverApi: v.bounce ? `${v.bounce.name} > ${v.base.name}` : v.api.name,
    deviceSpace: v.spaceLayers.map((l) => l.name).join(" > "),
    trace: p.trace,
    predicted: p.outcome,
    observed: o,
    partsAt: p.partsAt,
  };
}

/**
 * Resolves every device of `t`: plans the two views, traces one DMA through them, and runs
 * buffers through the rings.
 * @returns the resolution; `devices[i].observed.verdict` is the verdict.
 */
export function resolveTopology(t: Topology): TopologyResolution {
  return {
    name: t.name,
    title: t.title,
    catalogue: t.catalogue,
    ...(t.deviation !== undefined ? { deviation: t.deviation } : {}),
    devices: planTopology(t).map((p) => resolveDevice(t, p)),
  };
}
