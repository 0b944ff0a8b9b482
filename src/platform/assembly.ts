/**
 * The platform of one device, assembled by one factory, {@link assemblePlatform}: from a
 * {@link Topology} and a device's {@link DevicePlan}, the guest memory (sparse, with the run's
 * own memory in place and shared where a confidential guest shares it), the driver's
 * {@link DmaApi} and the device's {@link DmaAddressSpace} (described as DMA layers and built by
 * `assembleDma`, the same assembly `createDmaMode` uses), the virtio-iommu device and its guest
 * driver when the plan has one, and the fault injections the topology asks for.
 *
 * Prediction (`predict.ts`) and the ring run (`ring_run.ts`) both consume what this factory
 * assembles; each needs its own instance because each maps, bounces and unmaps (IOVA
 * allocators, swiotlb slots and flush queues remember): {@link PlatformAssembly.instance}.
 *
 * @module
 */

import { toU64, type U64 } from "../memory/u64.ts";
import {
  assembleDma,
  type DeviceDmaLayerSpec,
  type DmaAddressSpace,
  type DmaApi,
  type DmaAssemblySpec,
  type DmaWindow,
  DmaWindowTable,
  type DriverDmaLayerSpec,
  FakeClock,
  IO_TLB_SIZE,
  type IommuUnitSpec,
  type SwiotlbDmaApi,
  X86_MSI_REGION,
} from "../dma/mod.ts";
import {
  decodeViommuConfig,
  encodeViommuRequest,
  ViommuDirectTransport,
  VIRTIO_IOMMU_F_PROBE,
  VIRTIO_IOMMU_RESV_MEM_T_MSI,
  VIRTIO_IOMMU_RESV_MEM_T_RESERVED,
  VIRTIO_IOMMU_T_UNMAP,
  VirtioIommuDevice,
  VirtioIommuDmaApi,
} from "../devices/_internal.ts";
import { FaultingAddressSpace, XenGrantAddressSpace, XenGrantDmaApi } from "./models.ts";
import type { DeviceLayerPlan, DevicePlan, DriverLayerPlan, WindowPlan } from "./policy_types.ts";
import { BackingAddressSpace, SparseGuestMemory } from "./sparse_memory.ts";
import { requesterId, RUN_RING_BYTES, runLayout } from "./topology_layout.ts";
import type { Topology, TopologyIommu } from "./topology_types.ts";

/** One running instance of a device's platform (fresh state: nothing mapped yet). */
export interface PlatformInstance {
  /** Guest memory (sparse: RAM appears where something touches it). */
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
  /** GPA of the driver's rings. */
  ringGpa: number;
  /** GPA of the driver's buffers (device-readable, then device-writable). */
  bufferGpa: number;
  /** GPA of the bounce pool. */
  poolGpa: number;
}

/** A device's platform as assembled once: the plan, its DMA description, and fresh instances. */
export interface PlatformAssembly {
  /** The topology. */
  topology: Topology;
  /** The device's plan. */
  plan: DevicePlan;
  /** The first instance (the one prediction consumes). */
  readonly first: PlatformInstance;
  /** Name of the driver's composed DMA API (`"swiotlb > vt-d-strict"`). */
  readonly driverApiName: string;
  /** Name of the device's composed address space (`"vt-d > address_space_memory"`). */
  readonly deviceSpaceName: string;
  /** A new instance in the same fresh state as {@link first} (the ring run consumes one). */
  instance(): PlatformInstance;
}

/**
 * Assembles the platform of one device of `t` from its plan (the one factory: prediction and
 * the ring run consume what it builds).
 * @param t the topology.
 * @param plan the device's plan (`planTopology`), with `probe.status === "ok"`.
 */
export function assemblePlatform(t: Topology, plan: DevicePlan): PlatformAssembly {
  const first = buildInstance(t, plan);
  return {
    topology: t,
    plan,
    first,
    driverApiName: first.bounce ? `${first.bounce.name} > ${first.base.name}` : first.api.name,
    deviceSpaceName: first.spaceLayers.map((l) => l.name).join(" > "),
    instance: () => buildInstance(t, plan),
  };
}

