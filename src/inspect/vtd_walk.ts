/**
 * Intel VT-d DMA remapping walk over captured guest pages: the inspector's own translation of a
 * device's IOVA to a GPA, read from the tables the guest built (Intel VT-d specification rev 3.x,
 * chapter 3 "DMA Remapping" and chapter 9 "Translation Structure Formats"; bit layouts as QEMU's
 * `hw/i386/intel_iommu_internal.h` emulates them).
 *
 * The walk reads memory only through a synchronous {@link VtdPageSource} that returns one 4 KiB
 * page, so a capture tool can re-run it: when a page is missing the walk stops with reason
 * `page-missing` and the page's GPA, the tool fetches that page from QEMU and walks again.
 *
 * Structures walked (every level visited is recorded as a {@link VtdWalkStep}):
 * - Root Table Address register (RTADDR_REG, §11.4.5): bits 63:12 root table address, bits 11:10
 *   TTM (00 legacy mode, 01 scalable mode, 11 abort DMA mode; 10 reserved).
 * - Legacy mode (§9.1, §9.3): root table of 256 16-byte entries indexed by bus (lo bit 0 P, lo
 *   bits 63:12 context-table pointer); context table of 256 16-byte entries indexed by devfn (lo
 *   bit 0 P, bits 3:2 TT: 00 second-level only, 01 also device-TLB, 10 pass-through; lo bits
 *   63:12 second-level page-table pointer; hi bits 2:0 AW: 1 = 39-bit 3-level, 2 = 48-bit
 *   4-level, 3 = 57-bit 5-level; hi bits 23:8 domain id).
 * - Scalable mode (§9.2, §9.4, §9.5, §9.6): root entry lo (devfn 0-127) / hi (devfn 128-255)
 *   with bit 0 present and bits 63:12 the context-table pointer; context table of 128 32-byte
 *   entries indexed by devfn & 0x7f (word 0 bit 0 P, bits 11:9 PDTS, bits 63:12 PASID directory
 *   pointer; word 1 bits 19:0 RID_PASID, the PASID of requests without one); PASID directory of
 *   8-byte entries indexed by PASID[19:6] (bit 0 P, bits 63:12 PASID table pointer); PASID table of
 *   64-byte entries indexed by PASID[5:0] (word 0: bit 0 P, bits 4:2 AW, bits 8:6 PGTT: 001
 *   first-level, 010 second-level, 100 pass-through, 011 nested; bits 63:12 second-level pointer;
 *   word 1 bits 15:0 domain id; word 2: bits 3:2 FLPM 00 4-level / 01 5-level, bits 63:12
 *   first-level pointer).
 * - Second-level paging entries (§9.8): bit 0 R, bit 1 W (present when either is set), bit 7 PS
 *   (a leaf at level 2 = 2 MiB or level 3 = 1 GiB), bits 51:12 address; R and W are ANDed along
 *   the walk. Index at level L is `(iova >> (12 + 9 * (L - 1))) & 0x1ff`.
 * - First-level paging entries (§9.7, x86-64 paging format): bit 0 P, bit 1 R/W, bit 7 PS, bits
 *   51:12 address; a present entry allows reads, writes need R/W at every level.
 *
 * Not modelled: reserved-bit faults (the walk follows the fields it needs and ignores the rest),
 * nested translation (PGTT 011, which QEMU 7.2 does not emulate either: reported `unsupported`),
 * fault-processing-disable, the IOTLB and device-TLB.
 *
 * @module
 */

import { GUEST_PAGE_SIZE } from "../memory/guest_memory.ts";

/**
 * One captured 4 KiB page: `gpa` is page-aligned; return its 4096 bytes, or `undefined` when the
 * page is not available (the walk then stops with `page-missing`).
 */
export type VtdPageSource = (gpa: bigint) => Uint8Array | DataView | undefined;

/** Translation structure a walk step read. */
export type VtdStructure =
  | "root"
  | "context"
  | "pasid-directory"
  | "pasid-table"
  | "second-level"
  | "first-level";

