import { assertEquals, assertThrows } from "@std/assert";
import fc from "fast-check";
import { GuestMemory } from "../../src/memory/guest_memory.ts";
import { DMA_ACCESS_READ, DMA_ACCESS_WRITE, DmaFault, DmaMapError } from "../../src/dma/errors.ts";
import { DmaTranslation } from "../../src/dma/types.ts";
import { WindowAddressSpace } from "../../src/dma/window.ts";
import {
  IO_PAGE_1G,
  IO_PAGE_2M,
  IO_PAGE_4K,
  IoPageTable,
  IoPageWalk,
  IOPTE_PS,
  IOPTE_READ,
  IOPTE_WRITE,
} from "../../src/dma/page_table.ts";
import { Iotlb } from "../../src/dma/iotlb.ts";
import { Iommu, X86_MSI_REGION } from "../../src/dma/iommu.ts";
import { ConfidentialAddressSpace } from "../../src/dma/confidential.ts";
import { StackedAddressSpace } from "../../src/dma/compose.ts";
import { IdentityAddressSpace } from "../../src/dma/identity.ts";

const R = DMA_ACCESS_READ, W = DMA_ACCESS_WRITE;

function fault(fn: () => void): DmaFault {
  return assertThrows(fn, DmaFault);
}

Deno.test("window: first and last byte in, one past either end out (alpha CIA 2 GiB at 2 GiB)", () => {
  const s = new WindowAddressSpace([{ cpuStart: 0, busStart: 0x8000_0000, size: 0x8000_0000 }]);
  const t = new DmaTranslation();
  s.translate(0x8000_0000, 16, R, t);
  assertEquals([t.gpa, t.length], [0, 16]);
  s.translate(0xffff_ffff, 1, R, t);
  assertEquals([t.gpa, t.length], [0x7fff_ffff, 1]);
  s.translate(0xffff_fff0, 64, R, t); // prefix stops at the window end
  assertEquals([t.gpa, t.length], [0x7fff_fff0, 16]);
  const f = fault(() => s.translate(0x1_0000_0000, 1, W, t));
  assertEquals([f.reason, f.bus, f.length, f.access], ["out-of-window", 0x1_0000_0000, 1, W]);
  assertEquals(fault(() => s.translate(0x7fff_ffff, 1, R, t)).reason, "out-of-window");
  assertEquals(s.table.physToBus(0x7fff_fff0, 16), 0xffff_fff0);
  assertEquals(s.table.physToBus(0x7fff_fff0, 17), null);
  assertEquals(s.table.physToBus(0x8000_0000, 1), null);
});

Deno.test("window at 2^63 (POWER DDW): exact bigint arithmetic at both edges", () => {
  const base = 2n ** 63n;
  const s = new WindowAddressSpace([{ cpuStart: 0x1000, busStart: base, size: 0x10_0000 }]);
  const t = new DmaTranslation();
  s.translate(base, 8, R, t);
  assertEquals([t.gpa, t.length], [0x1000, 8]);
  s.translate(base + 0xfffffn, 8, R, t);
  assertEquals([t.gpa, t.length], [0x10_0fff, 1]);
  assertEquals(fault(() => s.translate(base - 1n, 1, R, t)).bus, base - 1n);
  assertEquals(fault(() => s.translate(base + 0x10_0000n, 1, R, t)).reason, "out-of-window");
  assertEquals(s.table.physToBus(0x1000, 1), base);
  assertEquals(s.table.physToBus(0x10_0fff, 1), base + 0xfffffn);
  assertEquals(s.table.physToBus(0x10_1000, 1), null);
  // the top of the u64 space: last byte translates, wrap faults
  const top = new WindowAddressSpace([{ cpuStart: 0, busStart: 2n ** 64n - 4096n, size: 4096 }]);
  top.translate(2n ** 64n - 1n, 1, R, t);
  assertEquals(t.gpa, 4095);
  assertEquals(fault(() => s.translate(2n ** 64n - 1n, 2, R, t)).reason, "wrap");
  assertThrows(() => new WindowAddressSpace([{ cpuStart: 0, busStart: 2n ** 64n - 1n, size: 2 }]));
});

