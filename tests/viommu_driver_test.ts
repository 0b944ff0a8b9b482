import { assertEquals, assertThrows } from "@std/assert";
import {
  createViommuStack,
  DMA_ACCESS_READ,
  DMA_ACCESS_WRITE,
  DMA_BIDIRECTIONAL,
  DMA_FROM_DEVICE,
  DMA_TO_DEVICE,
  DmaFault,
  DmaMapError,
  DmaTranslation,
  GuestMemory,
  VIOMMU_TRANSPORT_STAGING_BYTES,
  ViommuIovaAllocator,
  viommuQueuesFootprint,
  type ViommuSubmission,
  type ViommuTransport,
  VIRTIO_IOMMU_F_PROBE,
  VIRTIO_IOMMU_MAP_F_READ,
  VIRTIO_IOMMU_MAP_F_WRITE,
  VIRTIO_IOMMU_RESV_MEM_T_RESERVED,
} from "../src/mod.ts";

const STAGING = 0x70000;
const mem = () => GuestMemory.flat(0x80000);

Deno.test("viommu DmaApi: init PROBEs and ATTACHes; map sends MAP with direction flags", () => {
  const m = mem();
  const s = createViommuStack({ memory: m, stagingGpa: STAGING });
  assertEquals(s.device.endpointDomain(8), 1);
  assertEquals(s.api.resvMem, [{ subtype: 1, start: 0xfee0_0000, end: 0xfeef_ffff }]);
  const a = s.api.map(0x2010, 0x20, DMA_TO_DEVICE);
  const b = s.api.map(0x5000, 0x1001, DMA_FROM_DEVICE);
  const c = s.api.mapCoherent(0x9000, 0x1000);
  assertEquals(s.device.domainMappings(1), [
    { virtStart: 0x1000, virtEnd: 0x1fff, physStart: 0x2000, flags: VIRTIO_IOMMU_MAP_F_READ },
    { virtStart: 0x2000, virtEnd: 0x3fff, physStart: 0x5000, flags: VIRTIO_IOMMU_MAP_F_WRITE },
    {
      virtStart: 0x4000,
      virtEnd: 0x4fff,
      physStart: 0x9000,
      flags: VIRTIO_IOMMU_MAP_F_READ | VIRTIO_IOMMU_MAP_F_WRITE,
    },
  ]);
  assertEquals([a, b, c], [0x1010, 0x2000, 0x4000]);
  // The endpoint's view translates the driver's bus addresses back to the GPAs.
  const out = new DmaTranslation();
  s.space.translate(a, 0x20, DMA_ACCESS_READ, out);
  assertEquals([out.gpa, out.length], [0x2010, 0x20]);
  s.space.translate(b, 0x1001, DMA_ACCESS_WRITE, out);
  assertEquals([out.gpa, out.length], [0x5000, 0x1001]);
  assertThrows(() => s.space.translate(a, 4, DMA_ACCESS_WRITE, out), DmaFault);
  // Unmap: the device forgets the mapping, the device faults, the IOVA is reused.
  s.api.unmap(a, 0x20, DMA_TO_DEVICE);
  assertEquals(s.device.domainMappings(1)!.length, 2);
  assertEquals(
    assertThrows(() => s.space.translate(a, 4, DMA_ACCESS_READ, out), DmaFault).reason,
    "unmapped",
  );
  assertEquals(s.api.map(0x7000, 0x800, DMA_BIDIRECTIONAL), 0x1000);
  assertThrows(() => s.api.unmap(0x3_0000, 4, DMA_TO_DEVICE), DmaMapError);
  assertThrows(() => s.api.syncForCpu(0x3_0000, 4, DMA_TO_DEVICE), DmaMapError);
  s.api.syncForDevice(c, 0x1000, DMA_BIDIRECTIONAL);
  s.api.unmapCoherent(c, 0x1000);
  assertEquals([s.api.maps, s.api.unmaps, s.api.liveMappings], [4, 2, 2]);
});