/** One level visited by a walk. */
export interface VtdWalkStep {
  /** Which structure was read. */
  structure: VtdStructure;
  /** Paging level (5..1) for `second-level` / `first-level`; absent otherwise. */
  level?: number;
  /** GPA of the table (4 KiB-aligned). */
  tableGpa: bigint;
  /** Entry index within the table. */
  index: number;
  /** GPA of the entry. */
  entryGpa: bigint;
  /** The entry's 64-bit words, in memory order (root 2, context 2 or 4, PASID 8, PTE 1). */
  entry: bigint[];
  /** What the entry says, in words (e.g. `present, next table 0x1234000`). */
  meaning: string;
}

/** Why a walk stopped without a translation. */
export type VtdStopReason =
  /** The page source did not have a page the walk needed (see `missingPage`). */
  | "page-missing"
  /** An entry on the way is not present (VT-d fault reasons 1h/2h/7h and friends). */
  | "not-present"
  /** The IOVA is beyond the address width the context / PASID entry gives (fault 6h / 0Bh). */
  | "beyond-address-width"
  /** A field holds a value the specification reserves (e.g. AW 0, TTM 10, TT 11). */
  | "reserved"
  /** A valid configuration this walker does not model (nested translation). */
  | "unsupported"
  /** RTADDR's TTM selects abort-DMA mode: every request is blocked. */
  | "blocked";

/** What to translate. */
export interface VtdWalkRequest {
  /** Root Table Address register value (RTADDR_REG, 64 bits). */
  rtaddr: bigint;
  /** Requester source id: `bus << 8 | dev << 3 | fn` (see {@link parseBdf}). */
  sourceId: number;
  /** The IOVA (device bus address), exact u64. */
  iova: bigint;
  /**
   * PASID of the request (scalable mode); default: the context entry's RID_PASID (requests
   * without PASID). Ignored in legacy mode.
   */
  pasid?: number;
}

/** A successful walk. */
export interface VtdWalkOk {
  /** Translated. */
  ok: true;
  /** The IOVA that was walked. */
  iova: bigint;
  /** GPA of the IOVA's byte. */
  gpa: bigint;
  /** GPA of the first byte of the leaf page (pass-through: the 4 KiB page of `gpa`). */
  pageGpa: bigint;
  /** Leaf page size in bytes: 4 KiB, 2 MiB or 1 GiB (pass-through: 4 KiB). */
  pageSize: number;
  /** Reads allowed (R ANDed along the walk; first-level: present). */
  read: boolean;
  /** Writes allowed (W ANDed along the walk; first-level: R/W at every level). */
  write: boolean;
  /** RTADDR's translation table mode. */
  mode: "legacy" | "scalable";
  /** How the final translation was done. */
  translation: "second-level" | "first-level" | "pass-through";
  /** Domain id from the context (legacy) or PASID entry (scalable). */
  domainId: number;
  /** Every level visited, root first. */
  steps: VtdWalkStep[];
}

/** A walk that stopped. */
export interface VtdWalkStop {
  /** Not translated. */
  ok: false;
  /** The IOVA that was walked. */
  iova: bigint;
  /** Why it stopped. */
  reason: VtdStopReason;
  /** The structure that stopped it (for `page-missing`: the one whose table was missing). */
  structure: VtdStructure | "rtaddr";
  /** Paging level (5..1) when `structure` is a page table. */
  level?: number;
  /** GPA of the 4 KiB page the source lacked (`page-missing` only). */
  missingPage?: bigint;
  /** One line: where and why, naming the IOVA, the structure and the entry. */
  message: string;
  /** Every level visited before the stop, root first (the stopping entry included if read). */
  steps: VtdWalkStep[];
}

/** Result of {@link vtdWalk}. */
export type VtdWalkResult = VtdWalkOk | VtdWalkStop;