const align4k = (n: number) => Math.ceil(n / 4096) * 4096;

const toWindows = (w: readonly WindowPlan[]): DmaWindow[] =>
  w.map((x) => ({ cpuStart: Number(x.cpu), busStart: x.bus, size: Number(x.size) }));

/** Guest memory with the run's own memory (rings, buffers; shared where it must be) in place. */
function guestMemory(t: Topology, plan: DevicePlan): SparseGuestMemory {
  const sparse = new SparseGuestMemory(
    t.memory.map((m, i) => ({
      gpa: Number(m.gpa),
      size: Number(m.size),
      kind: m.kind,
      private: m.private,
      name: m.name ?? `${m.kind}${i}`,
    })),
  );
  const { ringGpa, bufferGpa, poolGpa } = runLayout(t);
  // The driver's own memory exists before anything maps it.
  // (rings and buffers as one span when they are close, so that neither straddles two regions)
  const bufEnd = bufferGpa + 2 * align4k(t.workload.bufferBytes);
  if (bufferGpa >= ringGpa && bufEnd - ringGpa <= 64 * 1024 * 1024) {
    sparse.ensure(ringGpa, bufEnd - ringGpa);
  }
  sparse.ensure(ringGpa, RUN_RING_BYTES);
  sparse.ensure(bufferGpa, bufEnd - bufferGpa);
  if (plan.driverLayers.some((l) => l.kind === "bounce")) {
    // Confidential guests: the pool and (with the DMA API) the coherent rings are shared.
    sparse.share(poolGpa, t.guest.swiotlbSlots * IO_TLB_SIZE);
    if (plan.usesDmaApi) sparse.share(ringGpa, RUN_RING_BYTES);
  }
  return sparse;
}

/** The IOMMU unit of topology IOMMU `m` (name as faults print it; x86 MSI window reserved). */
function unitSpec(t: Topology, m: TopologyIommu): IommuUnitSpec {
  const x86 = t.machine.arch.startsWith("x86");
  return {
    name: m.kind === "alpha-typhoon" ? "typhoon-sg" : m.kind,
    reservedRegions: x86 && m.kind !== "alpha-typhoon" && m.kind !== "tce" ? [X86_MSI_REGION] : [],
  };
}

/** The alpha Typhoon's direct window (bus `directBase` -> GPA 0), else none. */
const alphaDirect = (m: TopologyIommu): DmaWindow[] =>
  m.kind === "alpha-typhoon"
    ? [{ cpuStart: 0, busStart: m.directBase, size: Number(m.directSize) }]
    : [];

/** The virtio-iommu device model and, when the guest drives it, its driver. */
class Viommu {
  device: VirtioIommuDevice | null = null;
  api: VirtioIommuDmaApi | null = null;
  transport: ViommuDirectTransport | null = null;
  constructor(
    readonly t: Topology,
    readonly sparse: SparseGuestMemory,
    readonly rid: number,
  ) {}

