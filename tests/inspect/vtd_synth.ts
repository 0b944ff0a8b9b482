/**
 * Synthetic VT-d images for tests: the second-level tables of an {@link IoPageTable} (the real
 * VT-d entry bits) relocated into guest pages, with root / context (and, scalable mode, PASID
 * directory and PASID table) pages written here.
 * @module
 */

import type { IoPageTable } from "../../src/dma/page_table.ts";

/** Options of {@link buildVtdImage}. */
export interface VtdImageOptions {
  /** The domain's tables (3 or 4 levels). */
  tables: IoPageTable;
  /** Requester id (`bus << 8 | devfn`). */
  sourceId: number;
  /** GPA where the structure pages start (4 KiB-aligned); pages are laid out consecutively. */
  base: number;
  /** Legacy (default) or scalable mode. */
  mode?: "legacy" | "scalable";
  /** Add a level-5 table on top (AW 3, 57-bit): entry 0 points to the 4-level root. */
  fiveLevel?: boolean;
  /** Scalable mode: PGTT (1 first-level, 2 second-level (default), 4 pass-through). */
  pgtt?: number;
  /** Legacy: context TT (0 default, 2 pass-through). */
  tt?: number;
  /** Domain id (default 1). */
  domainId?: number;
}

/** The image: RTADDR value and page contents by GPA. */
export interface VtdImage {
  /** RTADDR_REG value. */
  rtaddr: bigint;
  /** 4 KiB pages by GPA. */
  pages: Map<number, Uint8Array>;
  /** GPA of the top paging table. */
  pagingRoot: number;
}

function page(pages: Map<number, Uint8Array>, gpa: number): DataView {
  let p = pages.get(gpa);
  if (p === undefined) {
    p = new Uint8Array(4096);
    pages.set(gpa, p);
  }
  return new DataView(p.buffer);
}

/** Builds the structures for one requester; see {@link VtdImageOptions}. */
export function buildVtdImage(o: VtdImageOptions): VtdImage {
  const pages = new Map<number, Uint8Array>();
  let next = o.base;
  const alloc = () => {
    const g = next;
    next += 4096;
    page(pages, g);
    return g;
  };
  const scalable = o.mode === "scalable";
  const root = alloc();
  const ctx = alloc();
  const bus = o.sourceId >> 8, devfn = o.sourceId & 0xff;
  // Relocate the IoPageTable: pool table index -> GPA.
  const relocated = new Map<number, number>();
  const levels = o.tables.levels;
  const copy = (path: number[], poolIndex: number, level: number): number => {
    const gpa = alloc();
    relocated.set(poolIndex, gpa);
    const view = page(pages, gpa);
    for (let i = 0; i < 512; i++) {
      const e = o.tables.rawEntry([...path, i]);
      if (e === null) continue;
      const [lo, hi] = e;
      if ((lo & 3) === 0) continue;
      let value = BigInt(hi) * 2n ** 32n + BigInt(lo >>> 0);
      if (level > 1 && (lo & 0x80) === 0) {
        const childPool = Number((value & 0x000f_ffff_ffff_f000n) / 4096n);
        const childGpa = copy([...path, i], childPool, level - 1);
        value = (value & 0xfffn) | BigInt(childGpa);
      }
      view.setBigUint64(i * 8, value, true);
    }
    return gpa;
  };
  let top = copy([], 0, levels);
  if (o.fiveLevel) {
    if (levels !== 4) throw new RangeError("fiveLevel needs a 4-level table");
    const l5 = alloc();
    page(pages, l5).setBigUint64(0, BigInt(top) | 3n, true);
    top = l5;
  }
  const totalLevels = o.fiveLevel ? 5 : levels;
  const aw = BigInt(totalLevels - 2);
  const did = BigInt(o.domainId ?? 1);
  if (!scalable) {
    page(pages, root).setBigUint64(bus * 16, BigInt(ctx) | 1n, true);
    const c = page(pages, ctx);
    c.setBigUint64(devfn * 16, BigInt(top) | (BigInt(o.tt ?? 0) << 2n) | 1n, true);
    c.setBigUint64(devfn * 16 + 8, aw | (did << 8n), true);
    return { rtaddr: BigInt(root), pages, pagingRoot: top };
  }
  const dir = alloc();
  const ptab = alloc();
  page(pages, root).setBigUint64(bus * 16 + (devfn >= 128 ? 8 : 0), BigInt(ctx) | 1n, true);
  const c = page(pages, ctx);
  const ci = (devfn & 0x7f) * 32;
  c.setBigUint64(ci, BigInt(dir) | 1n, true); // PDTS 0: 128 directory entries
  c.setBigUint64(ci + 8, 0n, true); // RID_PASID 0
  page(pages, dir).setBigUint64(0, BigInt(ptab) | 1n, true);
  const pt = page(pages, ptab);
  const pgtt = BigInt(o.pgtt ?? 2);
  pt.setBigUint64(0, BigInt(top) | (pgtt << 6n) | (aw << 2n) | 1n, true);
  pt.setBigUint64(8, did, true);
  pt.setBigUint64(16, BigInt(top) | ((o.fiveLevel ? 1n : 0n) << 2n), true);
  return { rtaddr: BigInt(root) | (1n << 10n), pages, pagingRoot: top };
}

/** A synthetic capture: index JSON (as written to `X.index.json`) and the gzip pages image. */
export interface SyntheticCapture {
  /** The index object. */
  index: Record<string, unknown> & { pages: { gpa: number; file_offset: number; why: string[] }[] };
  /** Uncompressed pages image. */
  image: Uint8Array;
  /** The VT-d image used (RTADDR, structure pages). */
  vtd: VtdImage;
}

/** gzip-compresses bytes. */
export async function gzip(bytes: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(
    await new Response(
      new Blob([bytes as Uint8Array<ArrayBuffer>]).stream().pipeThrough(
        new CompressionStream("gzip"),
      ),
    ).arrayBuffer(),
  );
}

/**
 * Builds a capture from guest pages (RAM contents by GPA) and a VT-d image: every page becomes a
 * kept page. `queues` are written as given (add `addresses_are_iova` and `bdf` yourself).
 */
export function buildCapture(
  ram: Map<number, Uint8Array>,
  vtd: VtdImage,
  queues: Record<string, unknown>[],
  ramSize: number,
  extra: Record<string, unknown> = {},
): SyntheticCapture {
  const all = new Map<number, Uint8Array>([...ram, ...vtd.pages]);
  const gpas = [...all.keys()].sort((a, b) => a - b);
  const image = new Uint8Array(gpas.length * 4096);
  const pages = gpas.map((gpa, i) => {
    image.set(all.get(gpa)!, i * 4096);
    return { gpa, file_offset: i * 4096, why: [vtd.pages.has(gpa) ? "vt-d" : "ram"] };
  });
  return {
    index: {
      format: "virtio-ring-fixture-v1",
      page_size: 4096,
      ram_size: ramSize,
      pages,
      queues,
      iommu: { rtaddr_reg: "0x" + vtd.rtaddr.toString(16) },
      ...extra,
    },
    image,
    vtd,
  };
}
