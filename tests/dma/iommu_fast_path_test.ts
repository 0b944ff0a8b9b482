/**
 * Differential test of IommuDmaApi's fused one-page path (`fastPath: true`, the default) against
 * the general path (`fastPath: false`): random map / unmap / translate / invalidate / lazy-flush
 * sequences run on two identical setups, and every observable is compared after every step:
 * returned bus addresses, thrown errors (class, reason, message), device translations and faults,
 * every counter (API, IOMMU, IOTLB, range cache), the page table's and IOTLB's contents for every
 * IOVA ever handed out, allocator and flush-queue state. A planted bug in a private copy of the
 * fast path must make the same check fail.
 */
import { assert, assertEquals } from "@std/assert";
import fc from "fast-check";
import { withPlantedDma } from "./_plant.ts";

// deno-lint-ignore no-explicit-any
type Mod = any;

interface Cfg {
  policy: "strict" | "lazy";
  /** DMA mask (small ones force exhaustion, rcache flushes and flush-queue retries). */
  mask: bigint | undefined;
  sacFirst: boolean;
  iotlbCapacity: number;
  fqSize: number;
}

type Op =
  | { k: "map"; page: number; off: number; len: number; dir: 0 | 1 | 2 }
  | { k: "mapc"; page: number; pages: number }
  | { k: "unmap"; which: number; delta: number; lenDelta: number; usePage: boolean }
  | { k: "unmapc"; which: number }
  | { k: "tr"; which: number; off: number; len: number; access: 1 | 2 | 3 }
  | { k: "trRaw"; page: number }
  | { k: "inv"; which: number; all: boolean }
  | { k: "tick"; ms: number }
  | { k: "wait"; ms: number }
  | { k: "sync"; which: number };

const MEM = 0x80_0000; // 8 MiB of guest RAM

function setup(dma: Mod, mem: Mod, cfg: Cfg, fast: boolean) {
  const memory = mem.GuestMemory.flat(MEM);
  const iommu = new dma.Iommu(memory, {
    reservedRegions: [dma.X86_MSI_REGION],
    iotlbCapacity: cfg.iotlbCapacity,
    fastPath: fast,
  });
  const domain = iommu.createDomain();
  const clock = new dma.FakeClock();
  const api = new dma.IommuDmaApi({
    iommu,
    domain,
    policy: cfg.policy,
    clock,
    mask: cfg.mask,
    sacFirst: cfg.sacFirst,
    fqSize: cfg.fqSize,
    fastPath: fast,
  });
  return {
    iommu,
    domain,
    api,
    clock,
    ep: iommu.endpoint(domain),
    out: new dma.DmaTranslation(),
    live: [] as { bus: number; len: number; dir: number; coherent: boolean }[],
    seen: [] as number[],
  };
}
type Lab = ReturnType<typeof setup>;

function err(e: unknown): string {
  const x = e as { name?: string; reason?: string; message?: string };
  return `${x?.constructor?.name}:${x?.reason}:${x?.message}`;
}

function attempt(f: () => unknown): unknown {
  try {
    const r = f();
    return r === undefined ? "ok" : r;
  } catch (e) {
    return err(e);
  }
}

