/**
 * A large-page operation for the `dma-modes` target: maps a range into an IOMMU I/O page table
 * (`src/dma/page_table.ts`) whose IOVA and GPA are aligned so that 2 MiB and 1 GiB leaves are
 * chosen (as Linux `iommu_map` does with `pgsize_bitmap`), unmaps a sub-range that cuts large
 * pages (which must be split, not dropped), and checks every result against a byte-exact model:
 * `lookup` of probed IOVAs (mapped: `gpa + offset`; unmapped: -1), `mappedBytes`, the bytes
 * `unmap` reports, and the table count back to the root after everything is unmapped.
 * @module
 */

import {
  DmaMapError,
  IO_PAGE_1G,
  IO_PAGE_2M,
  IO_PAGE_4K,
  IoPageTable,
  IOPTE_READ,
  IOPTE_WRITE,
} from "../../../src/mod.ts";
import { OracleFailure } from "../../target.ts";

/** One large-page operation (all sizes in 4 KiB pages unless named otherwise). */
export interface PageTableOp {
  /** 3 or 4 levels. */
  levels: 3 | 4;
  /** Leaf sizes besides 4 KiB: 0 none, 1 2M, 2 1G, 3 both. */
  sizes: number;
  /** IOVA = `iovaGiB` GiB + `iovaPages` pages. */
  iovaGiB: number;
  /** GPA = `gpaGiB` GiB + (`iovaPages` + `skew`) pages: skew 0 keeps 2M/1G alignment. */
  gpaGiB: number;
  /** Start offset in pages inside the GiB. */
  iovaPages: number;
  /** GPA skew in pages (0 most of the time). */
  skew: number;
  /** Mapped length in pages. */
  pages: number;
  /** Unmapped sub-range: start and length in pages, relative to the mapping. */
  cutAt: number;
  /** Length of the cut in pages. */
  cutPages: number;
  /** IOVAs probed, as page offsets from the mapping start (may fall outside it). */
  probes: number[];
  /**
   * A refused call after the cut (absent or 0: none): 1 map of a misaligned GPA, 2 a GPA range
   * beyond 2^52, 3 an IOVA range beyond the table's address width, 4 unmap of a misaligned IOVA,
   * 5 a map that runs into the mapping from the page below (rolled back), 6 no permission,
   * 7 one page mapped 1 GiB below the top, unmapped with `unmapPage` (its tables freed) and
   * unmapped again: a hole, 0 bytes, no table freed twice.
   */
  edge?: number;
}

/** The refusal `edge` expects: a `DmaMapError` reason, `RangeError`, or `null` (not applicable). */
function runEdge(
  t: IoPageTable,
  edge: number,
  iova: number,
  gpa: number,
  firstMapped: boolean,
): void {
  const P = IO_PAGE_4K, RW = IOPTE_READ | IOPTE_WRITE;
  const before = t.mappedBytes, tables = t.tableCount;
  const top = 2 ** t.addressWidth;
  if (edge === 7) {
    const far = (top - IO_PAGE_1G) / P;
    t.map(far * P, 0, P, RW);
    const first = t.unmapPage(far), again = t.unmapPage(far);
    if (first !== P || again !== 0 || t.tableCount !== tables || t.mappedBytes !== before) {
      fail(
        `edge 7: unmapPage ${first} then ${again} bytes; tables ${tables} -> ${t.tableCount}, ` +
          `mapped ${before} -> ${t.mappedBytes}`,
      );
    }
    return;
  }
  let want: string | null = null;
  let call = () => {};
  if (edge === 1) [want, call] = ["misaligned", () => t.map(top - 2 * P, gpa + 1, P, RW)];
  if (edge === 2) [want, call] = ["mask", () => t.map(top - 4 * P, 2 ** 52 - P, 2 * P, RW)];
  if (edge === 3) [want, call] = ["mask", () => t.map(top - P, 0, 2 * P, RW)];
  if (edge === 4) [want, call] = ["misaligned", () => void t.unmap(iova + 1, P)];
  if (edge === 5 && iova >= P && firstMapped) {
    [want, call] = ["overlap", () => t.map(iova - P, 0, 2 * P, RW)];
  }
  if (edge === 6) [want, call] = ["RangeError", () => t.map(top - 2 * P, 0, P, 0)];
  if (want === null) return;
  let got = "no error";
  try {
    call();
  } catch (e) {
    got = e instanceof DmaMapError ? e.reason : e instanceof RangeError ? "RangeError" : String(e);
  }
  if (got !== want) fail(`edge ${edge}: ${got}, expected ${want}`);
  // A refused call changes nothing: a partial map is rolled back.
  if (t.mappedBytes !== before || t.tableCount !== tables) {
    fail(`edge ${edge} (${want}) left ${t.mappedBytes - before} bytes, ${t.tableCount} tables`);
  }
  if (edge === 5 && t.lookup(iova - P) !== -1) fail(`edge 5: IOVA below the mapping still mapped`);
}

function fail(msg: string): never {
  throw new OracleFailure("page-table", msg);
}

/**
 * Runs one {@link PageTableOp}.
 * @returns bytes mapped (work done).
 * @throws OracleFailure `page-table` on any disagreement with the model.
 */
export function runPageTableOp(op: PageTableOp): number {
  const sizes = IO_PAGE_4K | (op.sizes & 1 ? IO_PAGE_2M : 0) | (op.sizes & 2 ? IO_PAGE_1G : 0);
  const t = new IoPageTable(op.levels, sizes);
  const P = IO_PAGE_4K;
  const iova = op.iovaGiB * IO_PAGE_1G + op.iovaPages * P;
  const gpa = op.gpaGiB * IO_PAGE_1G + (op.iovaPages + op.skew) * P;
  // Without 2 MiB leaves (not supported, or a skewed GPA) every page is a 4 KiB leaf: cap the
  // length so that one op stays cheap.
  const small = (op.sizes & 1) === 0 || op.skew % 512 !== 0;
  const pages = small ? Math.min(op.pages, 2048) : op.pages;
  const len = pages * P;
  t.map(iova, gpa, len, IOPTE_READ | IOPTE_WRITE);
  if (t.mappedBytes !== len) fail(`mappedBytes ${t.mappedBytes} after mapping ${len}`);
  const cutStart = Math.min(op.cutAt, pages) * P;
  const cutLen = Math.min(op.cutPages * P, len - cutStart);
  const cut = cutLen > 0 ? t.unmap(iova + cutStart, cutLen) : 0;
  if (cut !== cutLen) fail(`unmap of ${cutLen} bytes at +${cutStart} reported ${cut}`);
  const inCut = (off: number) => off >= cutStart && off < cutStart + cutLen;
  if (op.edge) runEdge(t, op.edge, iova, gpa, !inCut(0));
  for (const p of op.probes) {
    const off = p * P + (p % 7) * 512; // not always page-aligned
    const got = t.lookup(iova + off);
    const want = off >= 0 && off < len && !inCut(off) ? gpa + off : -1;
    if (got !== want) fail(`lookup(iova + ${off}) = ${got}, model ${want} (${JSON.stringify(op)})`);
  }
  if (t.mappedBytes !== len - cutLen) fail(`mappedBytes ${t.mappedBytes}, model ${len - cutLen}`);
  const rest = t.unmap(iova, len);
  if (rest !== len - cutLen) fail(`final unmap reported ${rest}, model ${len - cutLen}`);
  if (t.mappedBytes !== 0 || t.tableCount !== 1) {
    fail(`after unmapping all: ${t.mappedBytes} bytes mapped, ${t.tableCount} tables`);
  }
  return len;
}
