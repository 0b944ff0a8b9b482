import { assertEquals, assertThrows } from "@std/assert";
import fc from "fast-check";
import { GuestMemory } from "../../src/memory/guest_memory.ts";
import { createCopyableBacking } from "../../src/memory/backing.ts";
import { MemoryFault } from "../../src/memory/fault.ts";
import { DMA_ACCESS_READ, DMA_ACCESS_WRITE, DmaFault, DmaMapError } from "../../src/dma/errors.ts";
import {
  DMA_BIDIRECTIONAL,
  DMA_FROM_DEVICE,
  DMA_TO_DEVICE,
  DmaTranslation,
} from "../../src/dma/types.ts";
import { IovaAllocator } from "../../src/dma/iova_allocator.ts";
import { DirectDmaApi } from "../../src/dma/direct_api.ts";
import { Iommu, X86_MSI_REGION } from "../../src/dma/iommu.ts";
import { IoPageWalk } from "../../src/dma/page_table.ts";
import { IommuDmaApi } from "../../src/dma/iommu_api.ts";
import { FakeClock } from "../../src/dma/clock.ts";
import { FlushQueue } from "../../src/dma/flush_queue.ts";
import { IO_TLB_SEGSIZE, SwiotlbDmaApi } from "../../src/dma/swiotlb.ts";
import { hasUnmapPage } from "../../src/dma/types.ts";

const R = DMA_ACCESS_READ, W = DMA_ACCESS_WRITE;

function mapErr(fn: () => unknown): DmaMapError {
  return assertThrows(fn, DmaMapError);
}

Deno.test("iova allocator: top-down below the limit, size-aligned, reserved ranges skipped", () => {
  const a = new IovaAllocator();
  const lim = 2 ** 20; // 32-bit mask -> 2^20 pages
  assertEquals(a.alloc(1, lim), lim - 1); // IOVA 0xfffff000
  assertEquals(a.alloc(1, lim), lim - 2);
  assertEquals(a.alloc(4, lim), lim - 8); // aligned to 4 pages: 0xffff8000..0xffffb000
  assertEquals(a.alloc(3, lim), lim - 12); // 3 pages aligned to 4
  // Linux searches below the cached node (the last allocation), not from the top again:
  assertEquals(a.alloc(1, lim), lim - 13); // not the hole at lim-4..lim-3
  assertEquals(a.free(lim - 8), true);
  assertEquals(a.free(lim - 8), false);
  // freeing above the cached node moves it up to the next range (lim-2): the hole is found
  assertEquals(a.alloc(2, lim), lim - 4);
  const b = new IovaAllocator();
  b.reserve(0xfee00, 0xfeeff); // MSI window
  assertEquals(b.alloc(0x100, 0xfff00), 0xffe00);
  assertEquals(b.alloc(0x200, 0xfef00), 0xfec00); // below the reserved window
  const c = new IovaAllocator();
  assertEquals(c.alloc(2, 4), 2);
  assertEquals(c.alloc(1, 4), 1); // startPfn 1: IOVA 0 never handed out
  assertEquals(c.alloc(1, 4), -1);
});

Deno.test("iova allocator: frees only live ranges, reuses a freed one, never hands out IOVA 0", () => {
  const a = new IovaAllocator();
  a.reserve(3, 4);
  assertEquals(a.alloc(2, 8), 6);
  assertEquals(a.alloc(1, 8), 5); // just above the reserved range
  assertEquals(a.alloc(1, 8), 2); // just below it
  assertEquals(a.free(3), false); // a reserved range is not an allocation
  assertEquals(a.free(5), true);
  assertEquals(a.alloc(1, 8), 5); // the freed range is found again
  assertEquals(a.alloc(1, 8), 1);
  assertEquals(a.alloc(1, 8), -1); // PFN 0 stays out (startPfn 1)
  assertEquals(a.rangeCount, 5);
});