Deno.test("page table: known-answer walks for 4 KiB, 2 MiB and 1 GiB pages (VT-d SL format)", () => {
  const pt = new IoPageTable(4);
  const w = new IoPageWalk();
  pt.map(0x1234_5000, 0x9_8765_4000, IO_PAGE_4K, IOPTE_READ);
  // indices: L4 = iova>>39 = 0, L3 = (iova>>30)&511 = 0, L2 = (iova>>21)&511 = 0x91, L1 = 0x145
  const e = pt.rawEntry([0, 0, 0x91, 0x145])!;
  assertEquals(e, [(0x8765_4000 | IOPTE_READ) >>> 0, 0x9]);
  assertEquals(pt.walk(0x1234_5abc, w), true);
  assertEquals([w.pageGpa, w.pageSize, w.level, w.perm, w.entriesRead], [
    0x9_8765_4000,
    IO_PAGE_4K,
    1,
    IOPTE_READ,
    4,
  ]);
  assertEquals(pt.lookup(0x1234_5abc), 0x9_8765_4abc);
  assertEquals(pt.walk(0x1234_6000, w), false);

  pt.map(0x4000_0000 + 0x20_0000, 0x60_0000, IO_PAGE_2M, IOPTE_READ | IOPTE_WRITE);
  assertEquals(pt.rawEntry([0, 1, 1]), [0x60_0000 | IOPTE_PS | 3, 0]);
  assertEquals(pt.walk(0x4020_1234, w), true);
  assertEquals([w.pageGpa, w.pageSize, w.level, w.entriesRead], [0x60_0000, IO_PAGE_2M, 2, 3]);

  pt.map(0x80_0000_0000, 0x4000_0000, IO_PAGE_1G, IOPTE_WRITE);
  assertEquals(pt.rawEntry([1, 0]), [0x4000_0000 | IOPTE_PS | IOPTE_WRITE, 0]);
  assertEquals(pt.lookup(0x80_3fff_ffff), 0x7fff_ffff);
  assertEquals(pt.walk(0x80_0000_0000, w) && w.level, 3);
  assertEquals(pt.mappedBytes, IO_PAGE_4K + IO_PAGE_2M + IO_PAGE_1G);
});

Deno.test("page table: partial unmap splits a large page; overlap and misalignment are refused", () => {
  const pt = new IoPageTable(4);
  pt.map(0, 0x20_0000, IO_PAGE_2M, 3);
  assertEquals(pt.unmap(0x1000, 0x1000), 0x1000);
  assertEquals(pt.lookup(0x1000), -1);
  assertEquals(pt.lookup(0x2000), 0x20_2000);
  assertEquals(pt.lookup(0), 0x20_0000);
  assertEquals(pt.mappedBytes, IO_PAGE_2M - IO_PAGE_4K);
  assertEquals(assertThrows(() => pt.map(0, 0x1000, 0x1000, 3), DmaMapError).reason, "overlap");
  // all-or-nothing: a map that hits an existing page leaves nothing behind
  assertThrows(() => pt.map(0x1000, 0x5000, 0x2000, 3), DmaMapError);
  assertEquals(pt.lookup(0x1000), -1);
  assertEquals(assertThrows(() => pt.map(0x800, 0, 0x1000, 3), DmaMapError).reason, "misaligned");
  assertEquals(
    assertThrows(() => new IoPageTable(3).map(2 ** 39, 0, 0x1000, 3), DmaMapError).reason,
    "mask",
  );
  assertEquals(pt.unmap(0, IO_PAGE_2M), IO_PAGE_2M - IO_PAGE_4K);
  assertEquals(pt.tableCount, 1); // empty tables freed
});

