import { assert, assertEquals, assertThrows } from "@std/assert";
import {
  IO_PAGE_1G,
  IO_PAGE_2M,
  IO_PAGE_4K,
  IoPageTable,
  IOPTE_READ,
  IOPTE_WRITE,
} from "../../src/dma/page_table.ts";
import { DmaTranslation } from "../../src/dma/types.ts";
import { DMA_ACCESS_READ, DMA_ACCESS_WRITE, DmaFault } from "../../src/dma/errors.ts";
import {
  formatBdf,
  formatVtdWalk,
  parseBdf,
  type VtdPageSource,
  vtdWalk,
  type VtdWalkResult,
  type VtdWalkStop,
} from "../../src/inspect/vtd_walk.ts";
import { VtdAddressSpace, VtdTranslationFault } from "../../src/inspect/vtd_space.ts";
import { buildVtdImage } from "./vtd_synth.ts";

const BDF = parseBdf("00:03.0")!;
const src = (pages: Map<number, Uint8Array>): VtdPageSource => (gpa) => pages.get(Number(gpa));

function mapped(levels: 3 | 4 = 3): IoPageTable {
  const t = new IoPageTable(levels);
  t.map(0xffff_f000, 0x12_3000, IO_PAGE_4K, IOPTE_READ | IOPTE_WRITE);
  t.map(0x20_0000, 0x80_0000, IO_PAGE_2M, IOPTE_READ, IO_PAGE_2M | IO_PAGE_4K);
  t.map(0x4000_0000, 0x8000_0000, IO_PAGE_1G, IOPTE_WRITE);
  return t;
}

function stopped(r: VtdWalkResult): VtdWalkStop {
  if (r.ok) throw new Error(`walk translated to ${r.gpa}`);
  return r;
}

function ok(r: VtdWalkResult) {
  if (!r.ok) throw new Error(`walk stopped: ${r.message}`);
  return r;
}

Deno.test("parseBdf / formatBdf: BB:DD.F round trip, bad text refused", () => {
  assertEquals(parseBdf("00:03.0"), 0x18);
  assertEquals(parseBdf("0000:01:1f.7"), 0x1ff);
  assertEquals(formatBdf(0x1ff), "01:1f.7");
  for (const bad of ["00:20.0", "0:3", "00:03.8", "1:00:03.0", "x"]) {
    assertEquals(parseBdf(bad), null);
  }
});

Deno.test("vtdWalk legacy 3-level: 4K, 2M, 1G leaves, R/W bits, every level recorded", () => {
  const img = buildVtdImage({ tables: mapped(3), sourceId: BDF, base: 0x10_0000 });
  const s = src(img.pages);
  const a = ok(vtdWalk({ rtaddr: img.rtaddr, sourceId: BDF, iova: 0xffff_f123n }, s));
  assertEquals(a.gpa, 0x12_3123n);
  assertEquals(a.pageSize, 4096);
  assertEquals([a.read, a.write], [true, true]);
  assertEquals(a.mode, "legacy");
  assertEquals(a.steps.map((x) => x.level ?? x.structure), ["root", "context", 3, 2, 1]);
  assertEquals(a.steps[0].index, 0); // bus 0
  assertEquals(a.steps[1].index, 0x18); // devfn 3.0
  assertEquals(a.steps[2].index, 3); // (0xfffff000 >> 30) & 511
  assertEquals(a.steps[3].index, 511);
  assertEquals(a.steps[4].index, 511);
  const b = ok(vtdWalk({ rtaddr: img.rtaddr, sourceId: BDF, iova: 0x2f_0010n }, s));
  assertEquals([b.gpa, b.pageSize, b.read, b.write], [0x8f_0010n, IO_PAGE_2M, true, false]);
  const c = ok(vtdWalk({ rtaddr: img.rtaddr, sourceId: BDF, iova: 0x4abc_def0n }, s));
  assertEquals([c.gpa, c.pageSize, c.read, c.write], [0x8abc_def0n, IO_PAGE_1G, false, true]);
  assertEquals(c.steps.length, 3);
});