Deno.test("iova allocator: granule option sets the PFN size (64 KiB), default 4 KiB", () => {
  assertEquals(new IovaAllocator().granule, 4096);
  const g = new IovaAllocator({ granule: 0x1_0000 });
  assertEquals([g.granule, g.iovaPfn(0x4_ffff), g.iovaPfn(0x5_0000)], [0x1_0000, 4, 5]);
  // A RESV region reserves every granule it touches (iova_reserve_iommu_regions).
  g.reserveIova(0x1_8000, 0x2_0fff); // granules 1 and 2
  assertEquals(g.alloc(1, 4), 3); // IOVA 0x3_0000
  assertEquals(g.alloc(1, 4), -1);
  // The same bytes reserve 4 KiB PFNs 0x18..0x20 with the default granule.
  const d = new IovaAllocator();
  d.reserveIova(0x1_8000, 0x2_0fff);
  assertEquals(d.alloc(1, 0x21), 0x17);
  for (const bad of [0x1800, 0, 3, 2 ** 53, 0.5]) {
    assertThrows(() => new IovaAllocator({ granule: bad }), RangeError);
  }
});

Deno.test("direct: identity and windows, refusing buffers above the mask or outside windows", () => {
  const api = new DirectDmaApi({ mask: 0xffff_ffff });
  assertEquals(api.map(0xffff_f000, 0x1000, DMA_TO_DEVICE), 0xffff_f000);
  const e = mapErr(() => api.map(0xffff_f000, 0x1001, DMA_TO_DEVICE));
  assertEquals([e.reason, e.address, e.length], ["mask", 0xffff_f000, 0x1001]);
  const w = new DirectDmaApi({
    windows: [{ cpuStart: 0, busStart: 2n ** 63n, size: 0x10_0000 }],
  });
  assertEquals(w.map(0xf_ffff, 1, DMA_FROM_DEVICE), 2n ** 63n + 0xfffffn);
  assertEquals(mapErr(() => w.map(0xf_ffff, 2, DMA_FROM_DEVICE)).reason, "window");
  assertEquals(w.busToGpa(2n ** 63n + 5n), 5);
  const m = new DirectDmaApi({
    mask: 2n ** 63n + 0xfffn,
    windows: [{ cpuStart: 0, busStart: 2n ** 63n, size: 0x10_0000 }],
  });
  assertEquals(m.map(0xff0, 16, 0), 2n ** 63n + 0xff0n);
  assertEquals(mapErr(() => m.map(0xff0, 17, 0)).reason, "mask");
});

function iommuSetup(
  policy: "strict" | "lazy",
  extra: Partial<ConstructorParameters<typeof IommuDmaApi>[0]> = {},
) {
  const mem = GuestMemory.flat(0x40_0000);
  const iommu = new Iommu(mem, { reservedRegions: [X86_MSI_REGION] });
  const domain = iommu.createDomain();
  const clock = new FakeClock();
  const api = new IommuDmaApi({ iommu, domain, policy, clock, ...extra });
  return { mem, iommu, domain, api, clock, ep: iommu.endpoint(domain), t: new DmaTranslation() };
}

