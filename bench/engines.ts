/**
 * What can be benchmarked, and how to build the {@link Benchable} of a case: the ring layouts
 * (split, packed) and the DMA modes, each pair built over its own guest memory.
 *
 * DMA modes (bench names; the mode factory's names in brackets):
 * - `identity` [`none`]: bus = GPA, no ACCESS_PLATFORM (the base point);
 * - `window` [`window`]: dma-direct through an offset window (bus = GPA + 2 GiB);
 * - `iommu-strict`, `iommu-lazy` [same]: dma-iommu map/unmap per buffer, strict invalidation
 *   per unmap or a flush queue; every new mapping misses the IOTLB once;
 * - `iommu-hit`: IOMMU translation with the IOTLB hit path only. The bench's buffers are mapped
 *   once through dma-iommu at set-up and the driver's per-buffer `map` returns those bus
 *   addresses (like a driver with premapped buffers); the device translates every descriptor
 *   through the IOMMU endpoint and the IOTLB. A bench-only arrangement, labelled as such;
 * - `iommu-identity` [`iommu-identity`]: IOMMU pass-through (identity domain);
 * - `swiotlb` [`swiotlb`]: bounce buffers (copy in on map, copy out on unmap);
 * - `virtio-iommu-long`: the same stack with one long-lived mapping of the buffer region made at
 *   set-up (`longLived`): no request per buffer, every descriptor translated by the endpoint;
 * - `virtio-iommu`: the virtio-iommu device and driver (`createViommuStack`): a MAP and an UNMAP
 *   request per buffer through the request queue;
 * - `direct` [`direct`]: dma-direct identity with the mask checked (M1);
 * - `window-high` [`window-high`]: dma-direct through a window at bus 2^63 (POWER DDW): every bus
 *   address is an exact u64 bigint, so this mode allocates per buffer by design;
 * - `window-iommu` [`window-iommu`]: the direct window when the buffer fits (it always does here),
 *   else dma-iommu;
 * - `confidential` [`confidential`]: buffers in private memory, bounced through a shared pool;
 *   the device sees only shared memory;
 * - `confidential-iommu` [`confidential-iommu`]: the same with the bounce slots mapped through
 *   dma-iommu (strict) and the device behind the IOMMU.
 *
 * Every mode's guest memory is one WebAssembly-backed store (`createDmaLab` with `fastCopy`), so
 * every payload copy on it (a bounce, the device's own copy) is one native memmove call, as a
 * kernel's memcpy is.
 *
 * @module
 */

import type { Availability, CaseParams } from "./cases.ts";
import { type Benchable, bufferBytes, type EnginePair, EngineRoundTrip } from "./roundtrip.ts";
import { MemcpyLine, SolRing } from "./sol.ts";
import { GuestMemory, type U64 } from "../src/memory/mod.ts";
import {
  createDmaLab,
  type DmaAddressSpace,
  type DmaApi,
  type DmaDirection,
  type DmaModeName,
  type IommuDmaApi,
  type Iotlb,
} from "../src/dma/mod.ts";
import {
  createViommuStack,
  VIOMMU_TRANSPORT_STAGING_BYTES,
  type VirtioIommuDmaApi,
} from "../src/devices/mod.ts";
import {
  type DeviceQueue,
  type DriverQueue,
  driverQueueFootprint,
  featureMask,
  PackedDeviceQueue,
  PackedDriverQueue,
  packedDriverQueueFootprint,
  type RingLayout,
  SplitDeviceQueue,
  SplitDriverQueue,
  VIRTIO_F_ACCESS_PLATFORM,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_RING_PACKED,
  VIRTIO_F_VERSION_1,
} from "../src/virtio/mod.ts";