Deno.test("viommu DmaApi: honours page_size_mask granule and input_range", () => {
  const s = createViommuStack({
    memory: mem(),
    stagingGpa: STAGING,
    config: { pageSizeMask: 0x1_0000 | 0x20_0000, inputStart: 0x4000_0000, inputEnd: 0x4fff_ffff },
  });
  assertEquals(s.api.granule, 0x1_0000);
  const bus = s.api.map(0x1_2345, 100, DMA_TO_DEVICE);
  assertEquals(bus, 0x4000_2345);
  assertEquals(s.device.domainMappings(1)![0], {
    virtStart: 0x4000_0000,
    virtEnd: 0x4000_ffff,
    physStart: 0x1_0000,
    flags: VIRTIO_IOMMU_MAP_F_READ,
  });
  // The window holds 4096 granules; the next map beyond it is iova-exhausted.
  const small = createViommuStack({
    memory: mem(),
    stagingGpa: STAGING,
    config: { inputStart: 0x1000, inputEnd: 0x2fff },
  });
  small.api.map(0, 0x2000, DMA_TO_DEVICE);
  assertEquals(
    assertThrows(() => small.api.map(0, 1, DMA_TO_DEVICE), DmaMapError).reason,
    "iova-exhausted",
  );
});

Deno.test("viommu DmaApi: IOVAs avoid RESV_MEM regions learned by PROBE", () => {
  const s = createViommuStack({
    memory: mem(),
    stagingGpa: STAGING,
    resvMem: [{ subtype: VIRTIO_IOMMU_RESV_MEM_T_RESERVED, start: 0x1000, end: 0xf_ffff }],
  });
  assertEquals(s.api.map(0x3000, 0x10, DMA_TO_DEVICE), 0x10_0000);
  // Without PROBE the driver does not know the region: the device rejects the MAP (INVAL).
  const blind = createViommuStack({
    memory: mem(),
    stagingGpa: STAGING,
    resvMem: [{ subtype: VIRTIO_IOMMU_RESV_MEM_T_RESERVED, start: 0x1000, end: 0xf_ffff }],
    driverFeatures: ~(1n << BigInt(VIRTIO_IOMMU_F_PROBE)) & ((1n << 64n) - 1n),
  });
  const e = assertThrows(() => blind.api.map(0x3000, 0x10, DMA_TO_DEVICE), DmaMapError);
  assertEquals(e.reason, "transport");
  assertEquals(e.message.includes("INVAL"), true);
  assertEquals(blind.api.liveMappings, 0);
});

Deno.test("viommu DmaApi: non-OK status is DmaMapError transport; mapBatch uses one kick", () => {
  const s = createViommuStack({ memory: mem(), stagingGpa: STAGING, device: { maxMappings: 3 } });
  const before = s.transport.batches;
  const buses = s.api.mapBatch([0x1000, 0x2000], [0x10, 0x10], DMA_TO_DEVICE);
  assertEquals(s.transport.batches - before, 1);
  assertEquals(buses, [0x1000, 0x2000]);
  const e = assertThrows(
    () => s.api.mapBatch([0x4000, 0x5000], [0x10, 0x10], DMA_TO_DEVICE),
    DmaMapError,
  );
  assertEquals(e.reason, "transport");
  assertEquals(e.message.includes("NOMEM"), true);
  // All or nothing: the first MAP of the failed batch was undone.
  assertEquals(s.device.mappingCount, 2);
  assertEquals(s.api.liveMappings, 2);
  // An uninitialised API refuses to map.
  const fresh = createViommuStack({ memory: mem(), stagingGpa: STAGING });
  fresh.api.detach();
  assertEquals(fresh.device.endpointDomain(8), null);
  assertThrows(() => fresh.api.map(0x1000, 1, DMA_TO_DEVICE), DmaMapError);
});

Deno.test("viommu IOVA allocator: first fit, aligned, skips reserved windows, reuses freed ranges", () => {
  const a = new ViommuIovaAllocator(0x1000, 0, 0xf_ffff);
  a.reserve(0x3000, 0x4fff);
  assertEquals(a.alloc(0x2000), 0x1000);
  assertEquals(a.alloc(0x1000), 0x5000);
  assertEquals(a.alloc(0x1000), 0x6000);
  assertEquals(a.free(0x5000), true);
  assertEquals(a.free(0x3000), false); // a reserved window is not an allocation
  assertEquals(a.alloc(0x1000), 0x5000);
  assertEquals(a.alloc(0x10_0000), -1);
  assertEquals(a.live, 3);
  assertThrows(() => new ViommuIovaAllocator(0x1800, 0, 1), RangeError);
});