Deno.test("iommu-strict: IOVA top-down below 4 GiB first, offset kept, invalidation on every unmap", () => {
  const { api, ep, t, iommu } = iommuSetup("strict");
  const bus = api.map(0x1234, 0x20, DMA_TO_DEVICE) as number;
  assertEquals(bus, 0xffff_f234); // SAC first: highest page below 4 GiB, offset 0x234 kept
  ep.translate(bus, 0x20, R, t);
  assertEquals([t.gpa, t.length], [0x1234, 0x20]);
  assertEquals(assertThrows(() => ep.translate(bus, 1, W, t), DmaFault).reason, "permission");
  const bus2 = api.map(0x3000, 0x2000, DMA_FROM_DEVICE) as number;
  assertEquals(bus2, 0xffff_c000); // 2 pages, 2-page aligned, below the first
  ep.translate(bus2 + 0x1ff0, 0x10, W, t);
  assertEquals(t.gpa, 0x4ff0);
  api.unmap(bus, 0x20, DMA_TO_DEVICE);
  assertEquals(api.stats.invalidations, 1);
  assertEquals(iommu.iotlb.stats.rangeInvalidations, 1);
  assertEquals(assertThrows(() => ep.translate(bus, 1, R, t), DmaFault).reason, "unmapped");
  assertEquals(api.isStale(bus), false);
  assertEquals(mapErr(() => api.unmap(bus, 0x20, DMA_TO_DEVICE)).reason, "not-mapped");
  assertEquals(mapErr(() => api.syncForCpu(bus, 1, DMA_TO_DEVICE)).reason, "not-mapped");
  api.syncForCpu(bus2 + 8, 8, DMA_FROM_DEVICE);
  // unmap needs the exact handle map returned (dma-debug), sync accepts any range inside
  assertEquals(mapErr(() => api.unmap(bus2 + 8, 8, DMA_FROM_DEVICE)).reason, "not-mapped");
  assertEquals(mapErr(() => api.syncForCpu(bus2 + 0x1ff0, 0x11, 2)).reason, "not-mapped");
  assertEquals(api.map(0x1000, 1, 0), 0xffff_f000); // IOVA reused at once in strict mode
  const narrow = iommuSetup("strict", { mask: 0x3fff });
  narrow.api.map(0, 0x1000, 0);
  narrow.api.map(0, 0x1000, 0);
  narrow.api.map(0, 0x1000, 0); // pfn 1..3 used; pfn 0 never handed out
  assertEquals(mapErr(() => narrow.api.map(0, 0x1000, 0)).reason, "iova-exhausted");
});

Deno.test("unmapPage (page number + offset) has unmap's effect and errors: iommu strict/lazy, direct, fallback", () => {
  for (const policy of ["strict", "lazy"] as const) {
    const { api, ep, t } = iommuSetup(policy);
    const bus = api.mapNumber(0x1234, 0x20, DMA_TO_DEVICE);
    const pfn = Math.floor(bus / 4096), off = bus % 4096;
    assertEquals([pfn, off], [0xf_ffff, 0x234]);
    // not the handle map returned (another offset, the next page), coherent/streaming mismatch
    assertEquals(mapErr(() => api.unmapPage(pfn, 0x230, 0x20, 1)).reason, "not-mapped");
    assertEquals(mapErr(() => api.unmapPage(pfn - 1, off, 0x20, 1)).reason, "not-mapped");
    assertEquals(mapErr(() => api.unmapPage(pfn, off, 0x1000, 1)).reason, "not-mapped");
    // beyond the page-number range or a non-integer: unmap's answer for that address
    assertEquals(mapErr(() => api.unmapPage(2 ** 41, 0, 1, 1)).reason, "not-mapped");
    assertEquals(mapErr(() => api.unmapPage(pfn, 0.5, 1, 1)).reason, "not-mapped");
    api.unmapPage(pfn, off, 0x20, DMA_TO_DEVICE);
    assertEquals(api.stats.unmaps, 1);
    assertEquals(api.isStale(bus), policy === "lazy");
    if (policy === "strict") {
      assertEquals(assertThrows(() => ep.translate(bus, 1, R, t), DmaFault).reason, "unmapped");
    }
    assertEquals(mapErr(() => api.unmapPage(pfn, off, 0x20, 1)).reason, "not-mapped");
  }
  const direct = new DirectDmaApi({
    windows: [{ cpuStart: 0, busStart: 2 ** 31, size: 0x10_0000 }],
  });
  direct.unmapPage(2 ** 19, 0x10, 16, 0); // dma-direct tracks nothing: a no-op, as unmap
});

Deno.test("hasUnmapPage: only when unmapPage comes with the unmap it stands for (wrappers keep their unmap)", () => {
  const { api } = iommuSetup("strict");
  assertEquals(hasUnmapPage(api), true);
  assertEquals(hasUnmapPage(new DirectDmaApi()), true);
  // Object.create(api) with its own unmap, a subclass overriding unmap: their unmap must run
  const wrapped = Object.assign(Object.create(api), { unmap: () => {} }) as IommuDmaApi;
  assertEquals(hasUnmapPage(wrapped), false);
  class Counting extends IommuDmaApi {
    override unmap(bus: number | bigint, length: number, dir: 0 | 1 | 2): void {
      super.unmap(bus, length, dir);
    }
  }
  const { iommu, domain } = iommuSetup("strict");
  assertEquals(hasUnmapPage(new Counting({ iommu, domain })), false);
  assertEquals(hasUnmapPage({ ...api, unmap: () => {} } as unknown as IommuDmaApi), false);
});