function step(L: Lab, op: Op): unknown {
  const { api, ep, out } = L;
  const pick = (w: number) => L.live.length ? L.live[w % L.live.length] : undefined;
  switch (op.k) {
    case "map": {
      const gpa = op.page * 4096 + op.off;
      const r = attempt(() => api.mapNumber(gpa, op.len, op.dir));
      if (typeof r === "number") {
        L.live.push({ bus: r, len: op.len, dir: op.dir, coherent: false });
        L.seen.push(r);
      }
      return r;
    }
    case "mapc": {
      const r = attempt(() => api.mapCoherent(op.page * 4096, op.pages * 4096));
      if (typeof r === "number") {
        L.live.push({ bus: r, len: op.pages * 4096, dir: 0, coherent: true });
        L.seen.push(r);
      }
      return r;
    }
    case "unmap": {
      const m = pick(op.which);
      if (m === undefined) return "none";
      const bus = m.bus + op.delta, len = Math.max(0, m.len + op.lenDelta);
      const r = attempt(() => {
        if (op.usePage) {
          const p = Math.floor(bus / 4096);
          api.unmapPage(p, bus - p * 4096, len, m.dir);
        } else api.unmap(bus, len, m.dir);
      });
      if (r === "ok") L.live.splice(L.live.indexOf(m), 1);
      return r;
    }
    case "unmapc": {
      const m = pick(op.which);
      if (m === undefined) return "none";
      const r = attempt(() => api.unmapCoherent(m.bus, m.len));
      if (r === "ok") L.live.splice(L.live.indexOf(m), 1);
      return r;
    }
    case "tr": {
      // live or recently unmapped (stale IOTLB in lazy mode) addresses
      const all = L.seen;
      if (all.length === 0) return "none";
      const bus = all[op.which % all.length] + op.off;
      return attempt(() => {
        ep.translate(bus, op.len, op.access, out);
        return `${out.gpa}+${out.length}`;
      });
    }
    case "trRaw":
      return attempt(() => {
        ep.translate(op.page * 4096, 8, 1, out);
        return `${out.gpa}+${out.length}`;
      });
    case "inv": {
      const tlb = L.iommu.iotlb;
      if (op.all) tlb.invalidateDomain(L.domain.id);
      else if (L.seen.length) {
        tlb.invalidatePages(L.domain.id, Math.floor(L.seen[op.which % L.seen.length] / 4096), 1);
      }
      return "ok";
    }
    case "tick":
      L.clock.advance(op.ms);
      api.tick();
      return "ok";
    case "wait":
      // time passes with no timer check: the next map's or unmap's check flushes a due queue
      L.clock.advance(op.ms);
      return "ok";
    case "sync": {
      const m = pick(op.which);
      if (m === undefined) return "none";
      return attempt(() => api.syncForDevice(m.bus, m.len, m.dir));
    }
  }
}

/** Every observable of a lab, as one comparable value. */
function snapshot(L: Lab, full: boolean) {
  const { api, iommu, domain } = L;
  const t = domain.table;
  const a = api.allocator;
  // the page-table / IOTLB / allocator dump of every IOVA handed out (distinct ones)
  const dump = !full ? [] : [...new Set(L.seen)].map((b) => [
    b,
    t.lookup(Math.floor(b / 4096) * 4096),
    iommu.iotlb.holds(domain.id, b),
    api.busToGpa(b),
    api.isStale(b),
    a.isCached(Math.floor(b / 4096)),
    a.findContaining(Math.floor(b / 4096)) >= 0,
  ]);
  return {
    api: { ...api.stats },
    rc: { ...a.rcacheStats },
    ranges: a.rangeCount,
    cached: a.cachedRanges(),
    iommu: { ...iommu.stats },
    tlb: { ...iommu.iotlb.stats },
    tlbSize: iommu.iotlb.size,
    mapped: t.mappedBytes,
    tables: t.tableCount,
    pending: api.pendingIovas(),
    dump,
  };
}

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      k: fc.constant("map" as const),
      // mostly real RAM; sometimes beyond 2^52 or past the end of the page
      page: fc.oneof({ weight: 9, arbitrary: fc.nat(MEM / 4096 - 2) }, {
        weight: 1,
        arbitrary: fc.constantFrom(2 ** 40 - 1, 2 ** 40),
      }),
      off: fc.oneof(fc.nat(4095), fc.constantFrom(0, 4032, 4095)),
      len: fc.oneof({ weight: 8, arbitrary: fc.integer({ min: 1, max: 64 }) }, {
        weight: 2,
        arbitrary: fc.integer({ min: 0, max: 9000 }),
      }),
      dir: fc.constantFrom(0 as const, 1 as const, 2 as const),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      k: fc.constant("mapc" as const),
      page: fc.oneof(fc.nat(MEM / 4096 - 600), fc.constant(512)),
      pages: fc.oneof(fc.integer({ min: 1, max: 40 }), fc.constant(512)),
    }),
  },
  {
    weight: 5,
    arbitrary: fc.record({
      k: fc.constant("unmap" as const),
      which: fc.nat(),
      delta: fc.oneof({ weight: 8, arbitrary: fc.constant(0) }, {
        weight: 1,
        arbitrary: fc.constantFrom(-4096, -1, 1, 4096),
      }),
      lenDelta: fc.oneof({ weight: 8, arbitrary: fc.constant(0) }, {
        weight: 1,
        arbitrary: fc.constantFrom(-1, 1, 4096),
      }),
      usePage: fc.boolean(),
    }),
  },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("unmapc" as const), which: fc.nat() }) },
  {
    weight: 5,
    arbitrary: fc.record({
      k: fc.constant("tr" as const),
      which: fc.nat(),
      off: fc.constantFrom(0, 1, 60, 4000),
      len: fc.constantFrom(1, 8, 64, 200),
      access: fc.constantFrom(1 as const, 2 as const, 3 as const),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      k: fc.constant("trRaw" as const),
      page: fc.oneof(fc.nat(2 ** 20), fc.constantFrom(0xfee00, 2 ** 20 - 1)),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ k: fc.constant("inv" as const), which: fc.nat(), all: fc.boolean() }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ k: fc.constant("tick" as const), ms: fc.constantFrom(0, 1, 5, 11) }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ k: fc.constant("wait" as const), ms: fc.constantFrom(5, 11) }),
  },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("sync" as const), which: fc.nat() }) },
);

