import { assertEquals, assertThrows } from "@std/assert";
import fc from "fast-check";
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
  type ViommuMapping,
  viommuQueuesFootprint,
  type ViommuStack,
  type ViommuSubmission,
  type ViommuTransport,
  VIRTIO_IOMMU_F_PROBE,
  VIRTIO_IOMMU_MAP_F_READ,
  VIRTIO_IOMMU_MAP_F_WRITE,
  VIRTIO_IOMMU_RESV_MEM_T_RESERVED,
} from "../../../src/mod.ts";

const STAGING = 0x70000;
const mem = () => GuestMemory.flat(0x80000);
const MSI = { start: 0xfee0_0000, end: 0xfeef_ffff };
const PAGE = 0x1000;

/** The domain's mappings as plain numbers, ordered by physStart. */
function mappingsByGpa(
  s: ViommuStack,
): { iova: number; size: number; gpa: number; flags: number }[] {
  return (s.device.domainMappings(1) ?? [])
    .map((m: ViommuMapping) => ({
      iova: Number(m.virtStart),
      size: Number(m.virtEnd) - Number(m.virtStart) + 1,
      gpa: Number(m.physStart),
      flags: m.flags,
    }))
    .sort((a, b) => a.gpa - b.gpa);
}

/**
 * The IOVA properties the driver promises (dma-iommu over virtio-iommu): every mapping lies in
 * `[low, high]`, is granule-aligned in start and size, overlaps no reserved region and no other
 * live mapping; IOVA 0 is never used.
 */
function assertIovaProperties(
  s: ViommuStack,
  o: { low: number; high: number; granule: number; resv: { start: number; end: number }[] },
): void {
  const ms = mappingsByGpa(s).sort((a, b) => a.iova - b.iova);
  for (const [k, m] of ms.entries()) {
    const what = `mapping at ${m.iova.toString(16)}`;
    assertEquals(m.iova >= Math.max(o.low, 1) && m.iova + m.size - 1 <= o.high, true, what);
    assertEquals([m.iova % o.granule, m.size % o.granule], [0, 0], what);
    for (const r of o.resv) {
      assertEquals(m.iova + m.size - 1 < r.start || m.iova > r.end, true, `${what} in RESV_MEM`);
    }
    if (k > 0) assertEquals(ms[k - 1].iova + ms[k - 1].size <= m.iova, true, `${what} overlaps`);
  }
}

Deno.test("viommu DmaApi: init PROBEs and ATTACHes; map sends MAP with direction flags", () => {
  const m = mem();
  const s = createViommuStack({ memory: m, stagingGpa: STAGING });
  assertEquals(s.device.endpointDomain(8), 1);
  assertEquals(s.api.resvMem, [{ subtype: 1, start: 0xfee0_0000, end: 0xfeef_ffff }]);
  const a = s.api.map(0x2010, 0x20, DMA_TO_DEVICE);
  const b = s.api.map(0x5000, 0x1001, DMA_FROM_DEVICE);
  const c = s.api.mapCoherent(0x9000, 0x1000);
  // One MAP per buffer for exactly the pages it covers; the bus address keeps the page offset.
  const RW = VIRTIO_IOMMU_MAP_F_READ | VIRTIO_IOMMU_MAP_F_WRITE;
  const ms = mappingsByGpa(s);
  assertEquals(ms.map((m) => [m.gpa, m.size, m.flags]), [
    [0x2000, 0x1000, VIRTIO_IOMMU_MAP_F_READ],
    [0x5000, 0x2000, VIRTIO_IOMMU_MAP_F_WRITE],
    [0x9000, 0x1000, RW],
  ]);
  assertEquals([a, b, c].map((x) => Number(x) % PAGE), [0x10, 0, 0]);
  assertEquals(ms.map((m) => m.iova), [a, b, c].map((x) => Number(x) - (Number(x) % PAGE)));
  const props = { low: 0, high: 2 ** 48 - 1, granule: PAGE, resv: [MSI] };
  assertIovaProperties(s, props);
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
  const d = Number(s.api.map(0x7000, 0x800, DMA_BIDIRECTIONAL));
  assertIovaProperties(s, props); // not overlapping b and c, which are still live
  assertEquals(d !== Number(b) && d !== Number(c), true);
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
  const bus = Number(s.api.map(0x1_2345, 100, DMA_TO_DEVICE));
  assertEquals(bus % 0x1_0000, 0x2345);
  assertEquals(mappingsByGpa(s), [{
    iova: bus - 0x2345,
    size: 0x1_0000,
    gpa: 0x1_0000,
    flags: VIRTIO_IOMMU_MAP_F_READ,
  }]);
  s.api.map(0x3_0000, 0x2_0001, DMA_FROM_DEVICE); // 3 granules
  assertIovaProperties(s, { low: 0x4000_0000, high: 0x4fff_ffff, granule: 0x1_0000, resv: [] });
  // A window of 2 granules (size-aligned): one 2-granule map fills it; the next is exhausted.
  const small = createViommuStack({
    memory: mem(),
    stagingGpa: STAGING,
    config: { inputStart: 0x2000, inputEnd: 0x3fff },
  });
  assertEquals(small.api.map(0, 0x2000, DMA_TO_DEVICE), 0x2000);
  assertEquals(
    assertThrows(() => small.api.map(0, 1, DMA_TO_DEVICE), DmaMapError).reason,
    "iova-exhausted",
  );
});