Deno.test("iommu-lazy: stale IOTLB entry reaches memory after unmap until the batch flush (count)", () => {
  const { api, ep, t, iommu } = iommuSetup("lazy", { fqSize: 3 });
  const a = api.map(0x10000, 0x1000, DMA_BIDIRECTIONAL) as number;
  const b = api.map(0x20000, 0x1000, DMA_BIDIRECTIONAL) as number;
  ep.translate(a, 4, R, t); // the IOTLB now caches a's page
  api.unmap(a, 0x1000, DMA_BIDIRECTIONAL);
  api.unmap(b, 0x1000, DMA_BIDIRECTIONAL);
  assertEquals([api.isStale(a), api.isStale(b)], [true, true]);
  assertEquals(api.pendingIovas(), [{ bus: a, length: 0x1000 }, { bus: b, length: 0x1000 }]);
  ep.translate(a, 4, W, t); // stale hit: the device still reaches the old page
  assertEquals(t.gpa, 0x10000);
  assertEquals(assertThrows(() => ep.translate(b, 4, R, t), DmaFault).reason, "unmapped");
  // not reused before the flush
  const c = api.map(0x30000, 0x1000, 0) as number;
  assertEquals(c !== a && c !== b, true);
  assertEquals(api.stats.invalidations, 0);
  // third unmap: the ring (size 3) holds 2 entries, so a and b are flushed first and c is queued
  api.unmap(c, 0x1000, 0);
  assertEquals(api.stats.invalidations, 1);
  assertEquals(iommu.iotlb.stats.domainInvalidations, 1);
  assertEquals(api.flushQueue!.stats.fullFlushes, 1);
  assertEquals([api.isStale(a), api.isStale(c)], [false, true]);
  assertEquals(api.pendingIovas(), [{ bus: c, length: 0x1000 }]);
  assertEquals(assertThrows(() => ep.translate(a, 4, R, t), DmaFault).reason, "unmapped");
  // the flushed IOVAs went to the 1-page range cache (free_iova_fast); iova_magazine_pop hands
  // out the most recently freed one first
  assertEquals(api.allocator.cachedRanges(), 2);
  assertEquals(api.map(0x40000, 0x1000, 0), b);
  assertEquals(api.map(0x50000, 0x1000, 0), a);
});

Deno.test("iommu-lazy: timed flush after 10 ms on a fake clock", () => {
  const { api, ep, t, clock } = iommuSetup("lazy");
  const a = api.map(0x10000, 0x1000, 0) as number;
  ep.translate(a, 1, R, t);
  clock.advance(3);
  api.unmap(a, 0x1000, 0); // arms the timer at t=3
  assertEquals(api.flushQueue!.deadline, 13);
  clock.advance(9.5);
  api.tick();
  assertEquals(api.isStale(a), true);
  ep.translate(a, 1, R, t);
  clock.advance(0.5);
  api.tick();
  assertEquals(api.isStale(a), false);
  assertEquals(api.flushQueue!.stats.timeoutFlushes, 1);
  assertEquals(assertThrows(() => ep.translate(a, 1, R, t), DmaFault).reason, "unmapped");
});

Deno.test("flush queue: Linux defaults 256 entries / 10 ms", () => {
  const flushed: number[] = [];
  const fq = new FlushQueue((q) => flushed.push(q.length), { clock: new FakeClock() });
  assertEquals([fq.size, fq.timeoutMs], [256, 10]);
  // Linux's ring holds size - 1 = 255 entries; the 256th unmap flushes those 255 first and is
  // then queued itself, so it keeps its stale window.
  for (let i = 0; i < 255; i++) assertEquals(fq.push(i, 1), false);
  assertEquals(fq.push(255, 1), true);
  assertEquals(flushed, [255]);
  assertEquals([fq.length, fq.containsPfn(255), fq.containsPfn(254)], [1, true, false]);
});