Deno.test("iotlb: capacity reached -> whole IOTLB flushed on the next insert (QEMU VT-d)", () => {
  const t = new Iotlb(4);
  for (let i = 0; i < 4; i++) t.insert(1, i * 4096, 1, 0x10_0000 + i * 4096, 3);
  assertEquals(t.size, 4);
  assertEquals(t.lookup(1, 3 * 4096 + 5), true);
  assertEquals(t.hitGpa, 0x10_3000);
  t.insert(1, 2 * 4096, 1, 0x20_0000, 3); // replacing an existing key does not overflow
  assertEquals(t.stats.overflowFlushes, 0);
  t.insert(1, 9 * 4096, 1, 0x30_0000, 1);
  assertEquals(t.stats.overflowFlushes, 1);
  assertEquals(t.size, 1);
  assertEquals(t.lookup(1, 0), false);
  assertEquals(t.lookup(1, 9 * 4096), true);
  assertEquals([t.stats.hits, t.stats.misses], [2, 1]);
});

Deno.test("iotlb: invalidation by page, range, domain and all; large entries overlap ranges", () => {
  const t = new Iotlb(1024);
  for (let i = 0; i < 100; i++) t.insert(1, i * 4096, 1, i * 4096, 3);
  t.insert(2, 0, 1, 0, 3);
  t.insert(2, 0x20_0000, 2, 0x40_0000, 3);
  t.invalidatePage(1, 5 * 4096);
  assertEquals([t.holds(1, 5 * 4096), t.holds(1, 4 * 4096), t.holds(2, 0)], [false, true, true]);
  t.invalidatePage(1, 8 * 4096, 2); // 4 pages 8..11
  assertEquals([t.holds(1, 7 * 4096), t.holds(1, 8 * 4096), t.holds(1, 11 * 4096)], [
    true,
    false,
    false,
  ]);
  assertEquals(t.holds(1, 12 * 4096), true);
  t.invalidateRange(2, 0x3f_f000, 0x1000); // inside the 2 MiB entry
  assertEquals(t.holds(2, 0x20_0000), false);
  t.invalidateRange(1, 20 * 4096, 80 * 4096); // scan path (> 64 probes? no: 80 pages)
  assertEquals([t.holds(1, 19 * 4096), t.holds(1, 20 * 4096), t.holds(1, 99 * 4096)], [
    true,
    false,
    false,
  ]);
  t.invalidateDomain(1);
  assertEquals([t.holds(1, 0), t.holds(2, 0)], [false, true]);
  t.invalidateAll();
  assertEquals(t.size, 0);
  assertEquals(t.stats.globalInvalidations, 1);
});

Deno.test("iommu: translate through IOTLB, faults name reason, bus and length", () => {
  const mem = GuestMemory.flat(0x100_0000);
  const iommu = new Iommu(mem, { name: "vt-d", reservedRegions: [X86_MSI_REGION] });
  const dom = iommu.createDomain();
  const ep = iommu.endpoint(dom);
  iommu.map(dom, 0x10_0000, 0x5000, 0x2000, IOPTE_READ);
  iommu.map(dom, 0x10_2000, 0x7000, 0x1000, IOPTE_READ | IOPTE_WRITE);
  const t = new DmaTranslation();
  ep.translate(0x10_0010, 0x3000, R, t);
  assertEquals([t.gpa, t.length], [0x5010, 0x3000 - 0x10]); // three contiguous pages
  assertEquals(iommu.stats.walks, 4); // the 4th page is not present: the prefix stops there
  ep.translate(0x10_0010, 8, R, t);
  assertEquals(iommu.iotlb.stats.hits, 1);
  const p = fault(() => ep.translate(0x10_0000, 4, W, t));
  assertEquals([p.reason, p.bus, p.length, p.layer], ["permission", 0x10_0000, 4, "vt-d"]);
  assertEquals(fault(() => ep.translate(0x10_3000, 1, R, t)).reason, "unmapped");
  assertEquals(fault(() => ep.translate(0xfee0_0000, 4, W, t)).reason, "reserved-region");
  assertEquals(fault(() => ep.translate(2 ** 48, 1, R, t)).reason, "out-of-window");
  assertEquals(fault(() => ep.translate(2n ** 63n, 1, R, t)).reason, "out-of-window");
  assertEquals(
    assertThrows(() => iommu.map(dom, 0xfee0_0000, 0, 0x1000, 3), DmaMapError).reason,
    "reserved-region",
  );
  // Unmap without invalidation: the IOTLB still holds the stale translation.
  iommu.unmap(dom, 0x10_0000, 0x1000);
  ep.translate(0x10_0000, 1, R, t);
  assertEquals(t.gpa, 0x5000);
  iommu.iotlb.invalidatePage(dom.id, 0x10_0000);
  assertEquals(fault(() => ep.translate(0x10_0000, 1, R, t)).reason, "unmapped");
  // unattached endpoint
  const lone = iommu.endpoint(null);
  assertEquals(fault(() => lone.translate(0, 1, R, t)).reason, "no-domain");
});