/** RTADDR_REG bits 11:10, translation table mode (§11.4.5). */
export const VTD_RTADDR_TTM_SHIFT = 10n;
/** TTM 00: legacy mode. */
export const VTD_TTM_LEGACY = 0;
/** TTM 01: scalable mode. */
export const VTD_TTM_SCALABLE = 1;
/** TTM 11: abort DMA mode. */
export const VTD_TTM_ABORT_DMA = 3;
/** Address bits 51:12 of table pointers and page frames (52-bit maximum host address width). */
export const VTD_ADDR_MASK = 0x000f_ffff_ffff_f000n;
/** Legacy context entry TT: second-level translation only (untranslated requests). */
export const VTD_CONTEXT_TT_MULTI_LEVEL = 0;
/** Legacy context entry TT: second-level translation, device-TLB allowed. */
export const VTD_CONTEXT_TT_DEV_IOTLB = 1;
/** Legacy context entry TT: pass-through (IOVA = GPA). */
export const VTD_CONTEXT_TT_PASS_THROUGH = 2;
/** PASID entry PGTT 001: first-level translation only. */
export const VTD_PGTT_FIRST_LEVEL = 1;
/** PASID entry PGTT 010: second-level translation only. */
export const VTD_PGTT_SECOND_LEVEL = 2;
/** PASID entry PGTT 011: nested translation. */
export const VTD_PGTT_NESTED = 3;
/** PASID entry PGTT 100: pass-through. */
export const VTD_PGTT_PASS_THROUGH = 4;
/** Paging entry bit 0: second-level R / first-level P. */
export const VTD_PTE_R = 1n;
/** Paging entry bit 1: second-level W / first-level R/W. */
export const VTD_PTE_W = 2n;
/** Paging entry bit 7: page size (a leaf above level 1). */
export const VTD_PTE_PS = 0x80n;

const PAGE = BigInt(GUEST_PAGE_SIZE);

/**
 * Parses a PCI address `"BB:DD.F"` (hex bus and device, decimal function 0-7; an optional
 * `"SSSS:"` segment prefix must be 0) into a source id `bus << 8 | dev << 3 | fn`.
 * @returns the source id, or `null` when the text is not a PCI address.
 */
export function parseBdf(text: string): number | null {
  const m = /^(?:([0-9a-fA-F]{1,4}):)?([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})\.([0-7])$/.exec(text);
  if (m === null) return null;
  if (m[1] !== undefined && parseInt(m[1], 16) !== 0) return null;
  const bus = parseInt(m[2], 16), dev = parseInt(m[3], 16), fn = Number(m[4]);
  if (dev > 31) return null;
  return (bus << 8) | (dev << 3) | fn;
}

/** Formats a source id as `"BB:DD.F"`. */
export function formatBdf(sourceId: number): string {
  const h = (v: number) => v.toString(16).padStart(2, "0");
  return `${h(sourceId >> 8)}:${h((sourceId >> 3) & 31)}.${sourceId & 7}`;
}

function hex(v: bigint): string {
  return "0x" + v.toString(16);
}

/** Reads 64-bit little-endian words from pages of the source. */
class Reader {
  constructor(private readonly src: VtdPageSource) {}
  missing: bigint | undefined;
  /** Reads `count` words at `gpa` (inside one page), or `undefined` when the page is missing. */
  words(gpa: bigint, count: number): bigint[] | undefined {
    const page = gpa & ~(PAGE - 1n);
    const p = this.src(page);
    if (p === undefined) {
      this.missing = page;
      return undefined;
    }
    const view = p instanceof DataView ? p : new DataView(p.buffer, p.byteOffset, p.byteLength);
    const off = Number(gpa - page);
    if (view.byteLength < off + 8 * count) {
      this.missing = page;
      return undefined;
    }
    const out: bigint[] = [];
    for (let i = 0; i < count; i++) out.push(view.getBigUint64(off + 8 * i, true));
    return out;
  }
}

/**
 * Translates one IOVA for one requester by walking the VT-d structures through `source`.
 * Never throws on guest data: every failure is a {@link VtdWalkStop}.
 * @param req RTADDR, source id, IOVA (and optional PASID).
 * @param source the captured pages.
 * @returns the GPA and permissions with every level visited, or where and why the walk stopped.
 * @throws RangeError only for a caller error (source id not 0..0xffff, IOVA not a u64).
 */