const cfgArb: fc.Arbitrary<Cfg> = fc.record({
  policy: fc.constantFrom("strict" as const, "lazy" as const),
  // 2^20 pages (SAC-first applies), 256 pages (exhaustion), 2^40 (mask above 4 GiB), default
  mask: fc.constantFrom(undefined, 0xf_ffffn, 0xfff_ffffn, 2n ** 40n - 1n),
  sacFirst: fc.boolean(),
  iotlbCapacity: fc.constantFrom(4, 64, 1024),
  fqSize: fc.constantFrom(4, 256),
});

/** Runs `ops` on a fast and a general lab of module pair `dma`/`mem`; throws on a difference. */
function differential(dma: Mod, mem: Mod, cfg: Cfg, ops: Op[]): void {
  const F = setup(dma, mem, cfg, true), G = setup(dma, mem, cfg, false);
  for (let i = 0; i < ops.length; i++) {
    const rf = step(F, ops[i]), rg = step(G, ops[i]);
    assertEquals(rf, rg, `step ${i} ${JSON.stringify(ops[i])}: result`);
    // counters after every step, the full dump every 16 steps and at the end
    const full = (i & 15) === 15 || i === ops.length - 1;
    assertEquals(
      snapshot(F, full),
      snapshot(G, full),
      `step ${i} ${JSON.stringify(ops[i])}: state`,
    );
  }
}

/** Long runs of the common case (one-page buffers in batches), which the fast path serves. */
const batchArb: fc.Arbitrary<Op[]> = fc.tuple(
  fc.boolean(),
  fc.array(
    fc.tuple(
      fc.integer({ min: 1, max: 140 }),
      fc.nat(MEM / 4096 - 200),
      fc.boolean(),
      fc.constantFrom(0 as const, 1 as const, 2 as const),
      fc.constantFrom(1 as const, 2 as const, 3 as const),
      fc.boolean(),
    ),
    { minLength: 1, maxLength: 4 },
  ),
).map(([ring, bs]) => {
  // a coherent mapping kept alive (the rings' memory, as in the bench) keeps the IOVA's
  // level-1 table, so the fused map and unmap apply from the first buffer on
  const ops: Op[] = ring ? [{ k: "mapc", page: MEM / 4096 - 8, pages: 4 }] : [];
  for (const [n, p, tr, dir, access, wide] of bs) {
    // `wide`: every third buffer spans two pages, so a lazy flush frees runs of one-page ranges
    // broken by two-page ones
    for (let j = 0; j < n; j++) {
      ops.push({ k: "map", page: p + j, off: 128, len: wide && j % 3 === 2 ? 4000 : 64, dir });
    }
    if (tr) {
      for (let j = 0; j < n; j++) ops.push({ k: "tr", which: 1e9 - j, off: 0, len: 8, access });
    }
    for (let j = 0; j < n; j++) {
      ops.push({ k: "unmap", which: ring ? 1 : 0, delta: 0, lenDelta: 0, usePage: j % 2 === 0 });
    }
  }
  return ops;
});

