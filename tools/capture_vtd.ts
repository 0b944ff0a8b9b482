/**
 * The capture tool's view of a VT-d walk: translate one IOVA of one requester through the guest's
 * DMA-remapping tables, fetching the table pages the walk needs from the live guest.
 *
 * The walk itself is the inspector's (`vtdWalk` of `src/inspect`, a synchronous walk over a 4 KiB
 * page source that stops with `page-missing` and the page's GPA). This adapter re-runs it: each
 * time a page is missing it fetches that page (asynchronously, from QEMU) into the cache and walks
 * again, so the capture ends up holding exactly the root, context and page-table pages the
 * inspector will read.
 *
 * The adapter uses the inspector's `vtdWalk` when the `src/inspect` face exports it, and otherwise
 * {@link legacyWalk}, a minimal legacy-mode second-level walk with the same request/result shape.
 *
 * @module
 */

import * as inspectFace from "../src/inspect/mod.ts";

/** Page source of the walk: the 4 KiB page at `gpa`, or `undefined` when not fetched yet. */
export type WalkPageSource = (gpa: bigint) => Uint8Array | DataView | undefined;

/** The subset of the inspector's walk request the capture uses. */
export interface WalkRequest {
  /** RTADDR_REG value. */
  rtaddr: bigint;
  /** `bus << 8 | dev << 3 | fn`. */
  sourceId: number;
  /** IOVA. */
  iova: bigint;
}

/** The subset of the inspector's walk result the capture uses. */
export type WalkResult =
  | {
    ok: true;
    gpa: bigint;
    pageSize: number;
    steps: { tableGpa: bigint; structure: string; level?: number }[];
  }
  | {
    ok: false;
    reason: string;
    structure: string;
    level?: number;
    missingPage?: bigint;
    message: string;
    steps: { tableGpa: bigint; structure: string; level?: number }[];
  };

/** A synchronous VT-d walk with the inspector's shape. */
export type Walker = (req: WalkRequest, source: WalkPageSource) => WalkResult;

const MASK = 0x000f_ffff_ffff_f000n;

/**
 * Minimal legacy-mode walk (VT-d spec §9.1 root entry, §9.3 context entry, §9.8 second-level
 * entries; R|W = present, PS at level 2/3 = 2 MiB / 1 GiB leaf). Stands in for the inspector's
 * `vtdWalk` until that is merged; pass-through contexts translate to themselves.
 */
export const legacyWalk: Walker = (req, source) => {
  const steps: { tableGpa: bigint; structure: string; level?: number }[] = [];
  const word = (gpa: bigint): bigint | undefined => {
    const page = gpa & ~0xfffn;
    const p = source(page);
    if (p === undefined) return undefined;
    const v = p instanceof DataView ? p : new DataView(p.buffer, p.byteOffset, p.byteLength);
    return v.getBigUint64(Number(gpa - page), true);
  };
  const stop = (reason: string, structure: string, table: bigint, level?: number): WalkResult => ({
    ok: false,
    reason,
    structure,
    level,
    missingPage: reason === "page-missing" ? table & ~0xfffn : undefined,
    message: `IOVA 0x${req.iova.toString(16)}: ${structure}${level ? " level " + level : ""}: ` +
      reason,
    steps,
  });
  if (((req.rtaddr >> 10n) & 3n) !== 0n) return stop("unsupported", "rtaddr", 0n);
  const root = req.rtaddr & MASK;
  const re = word(root + BigInt((req.sourceId >> 8) * 16));
  if (re === undefined) return stop("page-missing", "root", root);
  steps.push({ tableGpa: root, structure: "root" });
  if ((re & 1n) === 0n) return stop("not-present", "root", root);
  const ctx = re & MASK;
  const ceAddr = ctx + BigInt((req.sourceId & 0xff) * 16);
  const lo = word(ceAddr), hi = word(ceAddr + 8n);
  if (lo === undefined || hi === undefined) return stop("page-missing", "context", ctx);
  steps.push({ tableGpa: ctx, structure: "context" });
  if ((lo & 1n) === 0n) return stop("not-present", "context", ctx);
  const tt = (lo >> 2n) & 3n;
  if (tt === 2n) return { ok: true, gpa: req.iova, pageSize: 4096, steps };
  const aw = Number(hi & 7n);
  if (aw < 1 || aw > 3) return stop("reserved", "context", ctx);
  let table = lo & MASK;
  for (let level = aw + 2; level >= 1; level--) {
    const shift = BigInt(12 + 9 * (level - 1));
    const e = word(table + ((req.iova >> shift) & 0x1ffn) * 8n);
    if (e === undefined) return stop("page-missing", "second-level", table, level);
    steps.push({ tableGpa: table, structure: "second-level", level });
    if ((e & 3n) === 0n) return stop("not-present", "second-level", table, level);
    if (level === 1 || ((e & 0x80n) !== 0n && level <= 3)) {
      const size = 1n << shift;
      return {
        ok: true,
        gpa: ((e & MASK) & ~(size - 1n)) + (req.iova & (size - 1n)),
        pageSize: Number(size),
        steps,
      };
    }
    table = e & MASK;
  }
  return stop("reserved", "second-level", table);
};

