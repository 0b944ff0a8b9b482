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

import { hex64, type U64 } from "../memory/u64.ts";
import { MemoryFault } from "../memory/fault.ts";
import { DMA_ACCESS_READ, DMA_ACCESS_WRITE, DmaFault, DmaMapError } from "../dma/errors.ts";
import { IdentityAddressSpace } from "../dma/identity.ts";
import {
  DMA_FROM_DEVICE,
  DMA_TO_DEVICE,
  type DmaAddressSpace,
  type DmaApi,
  type DmaDirection,
  DmaTranslation,
} from "../dma/types.ts";
import { SgList } from "../virtio/sg_list.ts";
import { VirtqError } from "../virtio/errors.ts";
import {
  ChainedApi,
  ChainedSpace,
  IO_TLB_SEGSIZE,
  IO_TLB_SIZE,
  type ReservedRange,
  StandinAlphaApi,
  StandinAlphaSpace,
  StandinBounceApi,
  StandinFaultSpace,
  StandinGrantApi,
  StandinGrantSpace,
  StandinIommuApi,
  StandinIommuDomain,
  StandinIommuSpace,
  StandinOffsetApi,
  StandinOffsetSpace,
  StandinPrivateFilter,
} from "./_standin_dma.ts";
import { createStandinPair } from "./_standin_ring.ts";
import {
  defaultRingGpa,
  type DeviceLayerPlan,
  type DevicePlan,
  type DriverLayerPlan,
  featureNames,
  planTopology,
} from "./policy.ts";
import { BackingAddressSpace, SparseGuestMemory } from "./sparse_memory.ts";
import type { FeatureName, Topology, TopologyIommu, Verdict } from "./topology.ts";

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
  /** One entry per device, in file order. */
  devices: DeviceResolution[];
}

// ---------------------------------------------------------------------------------------------
// Building the two views

interface Built {
  sparse: SparseGuestMemory;
  apiLayers: DmaApi[];
  spaceLayers: DmaAddressSpace[];
  api: DmaApi;
  space: DmaAddressSpace;
  /** Does the driver's unmap revoke the device's access (IOMMU / grant)? */
  revokes: boolean;
  /** Fault injection: an UNMAP that removes the mapping at `[bus, bus + len)` (QEMU semantics). */
  splitUnmap: ((bus: U64, len: number) => void) | null;
  ringGpa: number;
  bufferGpa: number;
  poolGpa: number;
}

function layout(t: Topology) {
  const ringGpa = Number(t.workload.ringGpa ?? defaultRingGpa(t));
  const bufferGpa = Number(t.workload.bufferGpa ?? ringGpa + 1024 * 1024);
  const poolGpa = ringGpa + 16 * 1024 * 1024;
  return { ringGpa, bufferGpa, poolGpa };
}