Deno.test("iommu-lazy: IOVA exhaustion flushes pending unmaps and retries", () => {
  const { api } = iommuSetup("lazy", { mask: 0x3fff, sacFirst: false });
  const got = [api.map(0, 1, 0), api.map(0, 1, 0), api.map(0, 1, 0)];
  for (const g of got) api.unmap(g, 1, 0);
  assertEquals(api.pendingIovas().length, 3);
  api.map(0, 1, 0);
  assertEquals([api.stats.allocRetries, api.pendingIovas().length], [1, 0]);
});

function bounceSetup(poolSize = 128 * 2048 * 2) {
  const mem = GuestMemory.flat(0x100_0000);
  const api = new SwiotlbDmaApi({
    memory: mem,
    poolGpa: 0x80_0000,
    poolSize,
    inner: new DirectDmaApi(),
  });
  return { mem, api };
}

Deno.test("swiotlb: copies by direction on map, unmap and sync", () => {
  const { mem, api } = bounceSetup();
  mem.write(0x1000, new Uint8Array([1, 2, 3, 4]));
  const out = api.map(0x1000, 4, DMA_TO_DEVICE) as number;
  assertEquals(out, 0x80_0000);
  assertEquals([...mem.view(out, 4)], [1, 2, 3, 4]); // bounced in on map
  mem.write(0x1000, new Uint8Array([9, 9, 9, 9]));
  api.syncForDevice(out, 4, DMA_TO_DEVICE);
  assertEquals([...mem.view(out, 4)], [9, 9, 9, 9]);
  mem.write(out, new Uint8Array([7]));
  api.unmap(out, 4, DMA_TO_DEVICE); // TO_DEVICE: no copy back
  assertEquals(mem.readU8(0x1000), 9);

  const inb = api.map(0x2000, 8, DMA_FROM_DEVICE) as number;
  mem.write(inb, new Uint8Array([5, 6]));
  api.syncForCpu(inb, 2, DMA_FROM_DEVICE);
  assertEquals([...mem.view(0x2000, 2)], [5, 6]);
  mem.write(inb + 4, new Uint8Array([8]));
  api.syncForCpu(inb + 4, 1, DMA_FROM_DEVICE); // partial sync inside the mapping
  assertEquals(mem.readU8(0x2004), 8);
  mem.write(inb + 7, new Uint8Array([0xaa]));
  api.unmap(inb, 8, DMA_FROM_DEVICE);
  assertEquals(mem.readU8(0x2007), 0xaa);
  assertEquals(api.usedSlots, 0);
  assertEquals(mapErr(() => api.unmap(inb, 8, DMA_FROM_DEVICE)).reason, "not-mapped");
  assertEquals(mapErr(() => api.unmap(0x1000, 8, DMA_FROM_DEVICE)).reason, "not-mapped");
});

Deno.test("swiotlb: a sync may not run past its mapping (Linux: Buffer overflow detected)", () => {
  const { mem, api } = bounceSetup();
  mem.fill(0x1000, 0x2000, 0xaa);
  // 100 bytes: one slot. The device fills the whole slot; a 4096-byte sync must not copy back
  // over the neighbours of the original buffer.
  const bus = api.map(0x1000, 100, DMA_FROM_DEVICE) as number;
  mem.fill(bus, 2048, 0x11);
  const e = mapErr(() => api.syncForCpu(bus, 4096, DMA_FROM_DEVICE));
  assertEquals(e.reason, "not-mapped");
  assertEquals(mem.readU8(0x1000 + 100), 0xaa);
  assertEquals(mem.readU8(0x1000 + 99), 0xaa); // nothing copied by the refused sync
  api.syncForCpu(bus + 90, 10, DMA_FROM_DEVICE); // the last 10 bytes: allowed
  assertEquals(mem.readU8(0x1000 + 99), 0x11);
  assertEquals(mapErr(() => api.syncForCpu(bus + 90, 11, DMA_FROM_DEVICE)).reason, "not-mapped");
  // A 3-slot mapping: a sync inside the last slot is bounded by the mapping's end too.
  const big = api.map(0x1800, 5000, DMA_TO_DEVICE) as number;
  api.syncForDevice(big + 4096, 904, DMA_TO_DEVICE);
  assertEquals(
    mapErr(() => api.syncForDevice(big + 4096, 905, DMA_TO_DEVICE)).reason,
    "not-mapped",
  );
  api.unmap(big, 5000, DMA_TO_DEVICE);
  api.unmap(bus, 100, DMA_FROM_DEVICE);
  assertEquals(api.usedSlots, 0);
});