/** Bench DMA mode names, in report order. */
export const BENCH_DMA_MODES = [
  "identity",
  "window",
  "iommu-strict",
  "iommu-lazy",
  "iommu-hit",
  "iommu-identity",
  "swiotlb",
  "virtio-iommu",
  "virtio-iommu-long",
  "direct",
  "window-high",
  "window-iommu",
  "confidential",
  "confidential-iommu",
] as const;

/** Ring layouts and DMA modes present on this branch. */
export const AVAILABLE: Availability = {
  layouts: ["split", "packed"],
  dmaModes: BENCH_DMA_MODES,
};

/** Not yet benchmarked, listed in the report so a reader knows what is missing. */
export const PENDING: readonly string[] = [];

/** Features a benchmark pair negotiates. */
export function benchFeatures(p: CaseParams): bigint {
  const bits = [VIRTIO_F_VERSION_1, VIRTIO_F_INDIRECT_DESC];
  if (p.eventIdx) bits.push(VIRTIO_F_EVENT_IDX);
  if (p.engine === "packed") bits.push(VIRTIO_F_RING_PACKED);
  if (p.dma !== "identity") bits.push(VIRTIO_F_ACCESS_PLATFORM);
  return featureMask(...bits);
}

function footprint(layout: RingLayout, size: number, features: bigint): number {
  return layout === "packed"
    ? packedDriverQueueFootprint(size, features)
    : driverQueueFootprint(layout, size, features);
}

function page(n: number): number {
  return Math.ceil(n / 4096) * 4096;
}

function queues(
  layout: RingLayout,
  p: CaseParams,
  memory: GuestMemory,
  api: DmaApi,
  space: DmaAddressSpace,
  ringGpa: number,
): { driver: DriverQueue<number>; device: DeviceQueue } {
  const features = benchFeatures(p);
  const dopts = {
    memory,
    dma: api,
    size: p.size,
    features,
    ringGpa,
    policy: { indirect: p.indirect ? "always" as const : "never" as const },
  };
  const driver = layout === "packed"
    ? new PackedDriverQueue<number>(dopts)
    : new SplitDriverQueue<number>(dopts);
  const vopts = { memory, dma: space, size: p.size, addresses: driver.addresses, features };
  const device = layout === "packed" ? new PackedDeviceQueue(vopts) : new SplitDeviceQueue(vopts);
  return { driver, device };
}

/**
 * The `iommu-hit` driver view: buffers premapped once through dma-iommu; `map` returns the
 * premapped bus address (offset arithmetic, no allocation), `unmap` does nothing. Ring areas go
 * to the real API.
 */
class PremappedDmaApi implements DmaApi {
  readonly name = "iommu-hit";
  readonly #inner: DmaApi;
  readonly #gpa: number;
  readonly #size: number;
  readonly #bus: number;
  constructor(inner: DmaApi, gpa: number, size: number) {
    this.#inner = inner;
    this.#gpa = gpa;
    this.#size = size;
    const bus = inner.map(gpa, size, 0);
    if (typeof bus !== "number") throw new Error("iommu-hit: premapped IOVA above 2^53");
    this.#bus = bus;
  }
  map(gpa: number, length: number, dir: DmaDirection): U64 {
    if (gpa >= this.#gpa && gpa + length <= this.#gpa + this.#size) {
      return this.#bus + (gpa - this.#gpa);
    }
    return this.#inner.map(gpa, length, dir);
  }
  mapNumber(gpa: number, length: number, dir: DmaDirection): number {
    if (gpa >= this.#gpa && gpa + length <= this.#gpa + this.#size) {
      return this.#bus + (gpa - this.#gpa);
    }
    return this.#inner.mapNumber ? this.#inner.mapNumber(gpa, length, dir) : -1;
  }
  unmap(bus: U64, length: number, dir: DmaDirection): void {
    if (typeof bus === "number" && bus >= this.#bus && bus + length <= this.#bus + this.#size) {
      return;
    }
    this.#inner.unmap(bus, length, dir);
  }
  syncForCpu(): void {}
  syncForDevice(): void {}
  mapCoherent(gpa: number, length: number): U64 {
    return this.#inner.mapCoherent(gpa, length);
  }
  unmapCoherent(bus: U64, length: number): void {
    this.#inner.unmapCoherent(bus, length);
  }
}

