/**
 * IovaAllocator's lookups (`findStart`, `findContaining`) against a plain model of the ranges,
 * after random allocations, frees (through the range caches too) and reservations: the direct
 * hint checks in front of the search must give the search's answer. A planted bug in a private
 * copy of the lookups must make the same property fail.
 */
import { assert, assertEquals } from "@std/assert";
import fc from "fast-check";
import { withPlantedDma } from "./_plant.ts";

// deno-lint-ignore no-explicit-any
type Mod = any;

type Op =
  | { k: "alloc"; pages: number; limit: number; fast: boolean }
  | { k: "free"; which: number; fast: boolean }
  | { k: "reserve"; lo: number; n: number }
  | { k: "refresh" };

const LIMIT = 600;

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      k: fc.constant("alloc" as const),
      pages: fc.constantFrom(1, 1, 1, 2, 3, 4, 8),
      limit: fc.integer({ min: 16, max: LIMIT }),
      fast: fc.boolean(),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({ k: fc.constant("free" as const), which: fc.nat(), fast: fc.boolean() }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      k: fc.constant("reserve" as const),
      lo: fc.integer({ min: 0, max: LIMIT }),
      n: fc.integer({ min: 0, max: 6 }),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ k: "refresh" as const }) },
);

/** Runs `ops`, then checks both lookups for every PFN up to the limit (and a few odd ones). */
function check(dma: Mod, ops: Op[]): void {
  const a = new dma.IovaAllocator();
  // the model: live ranges by first PFN (cached ones stay live in the tree), reserved PFNs
  const live = new Map<number, number>();
  const probe = () => {
    for (let p = -1; p <= LIMIT + 1; p++) {
      let start: number | undefined, holder: number | undefined;
      for (const [lo, n] of live) {
        if (lo === p) start = lo;
        if (p >= lo && p < lo + n) holder = lo;
      }
      const s = a.findStart(p), c = a.findContaining(p);
      assertEquals(
        s >= 0 ? [a.rangeLo(s), a.rangePages(s)] : null,
        start === undefined ? null : [start, live.get(start)],
        `findStart(${p})`,
      );
      assertEquals(
        c >= 0 ? [a.rangeLo(c), a.rangePages(c)] : null,
        holder === undefined ? null : [holder, live.get(holder)],
        `findContaining(${p})`,
      );
    }
    for (const p of [0.5, 17.25, NaN, 2 ** 40]) {
      assertEquals(a.findStart(p), -1, `findStart(${p})`);
      if (!(p >= 0 && p < LIMIT)) assertEquals(a.findContaining(p), -1, `findContaining(${p})`);
    }
  };
  for (const op of ops) {
    // an allocation that fails empties the range caches into the tree (Linux flush_rcache)
    const cached = [...live.keys()].filter((lo) => a.isCached(lo));
    const flushes = a.rcacheStats.flushes;
    if (op.k === "alloc") {
      const pfn = op.fast ? a.allocFast(op.pages, op.limit) : a.alloc(op.pages, op.limit);
      if (pfn >= 0) {
        const have = live.has(pfn); // a range-cache hit hands back a live (cached) range
        if (!have) live.set(pfn, op.pages);
      }
    } else if (op.k === "free") {
      const los = [...live.keys()].filter((lo) => !a.isCached(lo));
      if (los.length === 0) continue;
      const lo = los[op.which % los.length];
      if (op.fast) {
        assert(a.freeFast(lo));
        if (!a.isCached(lo)) live.delete(lo);
      } else {
        assert(a.free(lo));
        live.delete(lo);
      }
    } else if (op.k === "reserve") a.reserve(op.lo, op.lo + op.n);
    else a.refreshHints();
    if (a.rcacheStats.flushes !== flushes) {
      for (const lo of cached) if (!a.isCached(lo)) live.delete(lo);
    }
    // a few lookups between steps, so the hints go stale as the ranges move
    for (const lo of [...live.keys()].slice(0, 4)) {
      a.findStart(lo);
      a.findContaining(lo + 1);
    }
  }
  probe();
  probe(); // again: with the hints the first probe left
}

const root = new URL("../../", import.meta.url);
const dmaMod = await import(new URL("src/dma/mod.ts", root).href);

Deno.test("iova allocator lookups: the hint checks give the search's answer (random ops)", () => {
  fc.assert(
    fc.property(fc.array(opArb, { maxLength: 80 }), (ops) => check(dmaMod, ops)),
    { numRuns: 150 },
  );
});

/**
 * [3, 5] is live and found through the hint; then a reserved range with a fractional first PFN
 * (5.5, inside (5, 6)) goes in after it. The search's answer for PFN 5 is now that reserved
 * range (not live: -1, as before the hint checks existed), and the hint's direct check (the hint
 * still points at [3, 5]) must not answer instead.
 */