Deno.test("swiotlb: slot accounting, 128-slot segments, page alignment, exhaustion and too-large", () => {
  const { api } = bounceSetup(); // 256 slots = 2 segments
  assertEquals(api.slots, 256);
  const a = api.map(0, 2048 * 127, 0) as number; // 127 slots of segment 0
  assertEquals(api.usedSlots, 127);
  const b = api.map(0, 4096, 0) as number; // needs 2 slots page-aligned: cannot cross -> segment 1
  assertEquals(b, 0x80_0000 + IO_TLB_SEGSIZE * 2048);
  const c = api.map(0, 100, 0) as number; // next-fit continues after b
  assertEquals(c, b + 4096);
  assertEquals(api.usedSlots, 130);
  const big = mapErr(() => api.map(0, 256 * 1024 + 1, 0));
  assertEquals(big.reason, "too-large");
  // 125 slots remain in segment 1 (131..255), but a page-sized mapping starts page-aligned
  assertEquals(mapErr(() => api.map(0, 2048 * 125, 0)).reason, "pool-exhausted");
  const x = api.map(0, 2048 * 124, 0);
  assertEquals(x, 0x80_0000 + 132 * 2048);
  api.unmap(x, 2048 * 124, 0);
  const ex = mapErr(() => api.map(0, 2048 * 126, 0));
  assertEquals(ex.reason, "pool-exhausted");
  assertEquals(api.stats.exhausted, 2);
  api.unmap(a, 2048 * 127, 0);
  assertEquals(api.map(0, 2048 * 126, 0), 0x80_0000);
  assertEquals(api.map(0, 2048, 0), 0x80_0000 + 126 * 2048); // the slot 127 left over in seg 0
  api.unmap(b, 4096, 0);
  api.unmap(c, 100, 0);
  assertEquals(api.usedSlots, 127);
});

Deno.test("swiotlb: freed slots are not reused before the next-fit index comes round (Linux area->index)", () => {
  const { api } = bounceSetup();
  const a = api.map(0x1000, 1500, DMA_TO_DEVICE) as number;
  const b = api.map(0x2000, 3000, DMA_FROM_DEVICE) as number; // slots 1..2
  const c = api.map(0x3000, 1500, DMA_TO_DEVICE) as number;
  assertEquals([a, b, c], [0x80_0000, 0x80_0800, 0x80_1800]); // next-fit from the start
  api.unmap(b, 3000, DMA_FROM_DEVICE);
  api.unmap(a, 1500, DMA_TO_DEVICE);
  // slots 0..2 are free, but the search goes on from slot 4: a stale bus address of a or b
  // still points at a free slot, as in Linux
  assertEquals(api.map(0x1000, 1500, DMA_TO_DEVICE), 0x80_2000);
  assertEquals(api.map(0x1000, 64, DMA_TO_DEVICE), 0x80_2800);
  assertEquals(api.usedSlots, 3);
});