Deno.test("vtdWalk 4-level and 5-level (AW 2, 3) agree with IoPageTable.lookup", () => {
  const t = mapped(4);
  t.map(0x7f_ffff_f000, 0x5000, IO_PAGE_4K, IOPTE_READ);
  for (const fiveLevel of [false, true]) {
    const img = buildVtdImage({ tables: t, sourceId: BDF, base: 0x10_0000, fiveLevel });
    for (const iova of [0xffff_f008, 0x20_0004, 0x4000_1000, 0x7f_ffff_f010, 0x1000]) {
      const r = vtdWalk({ rtaddr: img.rtaddr, sourceId: BDF, iova: BigInt(iova) }, src(img.pages));
      const want = t.lookup(iova);
      assertEquals(r.ok ? Number(r.gpa) : -1, want, `iova ${iova.toString(16)}`);
      if (r.ok) {
        const leafLevel = 1 + Math.log2(r.pageSize / 4096) / 9;
        assertEquals(r.steps.length, 2 + (fiveLevel ? 5 : 4) - (leafLevel - 1));
      }
    }
  }
});

Deno.test("vtdWalk stops: the level and reason of each kind", () => {
  const img = buildVtdImage({ tables: mapped(3), sourceId: BDF, base: 0x10_0000 });
  const s = src(img.pages);
  const walk = (iova: bigint, sourceId = BDF, rtaddr = img.rtaddr, source = s) =>
    vtdWalk({ rtaddr, sourceId, iova }, source);
  // Unmapped IOVA: the level-2 table has no entry for 0x1000's level-2 slot? 0x1000 -> L3[0] present
  // (2M mapping at 0x200000 lives under it), L2[0] not present.
  const r1 = stopped(walk(0x1000n));
  assertEquals([r1.reason, r1.structure, r1.level], ["not-present", "second-level", 2]);
  assert(r1.message.includes("0x1000"));
  // Beyond the 39-bit width.
  const r2 = stopped(walk(1n << 40n));
  assertEquals(r2.reason, "beyond-address-width");
  // Another bus: root entry not present; another devfn: context entry not present.
  const r3 = walk(0n, 0x100);
  assert(!r3.ok && r3.structure === "root" && r3.reason === "not-present");
  const r4 = walk(0n, 0x20);
  assert(!r4.ok && r4.structure === "context" && r4.reason === "not-present");
  // A missing table page names its GPA (the capture tool fetches it and walks again).
  const top = img.pagingRoot;
  const fewer = new Map(img.pages);
  fewer.delete(top);
  const r5 = stopped(walk(0xffff_f000n, BDF, img.rtaddr, src(fewer)));
  assertEquals([r5.reason, r5.missingPage, r5.level], ["page-missing", BigInt(top), 3]);
  assertEquals(r5.steps.length, 2);
  // Retry with the page: translates.
  fewer.set(top, img.pages.get(top)!);
  assert(walk(0xffff_f000n, BDF, img.rtaddr, src(fewer)).ok);
  // Abort-DMA and reserved TTM.
  const r6 = walk(0n, BDF, img.rtaddr | (3n << 10n));
  assert(!r6.ok && r6.reason === "blocked");
  const r7 = walk(0n, BDF, img.rtaddr | (2n << 10n));
  assert(!r7.ok && r7.reason === "reserved");
  // Reserved AW 0 in the context entry.
  const bad = new Map([...img.pages].map(([g, p]) => [g, p.slice()]));
  const ctxGpa = Number(walk(0xffff_f000n).steps[1].tableGpa);
  new DataView(bad.get(ctxGpa)!.buffer).setBigUint64(0x18 * 16 + 8, 0n, true);
  const r8 = walk(0xffff_f000n, BDF, img.rtaddr, src(bad));
  assert(!r8.ok && r8.reason === "reserved" && r8.structure === "context");
  assertThrows(() => walk(0n, 0x10000), RangeError);
});

Deno.test("vtdWalk legacy pass-through (TT 10): IOVA = GPA", () => {
  const img = buildVtdImage({ tables: mapped(3), sourceId: BDF, base: 0x10_0000, tt: 2 });
  const r = ok(vtdWalk({ rtaddr: img.rtaddr, sourceId: BDF, iova: 0x1234n }, src(img.pages)));
  assertEquals([r.gpa, r.translation], [0x1234n, "pass-through"]);
});