Deno.test("iommu identity domain: bus = GPA but only RAM outside reserved regions", () => {
  const mem = new GuestMemory([{ gpa: 0, size: 0x10_0000 }, { gpa: 0x100_0000, size: 0x1000 }]);
  const iommu = new Iommu(mem, {
    reservedRegions: [{ start: 0x8000, end: 0x8fff, kind: "reserved" }],
  });
  const ep = iommu.endpoint(iommu.createDomain("identity"));
  const t = new DmaTranslation();
  ep.translate(0x1000, 0x10000, R, t);
  assertEquals([t.gpa, t.length], [0x1000, 0x7000]); // stops at the reserved region
  assertEquals(fault(() => ep.translate(0x8800, 1, R, t)).reason, "reserved-region");
  ep.translate(0xf_f000, 0x2000, W, t);
  assertEquals(t.length, 0x1000); // stops at the end of RAM
  assertEquals(fault(() => ep.translate(0x20_0000, 1, R, t)).reason, "unmapped");
});

Deno.test("confidential filter over IOMMU and identity: private pages fault", () => {
  const mem = new GuestMemory([
    { gpa: 0, size: 0x10000, private: true },
    { gpa: 0x10000, size: 0x10000 },
  ]);
  const t = new DmaTranslation();
  const cc = new ConfidentialAddressSpace(new IdentityAddressSpace(), mem);
  assertEquals(fault(() => cc.translate(0x100, 4, R, t)).reason, "private-memory");
  cc.translate(0x10000, 4, R, t);
  assertEquals(t.gpa, 0x10000);
  const iommu = new Iommu(mem);
  const d = iommu.createDomain();
  iommu.map(d, 0x1000, 0x0, 0x1000, 3);
  iommu.map(d, 0x2000, 0x10000, 0x1000, 3);
  const cci = new ConfidentialAddressSpace(iommu.endpoint(d), mem);
  assertEquals(fault(() => cci.translate(0x1000, 1, R, t)).reason, "private-memory");
  cci.translate(0x2000, 8, W, t);
  assertEquals(t.gpa, 0x10000);
  mem.regions[0].private = false; // page-state change to shared
  cci.translate(0x1000, 1, R, t);
  assertEquals(t.gpa, 0);
});

Deno.test("stacked: window in front of an IOMMU", () => {
  const mem = GuestMemory.flat(0x10_0000);
  const iommu = new Iommu(mem);
  const d = iommu.createDomain();
  iommu.map(d, 0x3000, 0x8000, 0x1000, 3);
  const s = new StackedAddressSpace(
    new WindowAddressSpace([{ cpuStart: 0, busStart: 2n ** 63n, size: 2 ** 40 }]),
    iommu.endpoint(d),
  );
  const t = new DmaTranslation();
  s.translate(2n ** 63n + 0x3010n, 0x2000, R, t);
  assertEquals([t.gpa, t.length], [0x8010, 0xff0]);
  assertEquals(fault(() => s.translate(2n ** 63n + 0x4000n, 1, R, t)).reason, "unmapped");
});