Deno.test("viommu on our engine: requests over the split requestq, faults over the eventq", () => {
  const m = mem();
  const s = createViommuStack({ memory: m, stagingGpa: STAGING, eventBuffers: 2 });
  assertEquals(s.transport.name, "requestq");
  const q = s.queues!;
  const before = s.transport.batches;
  const buses = s.api.mapBatch([0x1000, 0x2000, 0x3000], [8, 8, 8], DMA_TO_DEVICE);
  assertEquals(s.transport.batches - before, 1);
  assertEquals(s.device.mappingCount, 3);
  s.api.unmap(buses[1], 8, DMA_TO_DEVICE);
  assertEquals(q.requestq.outstanding, 0);
  const out = new DmaTranslation();
  for (const bus of [buses[1], buses[0]]) {
    assertThrows(() => s.space.translate(bus, 4, DMA_ACCESS_WRITE, out), DmaFault);
  }
  assertEquals(q.drainFaults(), [
    { reason: 2, flags: 0x102, endpoint: 8, address: buses[1] },
    { reason: 2, flags: 0x102, endpoint: 8, address: buses[0] },
  ]);
  // Buffers were re-posted: two more faults are reported, a third is dropped (2 buffers).
  for (let i = 0; i < 3; i++) {
    assertThrows(() => s.space.translate(0x7_0000_0000, 4, DMA_ACCESS_READ, out), DmaFault);
  }
  assertEquals(q.drainFaults().length, 2);
  assertEquals(s.device.stats.faultsDropped, 1);
  // Direct transport gives the same device state.
  const d = createViommuStack({ memory: mem(), stagingGpa: STAGING, transport: "direct" });
  d.api.mapBatch([0x1000, 0x2000, 0x3000], [8, 8, 8], DMA_TO_DEVICE);
  assertEquals(d.device.domainMappings(1)!.map((x) => x.virtStart), [0x1000, 0x2000, 0x3000]);
  assertEquals(s.device.domainMappings(1)!.map((x) => x.virtStart), [0x1000, 0x3000]);
});

Deno.test("viommu stack fits its 16 KiB region (rings, event buffers, staging) exactly", () => {
  const m = new GuestMemory([
    { gpa: 0, size: 0x10000, name: "buffers" },
    { gpa: 0x10000, size: VIOMMU_TRANSPORT_STAGING_BYTES, name: "viommu" },
  ]);
  assertEquals(viommuQueuesFootprint(), VIOMMU_TRANSPORT_STAGING_BYTES);
  const s = createViommuStack({ memory: m, stagingGpa: 0x10000 });
  // 40 MAPs in one batch: split over several kicks by the staging area, all succeed.
  const gpas = Array.from({ length: 40 }, (_, i) => i * 0x400);
  const buses = s.api.mapBatch(gpas, gpas.map(() => 0x100), DMA_BIDIRECTIONAL);
  assertEquals(buses.length, 40);
  assertEquals(s.device.mappingCount, 40);
  const out = new DmaTranslation();
  s.space.translate(buses[39], 0x100, DMA_ACCESS_WRITE, out);
  assertEquals(out.gpa, 39 * 0x400);
});

Deno.test("viommu long-lived mapping: one MAP at init, buffers inside need no request", () => {
  const s = createViommuStack({
    memory: mem(),
    stagingGpa: STAGING,
    longLived: { gpa: 0x10000, size: 0x20000 },
  });
  assertEquals(s.api.maps, 1);
  const requests = s.transport.requests;
  const bus = s.api.map(0x10800, 0x100, DMA_FROM_DEVICE);
  s.api.syncForCpu(bus, 0x100, DMA_FROM_DEVICE);
  s.api.syncForDevice(Number(bus) + 0x8000, 0x100, DMA_FROM_DEVICE);
  s.api.unmap(bus, 0x100, DMA_FROM_DEVICE);
  assertEquals(s.transport.requests, requests);
  assertEquals(s.api.windowMaps, 1);
  const out = new DmaTranslation();
  s.space.translate(bus, 0x100, DMA_ACCESS_WRITE, out);
  assertEquals([out.gpa, out.length], [0x10800, 0x100]);
  // Outside the window: per-buffer MAP and UNMAP.
  const other = s.api.map(0x40000, 0x10, DMA_TO_DEVICE);
  s.api.unmap(other, 0x10, DMA_TO_DEVICE);
  assertEquals(s.transport.requests, requests + 2);
});

Deno.test("viommu driver: a device answering used length 0 is a transport error", () => {
  const silent: ViommuTransport = {
    name: "silent",
    requests: 0,
    batches: 0,
    submit(batch: readonly ViommuSubmission[]) {
      for (const s of batch) s.used = 0;
    },
    submitOne() {
      return 0;
    },
  };
  const e = assertThrows(
    () => createViommuStack({ memory: mem(), stagingGpa: STAGING, transport: () => silent }),
    DmaMapError,
  );
  assertEquals([e.reason, e.message.includes("PROBE: used length 0")], ["transport", true]);
});