Deno.test("swiotlb: bounce copies give the same bytes whether regions share a backing store, are separate, or are observed", () => {
  // Three guests with one layout: buffers [0, 64 KiB), pool [64 KiB, +64 KiB). The pool region
  // also holds buffers (a buffer inside the pool region, even overlapping a slot, is legal).
  // shared: 0 = separate stores, 1 = one plain store (copyWithin), 2 = one WebAssembly store.
  // windowed: dma-direct through an identity window, so the swiotlb calls its inner API for every
  // slot instead of taking the plain dma-direct shortcut; the results must be the same.
  const make = (shared: 0 | 1 | 2, observed: boolean, windowed = false) => {
    const backing = shared === 0
      ? undefined
      : shared === 1
      ? new ArrayBuffer(0x2_0000)
      : createCopyableBacking(0x2_0000)!;
    const mem = new GuestMemory([
      { gpa: 0, size: 0x1_0000, backing },
      { gpa: 0x1_0000, size: 0x1_0000, backing, backingOffset: backing && 0x1_0000 },
    ]);
    for (let g = 0; g < 0x2_0000; g++) mem.writeU8(g, (g * 13 + 7) & 0xff);
    if (observed) mem.observer = { onRead() {}, onWrite() {} };
    const api = new SwiotlbDmaApi({
      memory: mem,
      poolGpa: 0x1_0000,
      poolSize: 0x8000,
      inner: new DirectDmaApi(
        windowed ? { windows: [{ cpuStart: 0, busStart: 0, size: 0x2_0000 }] } : {},
      ),
    });
    return { mem, api };
  };
  const op = fc.record({
    gpa: fc.oneof(
      fc.integer({ min: 0, max: 0xf000 }),
      fc.integer({ min: 0x1_0000, max: 0x1_f000 }),
    ),
    len: fc.constantFrom(0, 1, 3, 4, 60, 64, 127, 128, 129, 1500, 2048, 4096),
    dir: fc.constantFrom(0, 1, 2) as fc.Arbitrary<0 | 1 | 2>,
    fill: fc.integer({ min: 0, max: 255 }),
    unmapNow: fc.boolean(),
  });
  fc.assert(
    fc.property(fc.array(op, { maxLength: 30 }), (ops) => {
      const runs = [
        make(0, false),
        make(1, false),
        make(2, false),
        make(0, true),
        make(2, false, true),
      ];
      const out = runs.map(({ mem, api }) => {
        const live: [number, number, 0 | 1 | 2][] = [];
        const trace: string[] = [];
        for (const o of ops) {
          try {
            const bus = api.map(o.gpa, o.len, o.dir) as number;
            if (o.len > 0) mem.fill(bus, Math.min(o.len, 5), o.fill); // the device writes
            live.push([bus, o.len, o.dir]);
            trace.push(`map ${bus}`);
          } catch (e) {
            trace.push(`err ${(e as Error).name}`);
          }
          if (o.unmapNow && live.length > 0) {
            const [bus, len, dir] = live.shift()!;
            api.unmap(bus, len, dir);
          }
        }
        const bytes = [...mem.view(0, 0x1_0000), ...mem.view(0x1_0000, 0x1_0000)].join();
        return { trace, bytes };
      });
      for (let i = 1; i < runs.length; i++) assertEquals(out[i], out[0]);
    }),
    { numRuns: 60 },
  );
});

Deno.test("swiotlb inside an IOMMU domain: slot mapped through dma-iommu", () => {
  const mem = GuestMemory.flat(0x100_0000);
  const iommu = new Iommu(mem);
  const domain = iommu.createDomain();
  const inner = new IommuDmaApi({ iommu, domain });
  const api = new SwiotlbDmaApi({ memory: mem, poolGpa: 0x80_0000, poolSize: 0x10_0000, inner });
  mem.write(0x5003, new Uint8Array([42]));
  const bus = api.map(0x5003, 1, DMA_BIDIRECTIONAL) as number;
  const t = new DmaTranslation();
  iommu.endpoint(domain).translate(bus, 1, W, t);
  assertEquals(t.gpa, 0x80_0000);
  assertEquals(mem.readU8(t.gpa), 42);
  mem.writeU8(t.gpa, 43);
  api.unmap(bus, 1, DMA_BIDIRECTIONAL);
  assertEquals(mem.readU8(0x5003), 43);
  assertEquals(
    assertThrows(() => iommu.endpoint(domain).translate(bus, 1, R, t), DmaFault).reason,
    "unmapped",
  );
});