/** The inspector's walk when the face exports it (it has the same shape), else {@link legacyWalk}. */
const inspectorWalk = (inspectFace as Record<string, unknown>).vtdWalk as Walker | undefined;

let walker: Walker = inspectorWalk ?? legacyWalk;

/** The walk in use: the inspector's `vtdWalk` when `src/inspect` exports it. */
export function activeWalker(): { name: string; walk: Walker } {
  return {
    name: walker === legacyWalk ? "legacyWalk (capture stand-in)" : "vtdWalk",
    walk: walker,
  };
}

/** Replaces the walk used by {@link translateFetching} (the inspector's `vtdWalk`). */
export function useWalker(w: Walker): void {
  walker = w;
}

/** Outcome of {@link translateFetching}. */
export type Translation =
  | {
    ok: true;
    gpa: bigint;
    pageSize: number;
    /** Table pages the walk read, with what they are (`root`, `context`, `second-level L3`...). */
    tablePages: { gpa: bigint; what: string }[];
  }
  | {
    ok: false;
    reason: string;
    structure: string;
    level?: number;
    message: string;
    /** Table pages read before the stop (kept, so the inspector's walk stops at the same entry). */
    tablePages: { gpa: bigint; what: string }[];
  };

/**
 * Walks `req` through pages from `cache`, fetching each missing page with `fetch` (which must put
 * it in the cache, or leave it out when the page cannot be read) and walking again; at most 8
 * fetches (root, context, PASID directory and table, 4-5 paging levels).
 * @returns the GPA with the table pages the walk read, or where it stopped.
 */
export async function translateFetching(
  req: WalkRequest,
  cache: Map<bigint, Uint8Array>,
  fetch: (pageGpa: bigint) => Promise<void>,
): Promise<Translation> {
  const source: WalkPageSource = (gpa) => cache.get(gpa);
  const pagesOf = (steps: { tableGpa: bigint; structure: string; level?: number }[]) =>
    steps.map((s) => ({
      gpa: s.tableGpa & ~0xfffn,
      what: s.structure + (s.level !== undefined ? ` L${s.level}` : ""),
    }));
  for (let attempt = 0; attempt <= 8; attempt++) {
    const r = walker(req, source);
    if (r.ok) return { ok: true, gpa: r.gpa, pageSize: r.pageSize, tablePages: pagesOf(r.steps) };
    if (r.reason === "page-missing" && r.missingPage !== undefined) {
      if (cache.has(r.missingPage)) break;
      await fetch(r.missingPage);
      if (!cache.has(r.missingPage)) {
        return {
          ok: false,
          reason: r.reason,
          structure: r.structure,
          level: r.level,
          message: `${r.message} (page 0x${r.missingPage.toString(16)} unreadable)`,
          tablePages: pagesOf(r.steps),
        };
      }
      continue;
    }
    return {
      ok: false,
      reason: r.reason,
      structure: r.structure,
      level: r.level,
      message: r.message,
      tablePages: pagesOf(r.steps),
    };
  }
  return {
    ok: false,
    reason: "page-missing",
    structure: "walk",
    message: `IOVA 0x${req.iova.toString(16)}: the walk kept asking for pages`,
    tablePages: [],
  };
}