Deno.test("page table: property - lookups match a naive page map under random map/unmap", () => {
  const P = 4096, M2 = 0x20_0000;
  const op = fc.oneof(
    fc.record({
      map: fc.nat(15), // 2 MiB-granular IOVA slot
      gpaSlot: fc.nat(15),
      pages: fc.constantFrom(1, 3, 512, 1024),
      offPages: fc.nat(511),
      perm: fc.constantFrom(1, 2, 3),
    }),
    fc.record({
      unmap: fc.nat(15),
      offPages: fc.nat(1023),
      pages: fc.integer({ min: 1, max: 600 }),
    }),
  );
  fc.assert(
    fc.property(fc.array(op, { maxLength: 40 }), (ops) => {
      const pt = new IoPageTable(4);
      const model = new Map<number, [number, number]>(); // IOVA page -> [GPA page, perm]
      for (const o of ops) {
        if ("map" in o) {
          const off = o.pages >= 512 ? 0 : o.offPages; // large maps stay 2 MiB-aligned
          const iova = o.map * 2 * M2 + off * P, gpa = o.gpaSlot * 2 * M2 + off * P;
          const size = o.pages * P;
          let clash = false;
          for (let k = 0; k < o.pages; k++) if (model.has(iova / P + k)) clash = true;
          if (clash) {
            assertEquals(
              assertThrows(() => pt.map(iova, gpa, size, o.perm), DmaMapError).reason,
              "overlap",
            );
          } else {
            pt.map(iova, gpa, size, o.perm);
            for (let k = 0; k < o.pages; k++) model.set(iova / P + k, [gpa / P + k, o.perm]);
          }
        } else {
          const iova = o.unmap * 2 * M2 + o.offPages * P;
          let expect = 0;
          for (let k = 0; k < o.pages; k++) if (model.delete(iova / P + k)) expect += P;
          assertEquals(pt.unmap(iova, o.pages * P), expect);
        }
      }
      const w = new IoPageWalk();
      for (let slot = 0; slot < 16; slot++) {
        for (let k = 0; k < 1024; k += 7) {
          const page = slot * 2 * (M2 / P) + k;
          const m = model.get(page);
          const ok = pt.walk(page * P + 5, w);
          assertEquals(ok, m !== undefined, `page ${page}`);
          if (m) assertEquals([w.pageGpa + ((page * P) % w.pageSize), w.perm], [m[0] * P, m[1]]);
        }
      }
      assertEquals(pt.mappedBytes, model.size * P);
    }),
    { seed: 7, numRuns: 200 },
  );
});

Deno.test("iotlb: property - matches a naive model (overflow flush, deletions keep probing intact)", () => {
  const SPANS = [0, 0x1000, 0x20_0000, 0x4000_0000];
  const op = fc.oneof(
    {
      weight: 5,
      arbitrary: fc.record({
        ins: fc.nat(200),
        dom: fc.nat(2),
        level: fc.constantFrom(1, 1, 1, 2, 3),
      }),
    },
    {
      weight: 2,
      arbitrary: fc.record({
        inv: fc.nat(200),
        dom: fc.nat(2),
        pages: fc.integer({ min: 1, max: 100 }),
      }),
    },
    { weight: 1, arbitrary: fc.record({ invDom: fc.nat(2) }) },
  );
  fc.assert(
    fc.property(fc.integer({ min: 4, max: 40 }), fc.array(op, { maxLength: 150 }), (cap, ops) => {
      const t = new Iotlb(cap);
      const model = new Map<string, { dom: number; start: number; level: number }>();
      for (const o of ops) {
        if ("ins" in o) {
          const span = SPANS[o.level];
          const start = Math.floor((o.ins * 0x1000 * 37) / span) * span;
          const key = `${o.dom}:${o.level}:${start}`;
          if (!model.has(key) && model.size >= cap) model.clear();
          model.set(key, { dom: o.dom, start, level: o.level });
          t.insert(o.dom, start + 5, o.level, start * 2, 3);
        } else if ("inv" in o) {
          const s = o.inv * 0x1000 * 37, e = s + o.pages * 0x1000;
          for (const [k, v] of model) {
            if (v.dom === o.dom && v.start < e && v.start + SPANS[v.level] > s) model.delete(k);
          }
          t.invalidateRange(o.dom, s, o.pages * 0x1000);
        } else {
          for (const [k, v] of model) if (v.dom === o.invDom) model.delete(k);
          t.invalidateDomain(o.invDom);
        }
        assertEquals(t.size, model.size);
      }
      for (const v of model.values()) {
        assertEquals(t.lookup(v.dom, v.start + 7), true);
      }
    }),
    { seed: 9, numRuns: 300 },
  );
});