function fractional(dma: Mod): void {
  const a = new dma.IovaAllocator({ sizeAligned: false });
  assertEquals(a.alloc(3, 6), 3); // [3, 5]
  assertEquals(a.rangeLo(a.findContaining(5)), 3);
  a.reserve(5.5, 5.75);
  assertEquals(a.findContaining(5), -1);
  assertEquals(a.findStart(3), 0);
}

Deno.test("iova allocator lookups: a fractional reserved bound turns the hint checks off", () => {
  fractional(dmaMod);
});

// Planted bugs: each mutation of the lookups, written into a private copy of src/, must make the
// property fail.
const PLANTS: { from: string; to: string }[] = [
  // findContaining's direct check forgets the range's last PFN
  {
    from: "r[o + F_LO] <= pfn && r[o + F_HI] >= pfn && r[o + F_KIND] === LIVE",
    to: "r[o + F_LO] <= pfn && r[o + F_KIND] === LIVE",
  },
  // findStart's direct check answers a reserved range
  {
    from: "if (r[o + F_LO] === pfn && r[o + F_KIND] === LIVE) return h;",
    to: "if (r[o + F_LO] === pfn) return h;",
  },
  // findContaining's direct check ignores fractional bounds
  {
    from:
      "if (this.#integral && h >= 0 && h < this.#n) {\n      const o = h * STRIDE, r = this.#r;\n" +
      "      if (r[o + F_LO] <= pfn",
    to: "if (h >= 0 && h < this.#n) {\n      const o = h * STRIDE, r = this.#r;\n" +
      "      if (r[o + F_LO] <= pfn",
  },
  // the hint keeps no key, and the search trusts it without the neighbour check
  {
    from: "(h + 1 >= n || r[(h + 1) * STRIDE + F_LO] >= x)",
    to: "(h + 1 >= n || true)",
  },
];

for (const p of PLANTS) {
  Deno.test(`iova allocator lookups: planted bug is caught (${p.to.slice(0, 50)})`, async () => {
    await withPlantedDma("src/dma/iova_allocator.ts", p.from, p.to, (dma) => {
      let failed = false;
      try {
        fractional(dma);
        fc.assert(
          fc.property(fc.array(opArb, { maxLength: 80 }), (ops) => check(dma, ops)),
          { numRuns: 150, seed: 16, endOnFailure: true },
        );
      } catch {
        failed = true;
      }
      assert(failed, "the property did not notice the planted bug");
    });
  });
}

/**
 * dma-iommu lazy mode: the first ~290 IOVAs come from the tree, each insert below the earlier
 * ranges moving their records (their lookup hints go stale). The batch flush hands them to the
 * range caches and refreshes the hints, so the maps that take them back find each range without
 * a search. Returns the searches made by maps before the second flush and after it.
 */
function lazyWarmup(dma: Mod): { warmup: number; steady: number } {
  const lab = dma.createDmaLab("iommu-lazy", { clock: new dma.FakeClock() });
  const api = lab.mode.api;
  const a = api.allocator;
  const bus: number[] = [];
  let mapSearches = 0;
  const round = () => {
    const s0 = a.lookupSearches;
    for (let i = 0; i < 32; i++) bus[i] = api.mapNumber(lab.bufferGpa + i * 4096 + 64, 64, 2);
    mapSearches += a.lookupSearches - s0;
    for (let i = 0; i < 32; i++) api.unmap(bus[i], 64, 2);
  };
  while (api.flushQueue.stats.fullFlushes < 2) round();
  const warmup = a.lookupSearches;
  mapSearches = 0;
  for (let r = 0; r < 40; r++) round(); // ~5 more batch flushes, the IOVAs from the range caches
  assert(a.rcacheStats.hits > 1000 && api.flushQueue.stats.fullFlushes > 5);
  return { warmup, steady: mapSearches };
}

Deno.test("iova allocator lookups: lazy dma-iommu maps find their cached IOVAs without a search", () => {
  const { warmup, steady } = lazyWarmup(dmaMod);
  assert(warmup > 0, "the warm-up searched (the unmaps of fresh ranges)");
  assertEquals(steady, 0);
});

Deno.test("iova allocator lookups: planted bug is caught (refreshHints does nothing)", async () => {
  await withPlantedDma(
    "src/dma/iova_allocator.ts",
    "if (this.#hintsAt === this.#version) return;",
    "return;",
    (dma) => {
      assert(lazyWarmup(dma).steady > 0, "the maps did not search without the refresh");
    },
  );
});
