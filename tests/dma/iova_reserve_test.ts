import { assert, assertEquals } from "@std/assert";
import fc from "fast-check";
import { IovaAllocator } from "../../src/dma/mod.ts";

// Linux reserve_iova (drivers/iommu/iova.c) never leaves overlapping ranges: the gap search takes
// each gap's bottom from the range just below it, so an overlap would let an allocation land inside
// a reservation. Found by the dma-invariants fuzz target (overlapping reservations).
Deno.test("IOVA allocator: overlapping reservations are merged; no allocation lands inside one", () => {
  const a = new IovaAllocator();
  a.reserve(0x82, 0x82);
  a.reserve(0x81, 0xc0);
  for (let k = 0; k < 8; k++) {
    const pfn = a.alloc(33, 0x200);
    if (pfn < 0) break;
    assert(pfn + 33 - 1 < 0x81 || pfn > 0xc0, `allocation ${pfn.toString(16)} overlaps 0x81..0xc0`);
  }
});

Deno.test("IOVA allocator property: allocations never overlap reservations or each other", () => {
  fc.assert(fc.property(
    fc.array(fc.tuple(fc.integer({ min: 1, max: 0x3ff }), fc.integer({ min: 0, max: 0x80 })), {
      maxLength: 6,
    }),
    fc.array(fc.integer({ min: 1, max: 40 }), { maxLength: 30 }),
    (reservations, sizes) => {
      const a = new IovaAllocator();
      const taken = new Set<number>();
      for (const [lo, n] of reservations) {
        a.reserve(lo, lo + n);
        for (let p = lo; p <= lo + n; p++) taken.add(p);
      }
      for (const pages of sizes) {
        const pfn = a.alloc(pages, 0x400);
        if (pfn < 0) continue;
        for (let p = pfn; p < pfn + pages; p++) {
          assert(!taken.has(p), `pfn ${p} allocated twice or inside a reservation`);
          taken.add(p);
        }
        assertEquals(pfn % 2 ** Math.ceil(Math.log2(pages)), 0, "size-aligned");
      }
    },
  ));
});