const IDENTITY_WINDOW = [{ cpu: 0, bus: 0, size: 2 ** 52 }];

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
  const { ringGpa, bufferGpa, poolGpa } = layout(t);
  const domains = new Map<string, StandinIommuDomain>();
  const iommuOf = (id: string) => t.iommus.find((m) => m.id === id)!;
  const lazy = plan.driverLayers.some((l) => l.kind === "iommu" && l.lazy);
  const domainOf = (m: TopologyIommu) => {
    let d = domains.get(m.id);
    if (!d) {
      const name = m.kind === "alpha-typhoon" ? "typhoon-sg" : m.kind;
      d = new StandinIommuDomain(
        name,
        m.pageSize ?? (m.kind === "alpha-typhoon" ? 8192 : 4096),
        lazy,
      );
      domains.set(m.id, d);
    }
    return d;
  };
  const resvOf = (m: TopologyIommu): ReservedRange[] =>
    m.kind === "virtio-iommu"
      ? m.resvMem.map((r) => ({ start: Number(r.start), end: Number(r.end), subtype: r.subtype }))
      : [];
  const alphaDirect = (m: TopologyIommu) =>
    m.kind === "alpha-typhoon" ? [{ cpu: 0, bus: m.directBase, size: m.directSize }] : [];

  let grantApi: StandinGrantApi | null = null;
  let iommuApi: StandinIommuApi | null = null;
  const apiLayers: DmaApi[] = plan.driverLayers.map((l: DriverLayerPlan): DmaApi => {
    switch (l.kind) {
      case "raw-gpa":
        return new StandinOffsetApi("raw-gpa", IDENTITY_WINDOW);
      case "direct":
        return new StandinOffsetApi("dma-direct", IDENTITY_WINDOW);
      case "swiotlb-xen":
        return new StandinOffsetApi("swiotlb-xen", IDENTITY_WINDOW);
      case "offset":
        return new StandinOffsetApi(l.name, l.windows);
      case "passthrough":
        return new StandinOffsetApi(`${iommuOf(l.iommu).kind}-passthrough`, IDENTITY_WINDOW);
      case "bounce":
        return new StandinBounceApi(sparse.memory, poolGpa, t.guest.swiotlbSlots, null, l.name);
      case "grant":
        return grantApi = new StandinGrantApi();
      case "alpha": {
        const m = iommuOf(l.iommu);
        const sg = new StandinIommuApi(domainOf(m), 0x80_0000, 0x100_0000);
        return new StandinAlphaApi(new StandinOffsetApi("typhoon-direct", alphaDirect(m)), sg);
      }
      case "iommu": {
        const m = iommuOf(l.iommu);
        const start = m.iova ? Number(m.iova.start) : m.kind === "tce" ? 0x1000 : 0x1000;
        const end = m.iova
          ? Number(m.iova.end)
          : m.kind === "tce"
          ? Number(m.window32Size)
          : 2 ** 32;
        const avoid = t.guest.honoursResvMem ? resvOf(m) : [];
        return iommuApi = new StandinIommuApi(domainOf(m), start, end, avoid);
      }
    }
  });
  const spaceLayers: DmaAddressSpace[] = plan.deviceLayers.map(
    (l: DeviceLayerPlan): DmaAddressSpace => {
      switch (l.kind) {
        case "identity":
          return new IdentityAddressSpace(l.name);
        case "bridge-offset":
          return new StandinOffsetSpace("pci-bridge", l.windows);
        case "no-iotlb":
          return new StandinFaultSpace(
            l.backend,
            "unmapped",
            "no device IOTLB support: cannot translate the bus address",
          );
        case "grant-map":
          return l.supported
            ? new StandinGrantSpace(grantApi ?? new StandinGrantApi())
            : new IdentityAddressSpace("xen-backend");
        case "private-filter":
          return new StandinPrivateFilter(l.tech, (g) => sparse.isPrivate(g));
        case "iommu": {
          const m = iommuOf(l.iommu);
          switch (l.state) {
            case "identity":
              return new IdentityAddressSpace(`${m.kind}(identity)`);
            case "disabled":
              return new IdentityAddressSpace(`${m.kind}(disabled)`);
            case "blocked":
              return m.kind === "virtio-iommu"
                ? (m.bootBypass
                  ? new IdentityAddressSpace("virtio-iommu(bypass)")
                  : new StandinFaultSpace(
                    "virtio-iommu",
                    "no-domain",
                    "endpoint not attached and bypass = 0 (R_DOMAIN)",
                  ))
                : new StandinFaultSpace(
                  m.kind,
                  "unmapped",
                  "no context entry / stream table entry for this requester ID",
                );
            case "dma": {
              const paged = new StandinIommuSpace(domainOf(m), resvOf(m));
              if (m.kind === "alpha-typhoon") {
                return new StandinAlphaSpace(
                  new StandinOffsetSpace(
                    "typhoon-direct",
                    alphaDirect(m).map((w) => ({ cpu: w.cpu, bus: w.bus, size: w.size })),
                  ),
                  paged,
                );
              }
              if (m.kind === "tce" && m.ddw) {
                return new StandinAlphaSpace(
                  new StandinOffsetSpace("tce-ddw", [{ cpu: 0, bus: m.ddwStart, size: 2 ** 52 }]),
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
  );
  // Confidential guest: the bounce pool and (with the DMA API) the coherent rings are shared.
  if (plan.driverLayers.some((l) => l.kind === "bounce")) {
    sparse.share(poolGpa, t.guest.swiotlbSlots * IO_TLB_SIZE);
    if (plan.usesDmaApi) sparse.share(ringGpa, 4096 * 4);
  }
  const api = apiLayers.length === 1 ? apiLayers[0] : new ChainedApi(apiLayers);
  const inner = spaceLayers.length === 1 ? spaceLayers[0] : new ChainedSpace(spaceLayers);
  const space = new BackingAddressSpace(inner, sparse);
  const base = plan.driverLayers.at(-1);
  const core = plan.deviceLayers.find((l) => l.kind === "iommu" || l.kind === "grant-map");
  const revokes = (base?.kind === "iommu" && core?.kind === "iommu" && core.state === "dma") ||
    (base?.kind === "grant" && core?.kind === "grant-map" && core.supported);
  let splitUnmap: Built["splitUnmap"] = null;
  const vm = base?.kind === "iommu" ? iommuOf(base.iommu) : undefined;
  if (
    t.guest.splitUnmap && vm?.kind === "virtio-iommu" && vm.unmapSemantics === "qemu" && iommuApi
  ) {
    const a: StandinIommuApi = iommuApi;
    splitUnmap = (bus, len) => a.removeRange(Number(bus), Number(bus) + len - 1);
  }
  return {
    sparse,
    apiLayers,
    spaceLayers,
    api,
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
  if (c instanceof DmaFault) return { verdict: "fault", layer: c.layer, detail: c.message };
  if (c instanceof DmaMapError) return { verdict: "fault", layer: c.mode, detail: c.message };
  if (c instanceof MemoryFault) {
    return { verdict: "fault", layer: "memory", detail: `${c.message} (unassigned: no RAM there)` };
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// Prediction: one DMA through the views

function predict(
  t: Topology,
  plan: DevicePlan,
): { outcome: Outcome; trace: TraceStep[]; partsAt: string | null } {
  const v = build(t, plan);
  const mem = v.sparse.memory;
  const trace: TraceStep[] = [];
  const t0 = new DmaTranslation();
  let partsAt: string | null = null;

  const mapThrough = (
    gpa: number,
    len: number,
    dir: DmaDirection,
    coherent: boolean,
    what: string,
  ): U64[] => {
    const addrs: U64[] = [gpa];
    let a: U64 = gpa;
    for (const l of v.apiLayers) {
      try {
        const b: U64 = coherent ? l.mapCoherent(Number(a), len) : l.map(Number(a), len, dir);
        trace.push({
          side: "driver",
          layer: l.name,
          from: a,
          to: b,
          note: `${what}: ${coherent ? "mapCoherent" : "map"}`,
        });
        a = b;
        addrs.push(a);
      } catch (e) {
        trace.push({
          side: "driver",
          layer: l.name,
          from: a,
          to: null,
          note: `${what}: ${(e as Error).message}`,
        });
        throw e;
      }
    }
    return addrs;
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
    if (!v.sparse.ensure(g, Math.min(len, 4096))) {
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
  const part = (drv: U64[], dev: U64[]) => {
    if (partsAt !== null) return;
    const names = v.apiLayers.map((l) => l.name);
    const bounced = v.apiLayers[0] !== undefined &&
      (names[0] === "swiotlb" || names[0] === "restricted-dma-pool");
    const rev = drv.slice(bounced ? 1 : 0).reverse();
    const revNames = names.slice(bounced ? 1 : 0).reverse();
    let j = 0;
    for (let i = 1; i < dev.length; i++) {
      const x = String(dev[i]);
      if (x === String(rev[j])) continue;
      if (j + 1 < rev.length && x === String(rev[j + 1])) {
        j++;
        continue;
      }
      partsAt = `device layer "${v.spaceLayers[i - 1].name}" turns ${hex64(dev[i - 1])} into ` +
        `${hex64(dev[i])}, but the driver's "${revNames[j] ?? names.at(-1)}" meant ${
          hex64(rev.at(-1)!)
        }`;
      return;
    }
    if (j !== rev.length - 1) {
      partsAt = `the device dereferences ${hex64(dev.at(-1)!)} as a GPA, but the driver's ` +
        `"${revNames[j]}" produced it as a bus address for ${hex64(rev.at(-1)!)}`;
    }
  };

  const outcome = ((): Outcome => {
    try {
      // 1. The rings (coherent DMA): the device must reach the driver's ring memory.
      v.sparse.ensure(v.ringGpa, 4096);
      const ring = mapThrough(v.ringGpa, 4096, 0, true, "ring");
      const ringDev = translateThrough(ring.at(-1)!, 64, DMA_ACCESS_READ, "ring");
      part(ring, ringDev);
      if (ringDev.at(-1) !== v.ringGpa) {
        return {
          verdict: "corrupt",
          layer: v.spaceLayers.at(-1)!.name,
          detail: `the device reads the rings at ${
            hex64(ringDev.at(-1)!)
          } but the driver wrote them at ${hex64(v.ringGpa)}`,
        };
      }
      // 2. The device-readable buffer.
      const n = Math.min(t.workload.bufferBytes, 4096);
      v.sparse.ensure(v.bufferGpa, 2 * align4k(t.workload.bufferBytes));
      const data = pattern(t.workload.bufferBytes, 0xa5);
      mem.write(v.bufferGpa, data);
      const seg = segments(t, plan, v.bufferGpa);
      const rd = mapThrough(v.bufferGpa, seg.len[0], DMA_TO_DEVICE, false, "out buffer");
      for (let i = 1; i < seg.count; i++) {
        mapThrough(seg.gpa[i], seg.len[i], DMA_TO_DEVICE, false, "out buffer");
      }
      const bus = rd.at(-1)!;
      if (v.splitUnmap) {
        v.splitUnmap(bus, seg.len[0]);
        trace.push({
          side: "driver",
          layer: "virtio-iommu",
          from: bus,
          to: null,
          note: "racy UNMAP splits a mapping: QEMU already removed this one",
        });
      }
      const dev = translateThrough(bus, n, DMA_ACCESS_READ, "out buffer");
      part(rd, dev);
      const got = mem.view(Number(dev.at(-1)!), n);
      const where = rd.length > 2 ? rd[rd.length - 2] : rd[0];
      const expectAt = v.apiLayers.some((l) =>
          l.name === "swiotlb" || l.name === "restricted-dma-pool"
        )
        ? where
        : v.bufferGpa;
      if (!equalBytes(got, mem.view(Number(expectAt), n))) {
        return {
          verdict: "corrupt",
          layer: v.spaceLayers.at(-1)!.name,
          detail: `the device reads ${hex64(dev.at(-1)!)} instead of ${hex64(expectAt)}`,
        };
      }
      // 3. The device-writable buffer: map, device writes, unmap (bounce copies back).
      const wGpa = v.bufferGpa + align4k(t.workload.bufferBytes);
      const wseg = segments(t, plan, wGpa);
      const wd = mapThrough(wGpa, wseg.len[0], DMA_FROM_DEVICE, false, "in buffer");
      const wdev = translateThrough(wd.at(-1)!, n, DMA_ACCESS_WRITE, "in buffer");
      part(wd, wdev);
      const marker = pattern(n, 0x3c);
      mem.write(Number(wdev.at(-1)!), marker);
      v.api === v.apiLayers[0]
        ? v.api.unmap(wd.at(-1)!, wseg.len[0], DMA_FROM_DEVICE)
        : unmapLayers(v.apiLayers, wd, wseg.len[0], DMA_FROM_DEVICE);
      if (!equalBytes(mem.view(wGpa, n), marker)) {
        return {
          verdict: "corrupt",
          layer: v.spaceLayers.at(-1)!.name,
          detail: `the device writes ${hex64(wdev.at(-1)!)}; the driver's buffer at ${
            hex64(wGpa)
          } never sees it`,
        };
      }
      // 4. Use after unmap: can the device still reach the out buffer?
      unmapLayers(v.apiLayers, rd, seg.len[0], DMA_TO_DEVICE);
      if (v.revokes) {
        try {
          let b: U64 = bus;
          for (const l of v.spaceLayers) {
            l.translate(b, n, DMA_ACCESS_READ, t0);
            b = t0.gpa;
          }
          trace.push({
            side: "device",
            layer: v.spaceLayers[0].name,
            from: bus,
            to: b,
            note: "after unmap: the IOTLB entry is still valid (lazy flush queue)",
          });
          return {
            verdict: "stale-window",
            layer: v.spaceLayers[0].name,
            detail: `after unmap the device still reaches ${hex64(b)} through ${hex64(bus)}`,
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
    partsAt = `layer "${outcome.layer}" cannot translate what the driver programmed`;
  }
  if (outcome.verdict === "ok") partsAt = null;
  return { outcome, trace, partsAt };
}

function unmapLayers(layers: DmaApi[], addrs: U64[], len: number, dir: DmaDirection): void {
  for (let i = layers.length - 1; i >= 0; i--) layers[i].unmap(addrs[i + 1], len, dir);
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
  v.sparse.ensure(v.ringGpa, 4096 * 4);
  v.sparse.ensure(v.bufferGpa, 2 * align4k(bytes));
  const out = pattern(bytes, 0xa5);
  const wGpa = v.bufferGpa + align4k(bytes);
  mem.write(v.bufferGpa, out);
  mem.fill(wGpa, bytes, 0xcc);
  const api = new RecordingApi(v.api);
  try {
    const pair = createStandinPair({
      memory: mem,
      size: RUN_QUEUE_SIZE,
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
        layer: v.spaceLayers.at(-1)!.name,
        detail: "the device read an available ring at the wrong GPA and saw no buffer",
      };
    }
    const written = chain.copyReadableToWritable();
    pair.device.push(chain, written);
    pair.device.flush();
    const token = pair.driver.getUsed();
    if (token === undefined) {
      return {
        verdict: "corrupt",
        layer: v.spaceLayers.at(-1)!.name,
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
        layer: v.spaceLayers.at(-1)!.name,
        detail: `used len ${pair.driver.usedLen}: returned data differs from byte ${i} (got 0x${
          back[i].toString(16)
        }, sent 0x${out[i].toString(16)})`,
      };
    }
    if (v.revokes) {
      const t0 = new DmaTranslation();
      const m0 = api.maps[0];
      try {
        v.space.translate(m0.bus, Math.min(m0.len, 4096), DMA_ACCESS_READ, t0);
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
      detail: `${bytes} bytes out and back intact (used len ${pair.driver.usedLen})`,
    };
  } catch (e) {
    const o = describe(e);
    if (o) return o;
    if (e instanceof VirtqError) {
      return {
        verdict: "corrupt",
        layer: v.spaceLayers.at(-1)!.name,
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
    driverApi: v.api.name,
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
    devices: planTopology(t).map((p) => resolveDevice(t, p)),
  };
}