export function vtdWalk(req: VtdWalkRequest, source: VtdPageSource): VtdWalkResult {
  const { sourceId, iova } = req;
  if (!Number.isInteger(sourceId) || sourceId < 0 || sourceId > 0xffff) {
    throw new RangeError(`source id ${sourceId} is not 0..0xffff`);
  }
  if (iova < 0n || iova > 0xffff_ffff_ffff_ffffn) throw new RangeError(`IOVA ${iova} is not a u64`);
  return new VtdWalker(req, source).run();
}

/** Where the context phase leaves the walk: the paging structures to walk next. */
interface PagingPlan {
  domainId: number;
  /** First-level or second-level table root. */
  root: bigint;
  levels: number;
  firstLevel: boolean;
}

/** One walk's state and its phases: root entry, context (legacy or scalable), paging. */
class VtdWalker {
  readonly #req: VtdWalkRequest;
  readonly #rd: Reader;
  readonly #steps: VtdWalkStep[] = [];
  readonly #who: string;
  #scalable = false;

  constructor(req: VtdWalkRequest, source: VtdPageSource) {
    this.#req = req;
    this.#rd = new Reader(source);
    this.#who = `IOVA ${hex(req.iova)} from ${formatBdf(req.sourceId)}`;
  }

  #stop(
    reason: VtdStopReason,
    structure: VtdWalkStop["structure"],
    why: string,
    level?: number,
  ): VtdWalkStop {
    return {
      ok: false,
      iova: this.#req.iova,
      reason,
      structure,
      level,
      missingPage: reason === "page-missing" ? this.#rd.missing : undefined,
      message: `${this.#who}: ${structure}${level !== undefined ? ` level ${level}` : ""}: ${why}`,
      steps: this.#steps,
    };
  }

  #missing(structure: VtdStructure, tableGpa: bigint, level?: number): VtdWalkStop {
    return this.#stop(
      "page-missing",
      structure,
      `table page ${hex(tableGpa)} is not in the capture`,
      level,
    );
  }

  run(): VtdWalkResult {
    const { rtaddr, sourceId } = this.#req;
    const ttm = Number((rtaddr >> VTD_RTADDR_TTM_SHIFT) & 3n);
    if (ttm === VTD_TTM_ABORT_DMA) {
      return this.#stop("blocked", "rtaddr", "RTADDR TTM 11 (abort DMA mode) blocks every request");
    }
    if (ttm === 2) return this.#stop("reserved", "rtaddr", "RTADDR TTM 10 is reserved");
    this.#scalable = ttm === VTD_TTM_SCALABLE;
    const ctxTable = this.#root(rtaddr & VTD_ADDR_MASK, sourceId >> 8, sourceId & 0xff);
    if (typeof ctxTable !== "bigint") return ctxTable;
    const plan = this.#scalable
      ? this.#scalableContext(ctxTable, sourceId & 0xff)
      : this.#legacyContext(ctxTable, sourceId & 0xff);
    if ("ok" in plan) return plan;
    return this.#paging(plan);
  }

  /** Root entry, by bus (§9.1 legacy / §9.2 scalable): the context table, or a stop. */
  #root(rootTable: bigint, bus: number, devfn: number): bigint | VtdWalkStop {
    const rootGpa = rootTable + BigInt(bus * 16);
    const re = this.#rd.words(rootGpa, 2);
    if (re === undefined) return this.#missing("root", rootTable);
    const scalable = this.#scalable;
    const half = scalable && devfn >= 128 ? 1 : 0;
    const rootWord = re[half];
    const rootPresent = (rootWord & 1n) !== 0n;
    const ctxTable = rootWord & VTD_ADDR_MASK;
    this.#steps.push({
      structure: "root",
      tableGpa: rootTable,
      index: bus,
      entryGpa: rootGpa,
      entry: re,
      meaning: `${scalable ? (half ? "upper (devfn 128-255) " : "lower (devfn 0-127) ") : ""}` +
        (rootPresent ? `present, context table ${hex(ctxTable)}` : "not present"),
    });
    if (!rootPresent) {
      return this.#stop("not-present", "root", `root entry ${bus} (bus) is not present`);
    }
    return ctxTable;
  }

  /** Legacy context entry, by devfn (§9.3). */
  #legacyContext(ctxTable: bigint, devfn: number): PagingPlan | VtdWalkResult {
    const ceGpa = ctxTable + BigInt(devfn * 16);
    const ce = this.#rd.words(ceGpa, 2);
    if (ce === undefined) return this.#missing("context", ctxTable);
    const present = (ce[0] & 1n) !== 0n;
    const tt = Number((ce[0] >> 2n) & 3n);
    const aw = Number(ce[1] & 7n);
    const domainId = Number((ce[1] >> 8n) & 0xffffn);
    const slRoot = ce[0] & VTD_ADDR_MASK;
    this.#steps.push({
      structure: "context",
      tableGpa: ctxTable,
      index: devfn,
      entryGpa: ceGpa,
      entry: ce,
      meaning: present
        ? `present, TT ${tt}, AW ${aw} (${aw >= 1 && aw <= 3 ? 30 + 9 * aw : "?"}-bit), ` +
          `domain ${domainId}, second-level table ${hex(slRoot)}`
        : "not present",
    });
    if (!present) {
      return this.#stop("not-present", "context", `context entry ${devfn} (devfn) is not present`);
    }
    if (tt === 3) return this.#stop("reserved", "context", "context entry TT 11 is reserved");
    if (tt === VTD_CONTEXT_TT_PASS_THROUGH) {
      return passThrough(this.#req.iova, "legacy", domainId, this.#steps);
    }
    if (aw < 1 || aw > 3) {
      return this.#stop(
        "reserved",
        "context",
        `context entry AW ${aw} is reserved (use 1, 2 or 3)`,
      );
    }
    return { domainId, root: slRoot, levels: aw + 2, firstLevel: false };
  }

  /** Scalable-mode context entry, 32 bytes, by devfn & 0x7f (§9.4), then the PASID entry. */
  #scalableContext(ctxTable: bigint, devfn: number): PagingPlan | VtdWalkResult {
    const idx = devfn & 0x7f;
    const ceGpa = ctxTable + BigInt(idx * 32);
    const ce = this.#rd.words(ceGpa, 4);
    if (ce === undefined) return this.#missing("context", ctxTable);
    const present = (ce[0] & 1n) !== 0n;
    const pdts = Number((ce[0] >> 9n) & 7n);
    const pasidDir = ce[0] & VTD_ADDR_MASK;
    const ridPasid = Number(ce[1] & 0xfffffn);
    this.#steps.push({
      structure: "context",
      tableGpa: ctxTable,
      index: idx,
      entryGpa: ceGpa,
      entry: ce,
      meaning: present
        ? `present, PASID directory ${hex(pasidDir)} (${2 ** (pdts + 7)} entries), ` +
          `RID_PASID ${ridPasid}`
        : "not present",
    });
    if (!present) {
      return this.#stop("not-present", "context", `context entry ${devfn} (devfn) is not present`);
    }
    const pasid = this.#req.pasid ?? ridPasid;
    const pasidTable = this.#pasidDirectory(pasidDir, pdts, pasid);
    if (typeof pasidTable !== "bigint") return pasidTable;
    return this.#pasidEntry(pasidTable, pasid);
  }

  /** PASID directory entry, by PASID[19:6] (§9.5): the PASID table, or a stop. */
  #pasidDirectory(pasidDir: bigint, pdts: number, pasid: number): bigint | VtdWalkStop {
    const dirIdx = (pasid >> 6) & 0x3fff;
    if (dirIdx >= 2 ** (pdts + 7)) {
      return this.#stop(
        "not-present",
        "pasid-directory",
        `PASID ${pasid} is beyond the directory size the context gives (PDTS ${pdts})`,
      );
    }
    const pdeGpa = pasidDir + BigInt(dirIdx * 8);
    const pde = this.#rd.words(pdeGpa, 1);
    if (pde === undefined) return this.#missing("pasid-directory", pasidDir);
    const pdePresent = (pde[0] & 1n) !== 0n;
    const pasidTable = pde[0] & VTD_ADDR_MASK;
    this.#steps.push({
      structure: "pasid-directory",
      tableGpa: pasidDir,
      index: dirIdx,
      entryGpa: pdeGpa,
      entry: pde,
      meaning: pdePresent ? `present, PASID table ${hex(pasidTable)}` : "not present",
    });
    if (!pdePresent) {
      return this.#stop(
        "not-present",
        "pasid-directory",
        `PASID directory entry ${dirIdx} not present`,
      );
    }
    return pasidTable;
  }

  /** PASID table entry, 64 bytes, by PASID[5:0] (§9.6). */
  #pasidEntry(pasidTable: bigint, pasid: number): PagingPlan | VtdWalkResult {
    const pteIdx = pasid & 0x3f;
    const peGpa = pasidTable + BigInt(pteIdx * 64);
    const pe = this.#rd.words(peGpa, 8);
    if (pe === undefined) return this.#missing("pasid-table", pasidTable);
    const pePresent = (pe[0] & 1n) !== 0n;
    const aw = Number((pe[0] >> 2n) & 7n);
    const pgtt = Number((pe[0] >> 6n) & 7n);
    const flpm = Number((pe[2] >> 2n) & 3n);
    const domainId = Number(pe[1] & 0xffffn);
    this.#steps.push({
      structure: "pasid-table",
      tableGpa: pasidTable,
      index: pteIdx,
      entryGpa: peGpa,
      entry: pe,
      meaning: pePresent
        ? `present, PGTT ${pgtt}, AW ${aw}, domain ${domainId}, second-level table ` +
          `${hex(pe[0] & VTD_ADDR_MASK)}, FLPM ${flpm}, first-level table ` +
          hex(pe[2] & VTD_ADDR_MASK)
        : "not present",
    });
    if (!pePresent) {
      return this.#stop("not-present", "pasid-table", `PASID ${pasid} entry is not present`);
    }
    if (pgtt === VTD_PGTT_PASS_THROUGH) {
      return passThrough(this.#req.iova, "scalable", domainId, this.#steps);
    }
    if (pgtt === VTD_PGTT_NESTED) {
      return this.#stop(
        "unsupported",
        "pasid-table",
        "nested translation (PGTT 011) is not modelled",
      );
    }
    if (pgtt === VTD_PGTT_FIRST_LEVEL) {
      if (flpm > 1) return this.#stop("reserved", "pasid-table", `FLPM ${flpm} is reserved`);
      return {
        domainId,
        root: pe[2] & VTD_ADDR_MASK,
        levels: flpm === 0 ? 4 : 5,
        firstLevel: true,
      };
    }
    if (pgtt === VTD_PGTT_SECOND_LEVEL) {
      if (aw < 1 || aw > 3) {
        return this.#stop(
          "reserved",
          "pasid-table",
          `PASID entry AW ${aw} is reserved (use 1, 2 or 3)`,
        );
      }
      return { domainId, root: pe[0] & VTD_ADDR_MASK, levels: aw + 2, firstLevel: false };
    }
    return this.#stop("reserved", "pasid-table", `PGTT ${pgtt} is reserved`);
  }

  /** Paging structures (§9.7 first-level, §9.8 second-level). */
  #paging(plan: PagingPlan): VtdWalkResult {
    const { levels, firstLevel, domainId } = plan;
    const iova = this.#req.iova;
    const structure: VtdStructure = firstLevel ? "first-level" : "second-level";
    const width = 12 + 9 * levels;
    if (firstLevel) {
      // First-level IOVAs are canonical: bits above width-1 repeat bit width-1 (§3.6).
      const top = iova >> BigInt(width - 1);
      const ones = (1n << BigInt(64 - width + 1)) - 1n;
      if (top !== 0n && top !== ones) {
        return this.#stop(
          "beyond-address-width",
          structure,
          `IOVA is not canonical for ${levels}-level (${width}-bit) first-level paging`,
          levels,
        );
      }
    } else if (iova >> BigInt(width) !== 0n) {
      return this.#stop(
        "beyond-address-width",
        structure,
        `IOVA is beyond the ${width}-bit address width (${levels}-level tables)`,
        levels,
      );
    }
    let table = plan.root;
    let read = true, write = true;
    for (let level = levels; level >= 1; level--) {
      const shift = BigInt(12 + 9 * (level - 1));
      const idx = Number((iova >> shift) & 0x1ffn);
      const eGpa = table + BigInt(idx * 8);
      const w = this.#rd.words(eGpa, 1);
      if (w === undefined) return this.#missing(structure, table, level);
      const e = w[0];
      const present = firstLevel ? (e & VTD_PTE_R) !== 0n : (e & (VTD_PTE_R | VTD_PTE_W)) !== 0n;
      const leaf = present && (level === 1 || ((e & VTD_PTE_PS) !== 0n && level <= 3));
      const addr = e & VTD_ADDR_MASK;
      const perms = firstLevel
        ? `P${e & VTD_PTE_W ? " R/W" : " read-only"}`
        : `${e & VTD_PTE_R ? "R" : "-"}${e & VTD_PTE_W ? "W" : "-"}`;
      this.#steps.push({
        structure,
        level,
        tableGpa: table,
        index: idx,
        entryGpa: eGpa,
        entry: w,
        meaning: !present
          ? "not present"
          : leaf
          ? `${perms}, ${level === 1 ? "4 KiB" : level === 2 ? "2 MiB" : "1 GiB"} page ${hex(addr)}`
          : `${perms}, next table ${hex(addr)}`,
      });
      if (!present) {
        return this.#stop(
          "not-present",
          structure,
          `entry ${idx} of table ${hex(table)} not present`,
          level,
        );
      }
      if (level > 3 && (e & VTD_PTE_PS) !== 0n) {
        return this.#stop(
          "reserved",
          structure,
          `PS set at level ${level} (no pages above 1 GiB)`,
          level,
        );
      }
      if (firstLevel) write = write && (e & VTD_PTE_W) !== 0n;
      else {
        read = read && (e & VTD_PTE_R) !== 0n;
        write = write && (e & VTD_PTE_W) !== 0n;
      }
      if (leaf) {
        const size = 1n << shift;
        const pageGpa = addr & ~(size - 1n);
        return {
          ok: true,
          iova,
          gpa: pageGpa + (iova & (size - 1n)),
          pageGpa,
          pageSize: Number(size),
          read,
          write,
          mode: this.#scalable ? "scalable" : "legacy",
          translation: firstLevel ? "first-level" : "second-level",
          domainId,
          steps: this.#steps,
        };
      }
      table = addr;
    }
    // Unreachable: level 1 is always a leaf when present.
    return this.#stop("reserved", structure, "walk ended without a leaf");
  }
}