Deno.test("viommu DmaApi: IOVAs avoid RESV_MEM regions learned by PROBE", () => {
  // input_range [0, 0x10_ffff] with the top reserved: only IOVA pages 1..3 are usable.
  const resv = { subtype: VIRTIO_IOMMU_RESV_MEM_T_RESERVED, start: 0x4000, end: 0x10_ffff };
  const config = { inputStart: 0, inputEnd: 0x10_ffff };
  const s = createViommuStack({ memory: mem(), stagingGpa: STAGING, resvMem: [resv], config });
  const buses = [0, 1, 2].map(() => Number(s.api.map(0x3000, 0x10, DMA_TO_DEVICE)));
  assertEquals(buses.toSorted((x, y) => x - y), [0x1000, 0x2000, 0x3000]);
  assertEquals(
    assertThrows(() => s.api.map(0x3000, 0x10, DMA_TO_DEVICE), DmaMapError).reason,
    "iova-exhausted",
  );
  // Without PROBE the driver does not know the region: the device rejects the MAP (INVAL).
  const blind = createViommuStack({
    memory: mem(),
    stagingGpa: STAGING,
    resvMem: [resv],
    config,
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
  assertEquals(buses.map((b) => Number(b) % PAGE), [0, 0]);
  assertIovaProperties(s, { low: 0, high: 2 ** 48 - 1, granule: PAGE, resv: [MSI] });
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
  assertEquals(d.api.mapBatch([0x1000, 0x2000, 0x3000], [8, 8, 8], DMA_TO_DEVICE), buses);
  const starts = (x: ViommuStack) => x.device.domainMappings(1)!.map((m) => Number(m.virtStart));
  assertEquals(starts(s), starts(d).filter((v) => v !== buses[1]));
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

Deno.test("viommu DmaApi: sync accepts any sub-range of a live 3-page mapping, nothing past it", () => {
  const s = createViommuStack({ memory: mem(), stagingGpa: STAGING });
  // 3 pages: GPA 0x2800..0x57ff covers pages 0x2000, 0x3000, 0x4000, 0x5000 -> use an aligned one.
  const bus = Number(s.api.map(0x2000, 0x3000, DMA_BIDIRECTIONAL));
  const notMapped = (fn: () => void) =>
    assertEquals(assertThrows(fn, DmaMapError).reason, "not-mapped");
  for (const sync of [s.api.syncForCpu.bind(s.api), s.api.syncForDevice.bind(s.api)]) {
    sync(bus, 0x3000, DMA_BIDIRECTIONAL); // the whole buffer
    sync(bus + 0x1800, 0x100, DMA_BIDIRECTIONAL); // inside the 2nd page
    sync(bus + 0x2f00, 0x100, DMA_BIDIRECTIONAL); // the last bytes of the 3rd (last) page
    sync(bus + 0xff0, 0x20, DMA_BIDIRECTIONAL); // straddling pages 1 and 2
    notMapped(() => sync(bus + 0x2f00, 0x101, DMA_BIDIRECTIONAL)); // runs past the end
    notMapped(() => sync(bus + 0x3000, 1, DMA_BIDIRECTIONAL)); // the page after the mapping
    notMapped(() => sync(bus - 1, 2, DMA_BIDIRECTIONAL)); // starts before it
  }
  // unmap still needs the handle map returned (first page), not an address deeper inside.
  notMapped(() => s.api.unmap(bus + 0x1000, 0x100, DMA_BIDIRECTIONAL));
  s.api.unmap(bus, 0x3000, DMA_BIDIRECTIONAL);
  notMapped(() => s.api.syncForCpu(bus + 0x1800, 0x100, DMA_BIDIRECTIONAL));
  notMapped(() => s.api.syncForDevice(bus, 1, DMA_BIDIRECTIONAL));
});

Deno.test("viommu DmaApi: IOVA properties under random map/unmap (64 KiB granule, input_range, RESV_MEM)", () => {
  // Properties, not addresses: in input_range, granule-aligned, outside RESV_MEM, never reused
  // while live; every live buffer translates to its GPA and syncs anywhere inside.
  const granule = 0x1_0000;
  const low = 0x10_0000, high = 0x1ff_ffff;
  const resv = [
    { subtype: VIRTIO_IOMMU_RESV_MEM_T_RESERVED, start: 0x180_0000, end: 0x18f_ffff },
    { subtype: 2, start: 0x1f0_0000, end: 0x1f0_ffff }, // MSI, not granule-sized at the end
  ];
  const op = fc.oneof(
    fc.record({
      map: fc.constant(true),
      gpa: fc.nat(0x6_0000),
      len: fc.integer({ min: 1, max: 0x1_8000 }),
    }),
    fc.record({ map: fc.constant(false), pick: fc.nat() }),
  );
  fc.assert(
    fc.property(fc.array(op, { maxLength: 24 }), (ops) => {
      const s = createViommuStack({
        memory: mem(),
        stagingGpa: STAGING,
        resvMem: resv,
        config: { pageSizeMask: granule | 0x20_0000, inputStart: low, inputEnd: high },
      });
      const live: { bus: number; gpa: number; len: number }[] = [];
      const out = new DmaTranslation();
      for (const o of ops) {
        if (o.map) {
          const bus = Number(s.api.map(o.gpa, o.len, DMA_BIDIRECTIONAL));
          assertEquals(bus % granule, o.gpa % granule);
          live.push({ bus, gpa: o.gpa, len: o.len });
        } else if (live.length > 0) {
          const [m] = live.splice(o.pick % live.length, 1);
          s.api.unmap(m.bus, m.len, DMA_BIDIRECTIONAL);
        }
        assertIovaProperties(s, { low, high, granule, resv });
        assertEquals(s.api.liveMappings, live.length);
        for (const m of live) {
          s.space.translate(m.bus + m.len - 1, 1, DMA_ACCESS_WRITE, out);
          assertEquals(out.gpa, m.gpa + m.len - 1);
          s.api.syncForCpu(m.bus + m.len - 1, 1, DMA_FROM_DEVICE);
        }
      }
    }),
    { seed: 0x5eed, numRuns: 40 },
  );
});

Deno.test("viommu requestq on a packed layout: MAP/UNMAP/PROBE and fault reports work", () => {
  const layout = "packed" as const;
  const m = new GuestMemory([
    { gpa: 0, size: 0x10000, name: "buffers" },
    { gpa: 0x10000, size: viommuQueuesFootprint(64, 2, layout), name: "viommu" },
  ]);
  const s = createViommuStack({ memory: m, stagingGpa: 0x10000, layout, eventBuffers: 2 });
  const q = s.queues!;
  assertEquals([q.requestq.layout, q.eventq.layout], ["packed", "packed"]);
  assertEquals(s.api.resvMem, [{ subtype: 1, start: MSI.start, end: MSI.end }]); // PROBE answered
  // More requests than the ring holds (64), so the packed wrap counters flip several times.
  const out = new DmaTranslation();
  for (let round = 0; round < 3; round++) {
    const gpas = Array.from({ length: 40 }, (_, i) => i * 0x400);
    const buses = s.api.mapBatch(gpas, gpas.map(() => 0x100), DMA_TO_DEVICE);
    assertEquals(s.device.mappingCount, 40);
    s.space.translate(buses[39], 0x100, DMA_ACCESS_READ, out);
    assertEquals(out.gpa, 39 * 0x400);
    for (let i = 0; i < 40; i++) s.api.unmap(buses[i], 0x100, DMA_TO_DEVICE);
    assertEquals(s.device.mappingCount, 0);
  }
  assertEquals(q.requestq.outstanding, 0);
  assertEquals([s.api.maps, s.api.unmaps], [120, 120]);
  // A fault is reported over the packed eventq and the buffer re-posted.
  for (let i = 0; i < 3; i++) {
    assertThrows(() => s.space.translate(0x7_0000_0000, 4, DMA_ACCESS_READ, out), DmaFault);
    assertEquals(q.drainFaults(), [{
      reason: 2,
      flags: 0x101,
      endpoint: 8,
      address: 0x7_0000_0000,
    }]);
  }
});