/**
 * Lazy invalidation through the depot: 400 one-page buffers mapped and unmapped, three times,
 * so each round's batch frees fill the loaded and prev magazines and push full ones to the
 * depot, and the next round's maps empty the loaded magazine and refill it from prev and the
 * depot.
 */
const DEPOT_CFG: Cfg = {
  policy: "lazy",
  mask: undefined,
  sacFirst: true,
  iotlbCapacity: 1024,
  fqSize: 256,
};
function depotOps(): Op[] {
  const ops: Op[] = [{ k: "mapc", page: MEM / 4096 - 8, pages: 4 }];
  for (let round = 0; round < 3; round++) {
    for (let j = 0; j < 400; j++) ops.push({ k: "map", page: 16 + j, off: 128, len: 64, dir: 2 });
    for (let j = 0; j < 400; j++) {
      ops.push({ k: "unmap", which: 1, delta: 0, lenDelta: 0, usePage: true });
    }
    // the timer frees the rest: through tick, or (first round) at the next map's timer check
    ops.push(round === 0 ? { k: "wait", ms: 11 } : { k: "tick", ms: 11 });
  }
  return ops;
}

const root = new URL("../../", import.meta.url);
const dmaMod = await import(new URL("src/dma/mod.ts", root).href);
const memMod = await import(new URL("src/memory/mod.ts", root).href);

Deno.test("iommu fast path: same observable behaviour as the general path (random ops)", () => {
  fc.assert(
    fc.property(cfgArb, fc.array(opArb, { maxLength: 120 }), (cfg, ops) => {
      differential(dmaMod, memMod, cfg, ops);
    }),
    { numRuns: 100 },
  );
});

Deno.test("iommu fast path: same observable behaviour in long one-page batches", () => {
  fc.assert(
    fc.property(cfgArb, batchArb, fc.array(opArb, { maxLength: 30 }), (cfg, batch, tail) => {
      differential(dmaMod, memMod, cfg, [...batch, ...tail]);
    }),
    { numRuns: 25 },
  );
});

Deno.test("iommu fast path: same observable behaviour through the range caches' depot", () => {
  differential(dmaMod, memMod, DEPOT_CFG, depotOps());
});

Deno.test("iommu fast path: the fused path is taken (the test exercises it)", () => {
  const cfg: Cfg = {
    policy: "strict",
    mask: undefined,
    sacFirst: true,
    iotlbCapacity: 1024,
    fqSize: 256,
  };
  const F = setup(dmaMod, memMod, cfg, true);
  // count the fused steps that did the work (returned a PFN / true) on this one instance
  const taken = { alloc: 0, map: 0, unmap: 0, free: 0, miss: 0, walk: 0 };
  const spy = (o: Mod, name: string, key: keyof typeof taken) => {
    const orig = o[name].bind(o);
    o[name] = (...args: unknown[]) => {
      const r = orig(...args);
      if (r === true || (typeof r === "number" && r >= 0)) taken[key]++;
      return r;
    };
  };
  spy(F.api.allocator, "allocCachedPage", "alloc");
  spy(F.iommu, "mapPageCached", "map");
  spy(F.iommu, "unmapPageCached", "unmap");
  spy(F.api.allocator, "freeCachedPageAt", "free");
  spy(F.iommu.iotlb, "missSlot", "miss");
  spy(F.domain.table, "walkPageCached", "walk");
  step(F, { k: "mapc", page: 1000, pages: 4 }); // the rings' memory: keeps the level-1 table
  for (let round = 0; round < 3; round++) {
    for (let j = 0; j < 8; j++) step(F, { k: "map", page: 16 + j, off: 64, len: 64, dir: 1 });
    // the device reads each buffer: an IOTLB miss (strict unmaps invalidated the last round's)
    for (const m of F.live.slice(-8)) F.ep.translate(m.bus, 8, 1, F.out);
    for (let j = 0; j < 8; j++) {
      step(F, { k: "unmap", which: 1, delta: 0, lenDelta: 0, usePage: true });
    }
  }
  // round 0 fills the range cache (its first free creates it: the general path), rounds 1-2
  // take every fused step; every device read is a fused IOTLB miss
  assertEquals(taken, { alloc: 16, map: 16, unmap: 24, free: 23, miss: 24, walk: 24 });
  const calls = taken.alloc;
  assert(calls >= 16, `fused allocation taken ${calls} times`);
});