Deno.test("iommu: translate through 1 GiB leaves and at the top of the 48-bit IOVA space", () => {
  const iommu = new Iommu(GuestMemory.flat(0x1000));
  const d = iommu.createDomain();
  const ep = iommu.endpoint(d);
  const t = new DmaTranslation();
  iommu.map(d, 0x80_0000_0000, 0x4000_0000, IO_PAGE_1G, IOPTE_READ);
  for (let pass = 0; pass < 2; pass++) { // miss (walk), then IOTLB hit
    ep.translate(0x80_3fff_fff0, 64, R, t);
    assertEquals([t.gpa, t.length], [0x7fff_fff0, 16]);
  }
  const top = 2 ** 48 - 0x2000;
  iommu.map(d, top, 0x5000, 0x2000, IOPTE_READ | IOPTE_WRITE);
  for (let pass = 0; pass < 2; pass++) {
    ep.translate(top + 0x1ffc, 8, W, t);
    assertEquals([t.gpa, t.length], [0x6ffc, 4]); // stops at the end of the IOVA space
  }
  assertEquals(iommu.iotlb.stats.hits >= 2, true);
  assertEquals(fault(() => ep.translate(2 ** 48, 1, R, t)).reason, "out-of-window");
});

Deno.test("iotlb: domain IDs are 16-bit; a wider one is refused instead of aliasing domain 0", () => {
  const t = new Iotlb(16);
  assertThrows(() => t.insert(0x1_0000, 0x5000, 1, 0xdead000, 3), RangeError);
  assertThrows(() => t.insert(-1, 0x5000, 1, 0xdead000, 3), RangeError);
  assertEquals(t.lookup(0, 0x5000), false);
  t.insert(0xffff, 0x5000, 1, 0xbeef000, 3);
  assertEquals([t.lookup(0xffff, 0x5000), t.hitGpa, t.lookup(0, 0x5000)], [true, 0xbeef000, false]);
});

Deno.test("window: a bigint busStart below 2^53 is canonicalised and matches numeric addresses", () => {
  const s = new WindowAddressSpace([{ cpuStart: 0, busStart: 0x8000_0000n, size: 0x1000 }]);
  const t = new DmaTranslation();
  s.translate(0x8000_0010, 4, DMA_ACCESS_READ, t);
  assertEquals([t.gpa, t.length], [0x10, 4]);
  assertEquals(s.table.windows[0].busStart, 0x8000_0000);
});

Deno.test("io page table: a bad permission is a caller error, a GPA beyond 2^52 is `mask`", () => {
  const pt = new IoPageTable(4);
  assertThrows(() => pt.map(0x1000, 0x2000, 0x1000, 0), RangeError);
  assertThrows(() => pt.map(0x1000, 0x2000, 0x1000, 4), RangeError);
  assertEquals(assertThrows(() => pt.map(0x1000, 2 ** 52, 0x1000, 1), DmaMapError).reason, "mask");
  assertEquals(
    assertThrows(() => pt.map(0x1000, 0x2001, 0x1000, 1), DmaMapError).reason,
    "misaligned",
  );
});