  /** The device (built on first use; `withDriver` also probes and attaches the guest driver). */
  get(m: TopologyIommu, withDriver: boolean, bypass = false): this {
    if (this.device) return this;
    if (m.kind !== "virtio-iommu") throw new Error("not a virtio-iommu");
    const device = new VirtioIommuDevice({
      endpoints: [{
        id: this.rid,
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
    this.device = device;
    if (withDriver) {
      // A guest that does not honour RESV_MEM behaves as a driver without F_PROBE: it never
      // learns the reserved regions.
      const want = this.t.guest.honoursResvMem
        ? device.deviceFeatures
        : device.deviceFeatures & ~(1n << BigInt(VIRTIO_IOMMU_F_PROBE));
      const features = device.negotiate(want);
      const { stagingGpa } = runLayout(this.t);
      this.sparse.ensure(stagingGpa, 0x4000);
      this.transport = new ViommuDirectTransport(device, this.sparse.memory, stagingGpa);
      this.api = new VirtioIommuDmaApi({
        transport: this.transport,
        config: decodeViommuConfig(device.readConfig()),
        features,
        endpoint: this.rid,
        domain: 1,
      });
      this.api.init();
    }
    return this;
  }

  /**
   * QEMU's UNMAP loop removes the mappings wholly inside the range before it meets the one it
   * would split: the racy driver's UNMAP modelled as the removal of the out buffer's mapping.
   */
  splitUnmap(): ((bus: U64, len: number) => void) | null {
    const { api: va, transport } = this;
    if (!va || !transport) return null;
    return (bus, len) => {
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
}

/** Per-instance state the layer descriptions share (virtio-iommu, the Xen grant table). */
interface Parts {
  t: Topology;
  plan: DevicePlan;
  sparse: SparseGuestMemory;
  viommu: Viommu;
  grant: XenGrantDmaApi | null;
}

const iommuOf = (t: Topology, id: string) => t.iommus.find((m) => m.id === id)!;

/** The driver layer `l` of the plan as a DMA layer description. */
function driverLayer(p: Parts, l: DriverLayerPlan): DriverDmaLayerSpec {
  const { t, plan } = p;
  const lazy = plan.driverLayers.some((x) => x.kind === "iommu" && x.lazy);
  const dmaIommu = (m: TopologyIommu): DriverDmaLayerSpec & { kind: "iommu" } => {
    const end = m.iova
      ? Number(m.iova.end)
      : m.kind === "tce"
      ? Number(m.window32Size)
      : m.kind === "alpha-typhoon"
      ? 0x100_0000
      : 0;
    return {
      kind: "iommu",
      unit: m.id,
      policy: lazy ? "lazy" : "strict",
      name: `${unitSpec(t, m).name}-${lazy ? "lazy" : "strict"}`,
      mask: end > 0 ? end - 1 : undefined,
      clock: new FakeClock(),
    };
  };
  switch (l.kind) {
    case "raw-gpa":
      return { kind: "raw-gpa" };
    case "direct":
      return { kind: "direct", name: "dma-direct" };
    case "swiotlb-xen":
      return { kind: "direct", name: "swiotlb-xen" };
    case "offset":
      return { kind: "direct", name: l.name, windows: toWindows(l.windows) };
    case "passthrough":
      return { kind: "direct", name: `${iommuOf(t, l.iommu).kind}-passthrough` };
    case "grant":
      return { kind: "api", make: () => (p.grant = new XenGrantDmaApi()) };
    case "alpha": {
      const m = iommuOf(t, l.iommu);
      return {
        kind: "fallback",
        name: "alpha-window",
        first: { kind: "direct", name: "typhoon-direct", windows: alphaDirect(m), memory: false },
        second: dmaIommu(m),
      };
    }
    case "iommu": {
      const m = iommuOf(t, l.iommu);
      if (m.kind !== "virtio-iommu") return dmaIommu(m);
      return { kind: "api", make: () => p.viommu.get(m, true).api! };
    }
    case "bounce": {
      const { poolGpa } = runLayout(t);
      return {
        kind: "bounce",
        name: l.name,
        poolGpa,
        poolSize: t.guest.swiotlbSlots * IO_TLB_SIZE,
      };
    }
  }
}

/** The device layer `l` of the plan as a DMA layer description. */
function deviceLayer(p: Parts, l: DeviceLayerPlan): DeviceDmaLayerSpec {
  switch (l.kind) {
    case "identity":
      return { kind: "identity", name: l.name };
    case "bridge-offset":
      return { kind: "window", windows: toWindows(l.windows), name: "pci-bridge" };
    case "no-iotlb":
      return {
        kind: "space",
        make: () =>
          new FaultingAddressSpace(
            l.backend,
            "unmapped",
            "no device IOTLB support: it cannot translate the bus address",
          ),
      };
    case "grant-map":
      return l.supported
        ? { kind: "space", make: () => new XenGrantAddressSpace(p.grant ?? new XenGrantDmaApi()) }
        : { kind: "identity", name: "xen-backend" };
    case "private-filter":
      return { kind: "confidential", inner: { kind: "identity", name: l.tech }, name: l.tech };
    case "iommu":
      return iommuDeviceLayer(p, l);
  }
}

/** A host IOMMU in front of the device, in the state the guest left its domain. */
function iommuDeviceLayer(
  p: Parts,
  l: DeviceLayerPlan & { kind: "iommu" },
): DeviceDmaLayerSpec {
  const m = iommuOf(p.t, l.iommu);
  if (m.kind === "virtio-iommu") {
    if (l.state === "disabled") return { kind: "identity", name: "virtio-iommu(disabled)" };
    // Pass-through (identity) is modelled as an unattached endpoint with bypass on.
    return {
      kind: "space",
      make: () =>
        p.viommu.get(m, l.state === "dma", l.state === "identity").device!.endpointSpace(
          p.viommu.rid,
        ),
    };
  }
  switch (l.state) {
    case "disabled":
      return { kind: "identity", name: `${unitSpec(p.t, m).name}(disabled)` };
    case "identity":
      return { kind: "iommu", unit: m.id, domain: "identity" };
    case "blocked":
      return { kind: "iommu", unit: m.id, domain: "blocked" };
    case "dma": {
      // The paged domain the driver maps into (or an empty one nobody maps into).
      if (m.kind === "alpha-typhoon") {
        const windows = new DmaWindowTable(alphaDirect(m));
        return { kind: "iommu", unit: m.id, domain: "paged", window: { windows, name: "typhoon" } };
      }
      if (m.kind === "tce" && m.ddw) {
        const windows = new DmaWindowTable([{ cpuStart: 0, busStart: m.ddwStart, size: 2 ** 52 }]);
        return { kind: "iommu", unit: m.id, domain: "paged", window: { windows, name: "tce" } };
      }
      return { kind: "iommu", unit: m.id, domain: "paged" };
    }
  }
}

/** The plan as one DMA assembly description (units for every declared hardware IOMMU). */
function describe(p: Parts): DmaAssemblySpec {
  const units: Record<string, IommuUnitSpec> = {};
  for (const m of p.t.iommus) units[m.id] = unitSpec(p.t, m);
  return {
    units,
    driver: p.plan.driverLayers.map((l) => driverLayer(p, l)),
    device: p.plan.deviceLayers.map((l) => deviceLayer(p, l)),
    wrapDeviceLayer: (l) => new BackingAddressSpace(l, p.sparse),
  };
}

function buildInstance(t: Topology, plan: DevicePlan): PlatformInstance {
  const sparse = guestMemory(t, plan);
  const { ringGpa, bufferGpa, poolGpa } = runLayout(t);
  const p: Parts = {
    t,
    plan,
    sparse,
    viommu: new Viommu(t, sparse, requesterId(plan.device.bdf) ?? 0),
    grant: null,
  };
  const a = assembleDma(sparse.memory, describe(p));
  const baseLayer = plan.driverLayers.at(-1);
  const core = plan.deviceLayers.find((l) => l.kind === "iommu" || l.kind === "grant-map");
  const revokes = (baseLayer?.kind === "iommu" && core?.kind === "iommu" && core.state === "dma") ||
    (baseLayer?.kind === "grant" && core?.kind === "grant-map" && core.supported);
  const vm = baseLayer?.kind === "iommu" ? iommuOf(t, baseLayer.iommu) : undefined;
  const splitUnmap =
    t.guest.splitUnmap && vm?.kind === "virtio-iommu" && vm.unmapSemantics === "qemu"
      ? p.viommu.splitUnmap()
      : null;
  return {
    sparse,
    api: a.api,
    bounce: a.bounce,
    base: a.base,
    spaceLayers: a.spaceLayers,
    space: a.space,
    revokes,
    splitUnmap,
    ringGpa,
    bufferGpa,
    poolGpa,
  };
}