Deno.test("iommu fast path: the lazy batch free takes the fused push", () => {
  const cfg: Cfg = {
    policy: "lazy",
    mask: undefined,
    sacFirst: true,
    iotlbCapacity: 1024,
    fqSize: 8,
  };
  const F = setup(dmaMod, memMod, cfg, true);
  let pushed = 0;
  const a = F.api.allocator;
  const orig = a.freeCachedPages.bind(a);
  a.freeCachedPages = (pfns: Float64Array, pages: Float64Array, from: number, to: number) => {
    const r = orig(pfns, pages, from, to);
    pushed += r - from;
    return r;
  };
  step(F, { k: "mapc", page: 1000, pages: 4 });
  for (let round = 0; round < 4; round++) {
    for (let j = 0; j < 7; j++) step(F, { k: "map", page: 16 + j, off: 64, len: 64, dir: 2 });
    for (let j = 0; j < 7; j++) {
      step(F, { k: "unmap", which: 1, delta: 0, lenDelta: 0, usePage: true });
    }
  }
  // 28 unmaps through an 8-entry queue (7 entries before a full flush): three full flushes of 7;
  // the first one's first free creates the one-page range cache (general path), every other
  // free (6 + 7 + 7) is the fused push
  assertEquals(F.api.flushQueue.stats.fullFlushes, 3);
  assertEquals(pushed, 20);
});