Deno.test("iotlb front cache: a cached translation never survives page/range/domain/all invalidation or an overflow flush", () => {
  const setup = (capacity = 1024) => {
    const iommu = new Iommu(GuestMemory.flat(0x100_0000), { iotlbCapacity: capacity });
    const d = iommu.createDomain();
    const ep = iommu.endpoint(d);
    // IOVAs just below 4 GiB (dma-iommu's SAC range): the endpoint's integer-shift fast path
    iommu.map(d, 0xfff0_0000, 0x4000, 0x2000, IOPTE_READ | IOPTE_WRITE);
    const t = new DmaTranslation();
    ep.translate(0xfff0_1010, 16, R, t); // miss: walk + insert (fills the front cache)
    ep.translate(0xfff0_1010, 16, R, t); // front-cache hit
    assertEquals([t.gpa, t.length], [0x5010, 16]);
    assertEquals([iommu.iotlb.stats.hits, iommu.iotlb.stats.misses, iommu.stats.walks], [1, 1, 1]);
    // remap the page elsewhere without invalidating: the IOTLB (and its front) still answer
    iommu.unmap(d, 0xfff0_1000, 0x1000);
    iommu.map(d, 0xfff0_1000, 0x9000, 0x1000, IOPTE_READ);
    ep.translate(0xfff0_1010, 16, R, t);
    assertEquals(t.gpa, 0x5010); // stale, as real hardware before the invalidation
    return { iommu, d, ep, t };
  };
  const invalidations: [string, (iommu: Iommu, dom: number) => void][] = [
    ["page", (iommu, dom) => iommu.iotlb.invalidatePage(dom, 0xfff0_1000)],
    ["range", (iommu, dom) => iommu.iotlb.invalidateRange(dom, 0xfff0_0800, 0x1000)],
    ["wide range", (iommu, dom) => iommu.iotlb.invalidateRange(dom, 0, 2 ** 40)],
    ["domain", (iommu, dom) => iommu.iotlb.invalidateDomain(dom)],
    ["all", (iommu) => iommu.iotlb.invalidateAll()],
    ["overflow", (iommu, dom) => {
      for (let i = 0; i <= 1024; i++) iommu.iotlb.insert(dom, 2 ** 32 + i * 4096, 1, 0, 1);
    }],
  ];
  for (const [name, invalidate] of invalidations) {
    const { iommu, d, ep, t } = setup();
    invalidate(iommu, d.id);
    const walks = iommu.stats.walks;
    ep.translate(0xfff0_1010, 16, R, t);
    assertEquals([name, t.gpa, iommu.stats.walks], [name, 0x9010, walks + 1]); // re-walked
    assertEquals(fault(() => ep.translate(0xfff0_1010, 16, W, t)).reason, "permission");
  }
  // re-inserting a cached key (a walk after a remap) replaces the front copy too
  {
    const tlb = new Iotlb(8);
    tlb.insert(1, 0x5000, 1, 0x1000, 3);
    assertEquals([tlb.lookupPage(1, 5), tlb.hitGpa], [true, 0x1000]);
    tlb.insert(1, 0x5000, 1, 0x2000, 1);
    assertEquals([tlb.lookupPage(1, 5), tlb.hitGpa, tlb.hitPerm], [true, 0x2000, 1]);
  }
  // unmapped and invalidated: the next access faults
  const { iommu, d, ep, t } = setup();
  iommu.unmap(d, 0xfff0_0000, 0x2000);
  iommu.iotlb.invalidateRange(d.id, 0xfff0_0000, 0x2000);
  assertEquals(fault(() => ep.translate(0xfff0_1010, 16, R, t)).reason, "unmapped");
  assertEquals(fault(() => ep.translate(0xfff0_0000, 1, R, t)).reason, "unmapped");
});

Deno.test("iotlb front cache: same page in two domains, slot conflicts and pages above 2^32 stay exact", () => {
  const iommu = new Iommu(GuestMemory.flat(0x100_0000));
  const a = iommu.createDomain(), b = iommu.createDomain();
  const ea = iommu.endpoint(a), eb = iommu.endpoint(b);
  const t = new DmaTranslation();
  iommu.map(a, 0x1000, 0x1_0000, 0x1000, IOPTE_READ);
  iommu.map(b, 0x1000, 0x2_0000, 0x1000, IOPTE_READ);
  // 0x1000 and 0x1000 + 256 pages share a front slot; 2^44 + 0x1000 too (page number >= 2^32)
  iommu.map(a, 0x1000 + 256 * 4096, 0x3_0000, 0x1000, IOPTE_READ);
  iommu.map(a, 2 ** 44 + 0x1000, 0x4_0000, 0x1000, IOPTE_READ);
  for (let pass = 0; pass < 3; pass++) {
    ea.translate(0x1008, 8, R, t);
    assertEquals(t.gpa, 0x1_0008);
    eb.translate(0x1008, 8, R, t);
    assertEquals(t.gpa, 0x2_0008);
    ea.translate(0x1008 + 256 * 4096, 8, R, t);
    assertEquals(t.gpa, 0x3_0008);
    ea.translate(2 ** 44 + 0x1008, 8, R, t);
    assertEquals(t.gpa, 0x4_0008);
  }
  assertEquals([iommu.iotlb.stats.hits, iommu.iotlb.stats.misses], [8, 4]);
  iommu.iotlb.invalidateDomain(b.id);
  ea.translate(0x1008, 8, R, t); // domain a's copy is untouched
  assertEquals([t.gpa, iommu.iotlb.stats.hits], [0x1_0008, 9]);
  // an access crossing out of the page takes the full path and still extends
  iommu.map(a, 0x2000, 0x1_1000, 0x1000, IOPTE_READ);
  ea.translate(0x1ff0, 32, R, t);
  assertEquals([t.gpa, t.length], [0x1_0ff0, 32]);
});