Deno.test("iommu: a 2 MiB-aligned buffer is mapped with one 2 MiB leaf (pgsize selection)", () => {
  const { api, domain, ep, t, iommu } = iommuSetup("strict");
  const bus = api.map(0x20_0000, 0x20_0000, DMA_BIDIRECTIONAL) as number;
  assertEquals(bus % 0x20_0000, 0); // IOVA size-aligned
  const w = new IoPageWalk();
  assertEquals(domain.table!.walk(bus, w), true);
  assertEquals([w.level, w.pageSize, w.pageGpa], [2, 0x20_0000, 0x20_0000]);
  ep.translate(bus + 0x1234, 0x10_0000, W, t);
  assertEquals([t.gpa, t.length], [0x20_1234, 0x10_0000]);
  ep.translate(bus + 0x1f_0000, 0x100, R, t);
  assertEquals(iommu.iotlb.size, 1); // one IOTLB entry covers the whole 2 MiB page
  api.unmap(bus, 0x20_0000, DMA_BIDIRECTIONAL);
  assertEquals(iommu.iotlb.size, 0);
});

Deno.test("swiotlb force=false: bounces only what dma-direct refuses (small DMA mask)", () => {
  const mem = GuestMemory.flat(0x100_0000);
  const api = new SwiotlbDmaApi({
    memory: mem,
    poolGpa: 0x10_0000,
    poolSize: 0x4_0000,
    inner: new DirectDmaApi({ mask: 0x7f_ffff }),
    force: false,
  });
  assertEquals(api.map(0x1000, 16, DMA_TO_DEVICE), 0x1000); // below the mask: direct
  mem.write(0x90_0000, new Uint8Array([1, 2, 3]));
  const b = api.map(0x90_0000, 3, DMA_BIDIRECTIONAL) as number; // above the mask: bounced
  assertEquals(b, 0x10_0000);
  assertEquals([...mem.view(b, 3)], [1, 2, 3]);
  mem.writeU8(b, 9);
  api.unmap(b, 3, DMA_BIDIRECTIONAL);
  assertEquals(mem.readU8(0x90_0000), 9);
  api.unmap(0x1000, 16, DMA_TO_DEVICE); // direct: no-op
  assertEquals([api.stats.direct, api.stats.bounced, api.usedSlots], [1, 1, 0]);
});

Deno.test("swiotlb: a buffer outside guest RAM is refused without leaking slots (fuzz regression)", () => {
  const { api } = bounceSetup();
  assertEquals(mapErr(() => api.map(2 ** 52 - 4096, 8192, DMA_TO_DEVICE)).reason, "mask");
  assertThrows(() => api.map(0x200_0000, 64, DMA_TO_DEVICE), MemoryFault); // a hole in RAM
  assertEquals(api.usedSlots, 0);
});

Deno.test("iova allocator: property - no overlap, aligned, below the limit, fails only when full", () => {
  const op = fc.oneof(
    fc.record({ alloc: fc.integer({ min: 1, max: 9 }), limit: fc.constantFrom(64, 100, 128) }),
    fc.record({ free: fc.nat(40) }),
  );
  fc.assert(
    fc.property(fc.array(op, { maxLength: 120 }), (ops) => {
      const a = new IovaAllocator();
      a.reserve(40, 47);
      const live: [number, number][] = [[40, 47]]; // [lo, hi] incl. the reserved range
      for (const o of ops) {
        if ("alloc" in o) {
          const got = a.alloc(o.alloc, o.limit);
          let align = 1;
          while (align < o.alloc) align *= 2;
          if (got < 0) {
            // no aligned gap may exist anywhere in [1, limit)
            for (let c = align; c + o.alloc <= o.limit; c += align) {
              const free = live.every(([l, h]) => c + o.alloc - 1 < l || c > h) && c >= 1;
              assertEquals(free, false, `alloc(${o.alloc}) failed but ${c} was free`);
            }
          } else {
            assertEquals(got % align, 0);
            assertEquals(got >= 1 && got + o.alloc <= o.limit, true);
            for (const [l, h] of live) assertEquals(got + o.alloc - 1 < l || got > h, true);
            live.push([got, got + o.alloc - 1]);
          }
        } else if (live.length > 1) {
          const i = 1 + (o.free % (live.length - 1));
          assertEquals(a.free(live[i][0]), true);
          live.splice(i, 1);
        }
      }
      assertEquals(a.rangeCount, live.length);
    }),
    { seed: 42, numRuns: 300 },
  );
});