// Planted bugs: each mutation of the fast path, written into a private copy of src/, must make
// the differential check fail.
const PLANTS: { file: string; from: string; to: string }[] = [
  // the fused allocation takes the magazine's oldest PFN instead of the newest
  {
    file: "src/dma/iova_allocator.ts",
    from: "const pfn = m.pfns[k];",
    to: "const pfn = m.pfns[0];",
  },
  // mapNumber's fused map skips lazy's flush-queue timer check (a due flush comes late)
  {
    file: "src/dma/iommu_api.ts",
    from: "this.flushQueue?.poll();\n      const off = gpa & 4095;",
    to: "const off = gpa & 4095;",
  },
  // mapNumber's fused map keeps the in-page offset out of the handle (unmap then refuses it)
  {
    file: "src/dma/iommu_api.ts",
    from: "pfn = this.allocator.allocCachedPage(this.#firstLimitPfn, off << 2);",
    to: "pfn = this.allocator.allocCachedPage(this.#firstLimitPfn, 0);",
  },
  // the fused unmap forgets to count the IOMMU unmap
  {
    file: "src/dma/iommu.ts",
    from: "if (t === null || !t.unmapPageCached(pfn)) return false;\n    this.stats.unmaps++;",
    to: "if (t === null || !t.unmapPageCached(pfn)) return false;",
  },
  // the fused map writes the leaf without the permission bits the direction asked for
  {
    file: "src/dma/page_table.ts",
    from: "pool[w] = (gpa | perm) >>> 0;",
    to: "pool[w] = (gpa | 3) >>> 0;",
  },
  // the fused free clears the last entry of a table instead of handing over (tables leak)
  {
    file: "src/dma/page_table.ts",
    from: "if ((pool[w] & 3) === 0 || used[t] <= 1) return false;",
    to: "if ((pool[w] & 3) === 0) return false;",
  },
  // the fused IOTLB miss forgets to count the miss
  {
    file: "src/dma/iotlb.ts",
    from: "this.stats.misses++;\n    this.#count++;",
    to: "this.#count++;",
  },
  // the fused IOTLB miss inserts into a full IOTLB instead of handing over (no overflow flush)
  {
    file: "src/dma/iotlb.ts",
    from: "this.#perLevel[3] !== 0 || this.#count >= this.capacity",
    to: "this.#perLevel[3] !== 0",
  },
  // the fused IOTLB miss skips the permission check of the walked entry
  {
    file: "src/dma/iommu.ts",
    from:
      "const perm = w.perm;\n          tlb.insertPageAt(slot, domain.id, pfn, w.pageGpa, perm);\n" +
      "          if ((access & ~perm) !== 0) {",
    to:
      "const perm = w.perm;\n          tlb.insertPageAt(slot, domain.id, pfn, w.pageGpa, perm);\n" +
      "          if ((access & ~perm & 0) !== 0) {",
  },
  // the fused one-page free (strict's) writes the PFN without growing the magazine (it leaks)
  {
    file: "src/dma/iova_allocator.ts",
    from: "if (m.size === IOVA_MAG_SIZE) return false;\n    m.pfns[m.size++] = pfn;\n" +
      "    this.rcacheStats.inserts++;\n    return true;\n  }\n\n  #insert",
    to: "if (m.size === IOVA_MAG_SIZE) return false;\n    m.pfns[m.size] = pfn;\n" +
      "    this.rcacheStats.inserts++;\n    return true;\n  }\n\n  #insert",
  },
  // the fused allocation's refill swaps in prev but keeps it as prev too (a magazine lost)
  {
    file: "src/dma/iova_allocator.ts",
    from: "rc.loaded = rc.prev;\n    rc.prev = m;",
    to: "rc.loaded = rc.prev;",
  },
  // the fused allocation's refill takes the depot's oldest magazine instead of the newest
  {
    file: "src/dma/iova_allocator.ts",
    from: "rc.spare.push(m);\n    rc.loaded = rc.depot.pop()!;",
    to: "rc.spare.push(m);\n    rc.loaded = rc.depot.shift()!;",
  },
  // the fused lazy batch free fills the loaded magazine past its size
  {
    file: "src/dma/iova_allocator.ts",
    from: "const end = Math.min(to, from + dst.length - s);",
    to: "const end = to;",
  },
  // the fused lazy batch free puts a multi-page range into the one-page range cache
  {
    file: "src/dma/iova_allocator.ts",
    from: "while (k < end && pages[k] === 1) dst[s++] = pfns[k++];",
    to: "while (k < end) dst[s++] = pfns[k++];",
  },
  // the fused lazy batch free does not count its inserts
  {
    file: "src/dma/iova_allocator.ts",
    from: "m.size = s;\n    this.rcacheStats.inserts += k - from;",
    to: "m.size = s;",
  },
  // the fused walk reads an entry of the cached level-1 table for a page of another region
  {
    file: "src/dma/page_table.ts",
    from: "if (Math.floor(pfn / 512) !== key || key < 0) return false;\n" +
      "    const pool = this.#pool;\n    const w = this.#l1Table",
    to: "if (key < 0) return false;\n    const pool = this.#pool;\n    const w = this.#l1Table",
  },
];

for (const p of PLANTS) {
  Deno.test(`iommu fast path: planted bug is caught (${p.file}: ${p.to.slice(0, 40)})`, async () => {
    await withPlantedDma(p.file, p.from, p.to, (dma, mem) => {
      let failed = false;
      try {
        differential(dma, mem, DEPOT_CFG, depotOps());
        fc.assert(
          fc.property(cfgArb, batchArb, fc.array(opArb, { maxLength: 60 }), (cfg, batch, tail) => {
            differential(dma, mem, cfg, [...batch, ...tail]);
          }),
          { numRuns: 60, seed: 16, endOnFailure: true },
        );
      } catch {
        failed = true;
      }
      assert(failed, "the differential test did not notice the planted bug");
    });
  });
}