Deno.test("iotlb front cache: property - lookupPage always agrees with a naive model (refills, overwrites, slot conflicts, every invalidation kind, overflow)", () => {
  // few hot pages (0-3 and their front-slot twins 256-259, 512-515) so keys repeat, plus any page
  const pfn = fc.oneof(
    fc.nat(3),
    fc.nat(3),
    fc.nat(3).map((x) => x + 256),
    fc.nat(3).map((x) => x + 512),
    fc.nat(600),
  );
  const op = fc.oneof(
    { weight: 5, arbitrary: fc.record({ ins: pfn, dom: fc.nat(2), gpa: fc.nat(50) }) },
    { weight: 5, arbitrary: fc.record({ look: pfn, dom: fc.nat(2) }) },
    {
      weight: 2,
      arbitrary: fc.record({
        inv: fc.nat(600),
        dom: fc.nat(2),
        pages: fc.integer({ min: 1, max: 80 }),
      }),
    },
    { weight: 1, arbitrary: fc.record({ page: pfn, dom: fc.nat(2), am: fc.nat(3) }) },
    { weight: 1, arbitrary: fc.record({ invDom: fc.nat(2) }) },
    { weight: 1, arbitrary: fc.constant({ all: true }) },
  );
  fc.assert(
    fc.property(fc.integer({ min: 4, max: 64 }), fc.array(op, { maxLength: 200 }), (cap, ops) => {
      const t = new Iotlb(cap);
      const model = new Map<string, number>(); // "dom:pfn" -> GPA
      const drop = (dom: number, lo: number, hi: number) => {
        for (let p = lo; p < hi; p++) model.delete(`${dom}:${p}`);
      };
      for (const o of ops) {
        if ("ins" in o) {
          const key = `${o.dom}:${o.ins}`;
          if (!model.has(key) && model.size >= cap) model.clear();
          model.set(key, o.gpa * 4096);
          t.insert(o.dom, o.ins * 4096, 1, o.gpa * 4096, 3);
        } else if ("look" in o) {
          const hit = t.lookupPage(o.dom, o.look);
          const want = model.get(`${o.dom}:${o.look}`);
          assertEquals(hit ? t.hitGpa : undefined, want);
        } else if ("inv" in o) {
          drop(o.dom, o.inv, o.inv + o.pages);
          t.invalidateRange(o.dom, o.inv * 4096, o.pages * 4096);
        } else if ("page" in o) {
          const n = 2 ** o.am, lo = Math.floor(o.page / n) * n;
          drop(o.dom, lo, lo + n);
          t.invalidatePage(o.dom, o.page * 4096 + 5, o.am);
        } else if ("invDom" in o) {
          for (const k of [...model.keys()]) if (k.startsWith(`${o.invDom}:`)) model.delete(k);
          t.invalidateDomain(o.invDom);
        } else {
          model.clear();
          t.invalidateAll();
        }
      }
      for (let dom = 0; dom <= 2; dom++) {
        for (let p = 0; p <= 600; p++) {
          const want = model.get(`${dom}:${p}`);
          assertEquals(t.lookupPage(dom, p) ? t.hitGpa : undefined, want); // fills the front
          assertEquals(t.lookupPage(dom, p) ? t.hitGpa : undefined, want); // then hits it
        }
      }
    }),
    { seed: 17, numRuns: 300 },
  );
});