function passThrough(
  iova: bigint,
  mode: "legacy" | "scalable",
  domainId: number,
  steps: VtdWalkStep[],
): VtdWalkOk {
  return {
    ok: true,
    iova,
    gpa: iova,
    pageGpa: iova & ~(PAGE - 1n),
    pageSize: GUEST_PAGE_SIZE,
    read: true,
    write: true,
    mode,
    translation: "pass-through",
    domainId,
    steps,
  };
}

/**
 * Formats a walk as text lines, one per level visited and a last line with the result, for
 * `inspect --translate` and for error messages.
 */
export function formatVtdWalk(r: VtdWalkResult): string[] {
  const lines = r.steps.map((s) => {
    const name = s.level !== undefined ? `${s.structure} L${s.level}` : s.structure;
    const words = s.entry.map((w) => "0x" + w.toString(16).padStart(16, "0")).join(" ");
    return `${name.padEnd(16)} table ${hex(s.tableGpa)} [${s.index}] @ ${hex(s.entryGpa)} = ` +
      `${words}: ${s.meaning}`;
  });
  if (r.ok) {
    lines.push(
      `=> GPA ${hex(r.gpa)} (${r.translation}, ${r.mode} mode, domain ${r.domainId}, page ` +
        `${hex(r.pageGpa)} of ${r.pageSize} B, ${r.read ? "R" : "-"}${r.write ? "W" : "-"})`,
    );
  } else lines.push(`=> stopped (${r.reason}): ${r.message}`);
  return lines;
}