function iotlbCounters(tlb: Iotlb, api: IommuDmaApi | null): () => Record<string, number> {
  return () => ({
    iotlbHits: tlb.stats.hits,
    iotlbMisses: tlb.stats.misses,
    invalidations: api ? api.stats.invalidations : 0,
    maps: api ? api.stats.maps : 0,
    unmaps: api ? api.stats.unmaps : 0,
  });
}

function ringPair(p: CaseParams): Benchable {
  const layout: RingLayout = p.engine === "packed" ? "packed" : "split";
  const features = benchFeatures(p);
  const ringBytes = footprint(layout, p.size, features);
  const bufBytes = page(bufferBytes(p));
  if (p.dma === "virtio-iommu" || p.dma === "virtio-iommu-long") {
    const memory = new GuestMemory([
      { gpa: 0, size: bufBytes, name: "buffers" },
      { gpa: bufBytes, size: ringBytes, name: "rings" },
      { gpa: bufBytes + ringBytes, size: page(VIOMMU_TRANSPORT_STAGING_BYTES), name: "staging" },
    ]);
    const stack = createViommuStack({
      memory,
      stagingGpa: bufBytes + ringBytes,
      longLived: p.dma === "virtio-iommu-long" ? { gpa: 0, size: bufBytes } : undefined,
    });
    const q = queues(layout, p, memory, stack.api, stack.space, bufBytes);
    const api: VirtioIommuDmaApi = stack.api;
    return new EngineRoundTrip(
      { memory, ...q },
      p,
      0,
      () => ({ viommuRequests: api.maps + api.unmaps, maps: api.maps, unmaps: api.unmaps }),
    );
  }
  const modeName: DmaModeName = p.dma === "identity"
    ? "none"
    : p.dma === "iommu-hit"
    ? "iommu-strict"
    : (p.dma as DmaModeName);
  if (!(BENCH_DMA_MODES as readonly string[]).includes(p.dma)) {
    throw new Error(`unknown bench DMA mode ${p.dma}; known: ${BENCH_DMA_MODES.join(", ")}`);
  }
  const lab = createDmaLab(modeName, {
    bufferSize: bufBytes,
    ringSize: ringBytes,
    poolSize: Math.max(4 << 20, page(2 * bufBytes)),
    iotlbCapacity: 1024,
    fastCopy: true,
  });
  const mode = lab.mode;
  const api = p.dma === "iommu-hit"
    ? new PremappedDmaApi(mode.api, lab.bufferGpa, bufBytes)
    : mode.api;
  const q = queues(layout, p, lab.memory, api, mode.space, lab.ringGpa);
  const pair: EnginePair = { memory: lab.memory, ...q };
  const counters = mode.iommu ? iotlbCounters(mode.iommu.iotlb, mode.iommuApi) : undefined;
  return new EngineRoundTrip(pair, p, lab.bufferGpa, counters);
}

/**
 * Builds the benchable of a case.
 * @throws Error for an unknown DMA mode; the engine's own errors for a bad configuration.
 */
export function createBenchable(p: CaseParams): Benchable {
  switch (p.engine) {
    case "sol": {
      const ring = new SolRing(p);
      return {
        chainsPerCall: p.batch,
        descriptorsPerCall: p.batch * p.chainLen,
        bytesPerCall: p.batch * p.payload,
        run: () => ring.roundTrip(),
      };
    }
    case "memcpy": {
      const line = new MemcpyLine(p);
      return {
        chainsPerCall: p.batch,
        descriptorsPerCall: 0,
        bytesPerCall: p.batch * p.payload,
        run: () => (line.run(), p.batch),
      };
    }
    default:
      return ringPair(p);
  }
}