Deno.test("vtdWalk scalable mode: PASID directory and table, second-level, first-level, PT", () => {
  const t = mapped(4);
  for (const devfn of [0x18, 0x88]) {
    const sl = buildVtdImage({ tables: t, sourceId: devfn, base: 0x10_0000, mode: "scalable" });
    const r = ok(
      vtdWalk({ rtaddr: sl.rtaddr, sourceId: devfn, iova: 0xffff_f010n }, src(sl.pages)),
    );
    assertEquals([r.gpa, r.mode, r.translation], [0x12_3010n, "scalable", "second-level"]);
    assertEquals(r.steps.map((x) => x.structure).slice(0, 4), [
      "root",
      "context",
      "pasid-directory",
      "pasid-table",
    ]);
    assertEquals(r.steps[1].index, devfn & 0x7f);
  }
  const fl = buildVtdImage({
    tables: t,
    sourceId: BDF,
    base: 0x10_0000,
    mode: "scalable",
    pgtt: 1,
  });
  const f = ok(vtdWalk({ rtaddr: fl.rtaddr, sourceId: BDF, iova: 0x20_0010n }, src(fl.pages)));
  // IoPageTable R-only -> first-level present, read-only.
  assertEquals([f.gpa, f.translation, f.read, f.write], [0x80_0010n, "first-level", true, false]);
  // A first-level table ignores W-only entries (P clear): the 1 GiB W-only page is not present.
  const g = vtdWalk({ rtaddr: fl.rtaddr, sourceId: BDF, iova: 0x4000_0000n }, src(fl.pages));
  assert(!g.ok && g.structure === "first-level" && g.level === 3);
  const pt = buildVtdImage({
    tables: t,
    sourceId: BDF,
    base: 0x10_0000,
    mode: "scalable",
    pgtt: 4,
  });
  assertEquals(
    ok(vtdWalk({ rtaddr: pt.rtaddr, sourceId: BDF, iova: 0x5000n }, src(pt.pages))).translation,
    "pass-through",
  );
  const nested = buildVtdImage({
    tables: t,
    sourceId: BDF,
    base: 0x10_0000,
    mode: "scalable",
    pgtt: 3,
  });
  const n = vtdWalk({ rtaddr: nested.rtaddr, sourceId: BDF, iova: 0n }, src(nested.pages));
  assert(!n.ok && n.reason === "unsupported");
});

Deno.test("formatVtdWalk prints one line per level and the result", () => {
  const img = buildVtdImage({ tables: mapped(3), sourceId: BDF, base: 0x10_0000 });
  const lines = formatVtdWalk(
    vtdWalk({ rtaddr: img.rtaddr, sourceId: BDF, iova: 0xffff_f000n }, src(img.pages)),
  );
  assertEquals(lines.length, 6);
  assert(lines[2].startsWith("second-level L3"));
  assert(lines[5].includes("GPA 0x123000"));
});

Deno.test("VtdAddressSpace: contiguous prefix, permission fault, walk fault logged", () => {
  const t = mapped(3);
  t.map(0x1_0000_0000 - 0x2000, 0x12_2000, IO_PAGE_4K, IOPTE_READ | IOPTE_WRITE);
  const img = buildVtdImage({ tables: t, sourceId: BDF, base: 0x10_0000 });
  const space = new VtdAddressSpace(img.rtaddr, BDF, src(img.pages));
  const out = new DmaTranslation();
  space.translate(0xffff_e800, 0x1000, DMA_ACCESS_READ, out);
  assertEquals([out.gpa, out.length], [0x12_2800, 0x1000]);
  assertThrows(
    () => space.translate(0x20_0000, 8, DMA_ACCESS_WRITE, out),
    DmaFault,
    "permission",
  );
  const e = assertThrows(
    () => space.translate(0x1000, 8, DMA_ACCESS_READ, out),
    VtdTranslationFault,
  );
  assertEquals(e.walk.level, 2);
  assertEquals(space.stops.length, 1);
});
