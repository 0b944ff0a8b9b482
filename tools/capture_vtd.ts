/**
 * The capture tool's view of a VT-d walk: translate one IOVA of one requester through the guest's
 * DMA-remapping tables, fetching the table pages the walk needs from the live guest.
 *
 * The walk itself is the inspector's ({@link vtdWalk} of `src/inspect`, a synchronous walk over
 * a 4 KiB page source that stops with `page-missing` and the page's GPA). This adapter re-runs
 * it: each time a page is missing it fetches that page (asynchronously, from QEMU) into the cache
 * and walks again, so the capture ends up holding exactly the root, context, PASID and
 * page-table pages the inspector will read, and both translate every IOVA the same way.
 *
 * @module
 */

import {
  type VtdPageSource,
  vtdWalk,
  type VtdWalkRequest,
  type VtdWalkStep,
} from "../src/inspect/mod.ts";

/** What {@link translateFetching} translates: RTADDR_REG, requester id and IOVA. */
export type WalkRequest = VtdWalkRequest;

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
 * it in the cache, or leave it out when the page cannot be read) and walking again; at most 10
 * fetches (root, context, PASID directory, PASID table and up to 5 paging levels: 9).
 * @returns the GPA with the table pages the walk read, or where it stopped.
 */
export async function translateFetching(
  req: WalkRequest,
  cache: Map<bigint, Uint8Array>,
  fetch: (pageGpa: bigint) => Promise<void>,
): Promise<Translation> {
  const source: VtdPageSource = (gpa) => cache.get(gpa);
  const pagesOf = (steps: VtdWalkStep[]) =>
    steps.map((s) => ({
      gpa: s.tableGpa & ~0xfffn,
      what: s.structure + (s.level !== undefined ? ` L${s.level}` : ""),
    }));
  for (let attempt = 0; attempt <= 10; attempt++) {
    const r = vtdWalk(req, source);
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
