/**
 * Fuzz target `split-hostile-driver`: a hostile driver against the split device queue.
 *
 * Each input builds VALID chains first (direct descriptors, optionally ending in an indirect
 * table), then applies ONE targeted corruption (loops, out-of-range indices, nested / empty /
 * misaligned indirect tables, readable-after-writable, overflowing addr + len, index jumps, ...)
 * and optionally overlays a few raw random bytes on a ring area. Naive random tables are mostly
 * "index out of table"; this shape reaches every check.
 *
 * Oracle: for every pop, the device either returns exactly the chain an independent reference
 * decoder (written here, plain BigInt arithmetic over `GuestMemory` reads) derives from the
 * bytes, or throws the catalogued `VirtqError` the reference predicts, after which it is broken
 * and returns `null`. Loopback copies of returned chains touch only the segments the reference
 * names (checked with `GuestMemory.observer`). Anything else is an {@link OracleFailure}.
 *
 * @module
 */

import {
  type ChainPolicy,
  type DmaAccess,
  DmaFault,
  type DmaTranslation,
  type GuestMemory,
  IdentityAddressSpace,
  SplitDeviceQueue,
  type U64,
  VirtqError,
} from "../../src/mod.ts";
import { type RealRingInput, withRealRingSeeds } from "../support/real_ring_seeds.ts";
import { type FuzzTarget, OracleFailure } from "../target.ts";
import { ScratchMemory } from "../support/scratch_memory.ts";
import { describeRing } from "../support/ring_describe.ts";
import { type ActivationOnlyInput, withActivation } from "../support/activation.ts";
import {
  type HostileDriverInput,
  hostileDriverInputArbitrary,
  hostileDriverInputSchema,
} from "../arbitraries/split_hostile_driver_input.ts";
import { writeSplitDescriptor } from "../../src/virtio/mod.ts";

// --- Memory map ------------------------------------------------------------------------------
const DESC = 0x0; // up to 64 descriptors (1 KiB)
const AVAIL = 0x1000;
const USED = 0x2000;
const TABLES = 0x3000; // indirect tables, 0x400 bytes per chain
const DATA = 0x10000; // buffers; two adjacent regions split at 0x20000
const MEM_END = 0x40000;
const REGION_SPLIT = 0x20000;

export {
  type ChainSpec,
  type Corruption,
  CORRUPTIONS,
  type HostileDriverInput,
} from "../arbitraries/split_hostile_driver_input.ts";

/** Bus offset of the wide window: 2^52 (buffers take the device's wide-address path). */
const WIDE = 2 ** 52;
const WIDE_BUS = 1n << 52n;

/**
 * The device's DMA view in wide runs: bus = GPA + 2^52 (a translating view, as an IOMMU placing
 * guest memory high); a bus address below 2^52 faults (`out-of-window`).
 */
class WideSpace extends IdentityAddressSpace {
  constructor() {
    super("wide-2^52");
  }
  override translate(bus: U64, length: number, access: DmaAccess, out: DmaTranslation): void {
    const b = BigInt(bus);
    if (b < WIDE_BUS) {
      throw new DmaFault("out-of-window", bus, length, access, this.name, "below 2^52");
    }
    const g = b - WIDE_BUS;
    super.translate(g <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(g) : g, length, access, out);
  }
}

// --- Building --------------------------------------------------------------------------------

interface Built {
  memory: GuestMemory;
  features: bigint;
  /** Head of each built chain. */
  heads: number[];
}

function lcg(seed: number): () => number {
  let s = (seed >>> 0) || 1;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s;
  };
}

function hexToBytes(hex: string): Uint8Array {
  const b = new Uint8Array(hex.length >> 1);
  for (let i = 0; i < b.length; i++) b[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return b;
}

/**
 * The memory of every synthetic run, reused (`scratch_memory.ts`): the run writes rings and
 * tables below {@link SCRATCH_FIXED_END} and payload copies (noted through the observer).
 */
const SCRATCH_FIXED_END = DATA >> 2; // 0x4000: descriptors, rings, tables, raw overlays
export const splitHostileDriverScratch = new ScratchMemory([
  { gpa: 0, size: REGION_SPLIT },
  { gpa: REGION_SPLIT, size: MEM_END - REGION_SPLIT },
], SCRATCH_FIXED_END);

/** Where each built chain lies: ring descriptor indices, indirect table, bytes. */
interface ChainLayout {
  heads: number[];
  /** Per chain: ring descriptor indices. */
  ringIdx: number[][];
  /** Per chain (by head position): indirect table base and entry count. */
  tableIdx: number[];
  tableEntries: number[];
  chainBytes: number[];
}

/** Descriptor indices: sequential under IN_ORDER, else a permutation. */
function descriptorOrder(input: HostileDriverInput): number[] {
  const order = Array.from({ length: input.size }, (_, i) => i);
  if (!input.inOrder) {
    const rnd = lcg(input.permSeed);
    for (let i = input.size - 1; i > 0; i--) {
      const j = rnd() % (i + 1);
      [order[i], order[j]] = [order[j], order[i]];
    }
  }
  return order;
}

/** Writes every chain's descriptors (and indirect tables); `off`: bus address offset. */
function writeChains(
  memory: GuestMemory,
  input: HostileDriverInput,
  order: number[],
  off: bigint,
): ChainLayout {
  const size = input.size;
  let nextDesc = 0;
  let data = DATA;
  const out: ChainLayout = {
    heads: [],
    ringIdx: [],
    tableIdx: [],
    tableEntries: [],
    chainBytes: [],
  };
  const heads = out.heads;
  for (let c = 0; c < input.chains.length; c++) {
    const spec = input.chains[c];
    const segs = [
      ...spec.readable.map((n) => [n, 0] as const),
      ...spec.writable.map((n) => [n, 2] as const),
    ];
    if (segs.length === 0) continue;
    const useTable = input.indirect && spec.indirectAt >= 0 && spec.indirectAt < segs.length;
    const nDirect = useTable ? spec.indirectAt + 1 : segs.length;
    if (nextDesc + nDirect > size) break;
    const idx = order.slice(nextDesc, nextDesc + nDirect);
    nextDesc += nDirect;
    const addrs = segs.map(([n]) => {
      const a = data;
      data += n;
      if (data > MEM_END - 0x100) data = DATA;
      return a;
    });
    for (let k = 0; k < nDirect; k++) {
      const last = k === nDirect - 1;
      const nx = last ? 0 : idx[k + 1];
      if (useTable && last) {
        const tbase = TABLES + c * 0x400;
        const entries = segs.length - spec.indirectAt;
        for (let e = 0; e < entries; e++) {
          const [n, w] = segs[spec.indirectAt + e];
          const tl = e === entries - 1;
          writeSplitDescriptor(
            memory,
            tbase,
            e,
            BigInt(addrs[spec.indirectAt + e]) + off,
            n,
            w | (tl ? 0 : 1),
            tl ? 0 : e + 1,
          );
        }
        writeSplitDescriptor(memory, DESC, idx[k], BigInt(tbase) + off, entries * 16, 4, 0);
        out.tableIdx[heads.length] = tbase;
        out.tableEntries[heads.length] = entries;
      } else {
        const [n, w] = segs[k];
        writeSplitDescriptor(
          memory,
          DESC,
          idx[k],
          BigInt(addrs[k]) + off,
          n,
          w | (last ? 0 : 1),
          nx,
        );
      }
    }
    out.ringIdx.push(idx);
    out.chainBytes.push(segs.reduce((a, [n]) => a + n, 0));
    heads.push(idx[0]);
  }
  return out;
}

/** One targeted corruption of the built rings; returns the features (one kind drops one). */
function corrupt(
  memory: GuestMemory,
  input: HostileDriverInput,
  built: ChainLayout,
  features: bigint,
): bigint {
  const size = input.size;
  const { heads, ringIdx, tableIdx, tableEntries, chainBytes } = built;
  const { kind, at, value } = input.corruption;
  const c = heads.length === 0 ? -1 : input.corruption.chain % heads.length;
  const descs = c < 0 ? [] : ringIdx[c];
  const pick = descs.length === 0 ? -1 : descs[at % descs.length];
  const lastD = descs.length === 0 ? -1 : descs[descs.length - 1];
  const rd = (i: number, f: number) => memory.readU32(DESC + 16 * i + f);
  const setFlags = (base: number, i: number, f: number) => memory.writeU16(base + 16 * i + 12, f);
  const flagsOf = (base: number, i: number) => memory.readU16(base + 16 * i + 12);
  const tb = c >= 0 ? tableIdx[c] : undefined;
  const isInd = lastD >= 0 && (flagsOf(DESC, lastD) & 4) !== 0;
  switch (kind) {
    case "none":
      break;
    case "loop":
      if (pick >= 0) {
        setFlags(DESC, lastD, flagsOf(DESC, lastD) | 1);
        memory.writeU16(DESC + 16 * lastD + 14, pick);
      }
      break;
    case "next-oob":
      if (pick >= 0) {
        setFlags(DESC, pick, flagsOf(DESC, pick) | 1);
        memory.writeU16(DESC + 16 * pick + 14, size + (value % 0x100));
      }
      break;
    case "head-oob":
      if (heads.length > 0) {
        memory.writeU16(AVAIL + 4 + 2 * c, size + (value & 0xffff) % (0x10000 - size));
      }
      break;
    case "idx-jump":
      memory.writeU16(AVAIL + 2, (heads.length + size + 1 + (value % 1000)) & 0xffff);
      break;
    case "idx-back":
      memory.writeU16(AVAIL + 2, (0x10000 - 1 - (value % 16)) & 0xffff);
      break;
    case "readable-after-writable":
      if (pick >= 0) setFlags(DESC, pick, flagsOf(DESC, pick) ^ 2);
      break;
    case "addr-wrap":
      if (pick >= 0) {
        memory.writeU32(DESC + 16 * pick + 4, 0xffff_ffff);
        memory.writeU32(DESC + 16 * pick, (0xffff_ffff - (value % 64)) >>> 0);
      }
      break;
    case "addr-unbacked":
      if (pick >= 0) memory.writeU32(DESC + 16 * pick, MEM_END - 8 + (value % 0x1000));
      break;
    case "addr-high":
      if (pick >= 0) memory.writeU32(DESC + 16 * pick + 4, value >>> 0 || 1);
      break;
    case "len-zero":
      if (pick >= 0) memory.writeU32(DESC + 16 * pick + 8, 0);
      break;
    case "len-huge":
      if (pick >= 0) memory.writeU32(DESC + 16 * pick + 8, (0xffff_ffff - (value % 0x10000)) >>> 0);
      break;
    case "ind-nested":
      if (tb !== undefined) setFlags(tb, at % 4, flagsOf(tb, at % 4) | 4);
      break;
    case "ind-len-misaligned":
      if (isInd) memory.writeU32(DESC + 16 * lastD + 8, rd(lastD, 8) + 1 + (value % 15));
      break;
    case "ind-len-zero":
      if (isInd) memory.writeU32(DESC + 16 * lastD + 8, 0);
      break;
    case "ind-too-long":
      if (isInd) memory.writeU32(DESC + 16 * lastD + 8, 16 * (size + 1 + (value % 8)));
      break;
    case "ind-with-next":
      if (isInd) {
        setFlags(DESC, lastD, flagsOf(DESC, lastD) | 1);
        memory.writeU16(DESC + 16 * lastD + 14, value % (size + 1));
      }
      break;
    case "ind-table-unbacked":
      if (isInd) memory.writeU32(DESC + 16 * lastD, MEM_END - 16 + (value % 0x100) * 16);
      break;
    case "ind-write-flag":
      if (isInd) setFlags(DESC, lastD, flagsOf(DESC, lastD) | 2);
      break;
    case "ind-no-feature":
      features &= ~(1n << 28n);
      break;
    case "unknown-flags":
      if (pick >= 0) setFlags(DESC, pick, flagsOf(DESC, pick) | (8 << (value % 13)));
      break;
    case "dup-head":
      if (heads.length > 0) {
        memory.writeU16(AVAIL + 4 + 2 * heads.length, heads[c]);
        memory.writeU16(AVAIL + 2, heads.length + 1);
      }
      break;
    case "flags-xor":
      if (pick >= 0) setFlags(DESC, pick, flagsOf(DESC, pick) ^ (value & 0xffff));
      break;
    case "next-any":
      if (pick >= 0) {
        setFlags(DESC, pick, flagsOf(DESC, pick) | 1);
        memory.writeU16(DESC + 16 * pick + 14, value % (2 * size));
      }
      break;
    default:
      if (tb !== undefined) {
        corruptTable(memory, tb, tableEntries[c], chainBytes[c], kind, at, value);
      }
  }
  return features;
}

/** Builds one run's rings in the scratch memory: chains, available ring, corruption, raw bytes. */
function build(input: HostileDriverInput): Built {
  const memory = splitHostileDriverScratch.memory;
  const size = input.size;
  let features = 0n;
  if (input.indirect) features |= 1n << 28n;
  if (input.inOrder) features |= 1n << 35n;
  if (input.eventIdx) features |= 1n << 29n;
  // Bus addresses: the GPAs, or the GPAs + 2^52 behind the wide window (WIDE_BUS).
  const off = input.wide ? WIDE_BUS : 0n;
  const built = writeChains(memory, input, descriptorOrder(input), off);
  const heads = built.heads;
  for (let i = 0; i < heads.length; i++) memory.writeU16(AVAIL + 4 + 2 * i, heads[i]);
  memory.writeU16(AVAIL + 2, heads.length);
  // Used buffer notifications asked for (§2.7.7): used_event, or avail flags.
  if (input.eventIdx) memory.writeU16(AVAIL + 4 + 2 * size, input.usedEvent);
  else memory.writeU16(AVAIL, input.usedEvent & 1);

  // One targeted corruption.
  features = corrupt(memory, input, built, features);
  if (input.raw !== null) {
    const bytes = hexToBytes(input.raw.hex);
    const base = input.raw.area === "desc" ? DESC : input.raw.area === "avail" ? AVAIL : TABLES;
    const room = input.raw.area === "avail" ? 4 + 2 * size + 2 : 16 * size;
    const off = input.raw.offset % room;
    memory.write(base + off, bytes.subarray(0, Math.max(0, room - off)));
  }
  return { memory, features, heads };
}

/**
 * The `tbl-*` corruptions: the descriptor-table corruptions applied to entry `at` of an indirect
 * table of `entries` entries (at GPA `tb`) of a chain of `bytes` bytes, with the boundary values
 * of each check (see `CORRUPTIONS`).
 */
function corruptTable(
  memory: GuestMemory,
  tb: number,
  entries: number,
  bytes: number,
  kind: string,
  at: number,
  value: number,
): void {
  const e = at % entries;
  const g = tb + 16 * e;
  const flags = memory.readU16(g + 12);
  const setNext = (next: number) => {
    memory.writeU16(g + 12, flags | 1);
    memory.writeU16(g + 14, next & 0xffff);
  };
  switch (kind) {
    case "tbl-loop": {
      const last = tb + 16 * (entries - 1);
      memory.writeU16(last + 12, memory.readU16(last + 12) | 1);
      memory.writeU16(last + 14, e);
      break;
    }
    case "tbl-next-oob":
      setNext([entries, entries + 1, 0xffff, entries + (value % 0x100)][value % 4]);
      break;
    case "tbl-len-zero":
      memory.writeU32(g + 8, 0);
      break;
    case "tbl-len-huge":
      memory.writeU32(g + 8, [0xffff_ffff, 0xffff_fffe, 0x8000_0000, 0x1_0001][value % 4]);
      break;
    case "tbl-bytes-overflow": {
      // The chain's total lands on 2^32 - 1 (legal) or 2^32 (one byte too many).
      const others = bytes - memory.readU32(g + 8);
      const len = 0xffff_ffff - others + (value % 2);
      if (len <= 0xffff_ffff) memory.writeU32(g + 8, len);
      break;
    }
    case "tbl-addr-wrap": {
      // addr + len ends exactly at 2^64 (no wrap) or one byte past it.
      const len = memory.readU32(g + 8) || 1;
      memory.writeU32(g + 8, len);
      memory.writeU32(g + 4, 0xffff_ffff);
      memory.writeU32(g, (0x1_0000_0000 - len + (value % 2)) >>> 0);
      break;
    }
    case "tbl-addr-unbacked":
      memory.writeU32(g + 4, 0);
      memory.writeU32(g, MEM_END - 8 + (value % 16));
      break;
    case "tbl-addr-high":
      memory.writeU32(g + 4, [1, 0x10_0000, 0x0f_ffff, value >>> 0 || 1][value % 4]);
      break;
    case "tbl-readable-after-writable":
      memory.writeU16(g + 12, flags ^ 2);
      break;
    case "tbl-unknown-flags":
      memory.writeU16(g + 12, flags | (8 << (value % 13)));
      break;
    case "tbl-flags-xor":
      memory.writeU16(g + 12, flags ^ (value & 0xffff));
      break;
    case "tbl-next-any":
      setNext(value % (2 * entries));
      break;
  }
}

/** Memory map of the ring image {@link splitHostileImage} returns (byte offsets from 0). */
export const SPLIT_HOSTILE_MAP = {
  desc: DESC,
  avail: AVAIL,
  used: USED,
  tables: TABLES,
  data: DATA,
  end: MEM_END,
} as const;

/**
 * The ring image one input builds (descriptor table, available ring, indirect tables: bytes
 * `[0, SPLIT_HOSTILE_MAP.data)`), with the features it negotiates and the heads it offers, for
 * the device campaign (`fuzz/device/`), which relocates it into a real back-end's guest memory.
 */
export function splitHostileImage(
  input: HostileDriverInput,
): { bytes: Uint8Array; features: bigint; heads: number[] } {
  try {
    const b = build(input);
    const bytes = new Uint8Array(DATA);
    b.memory.read(0, bytes);
    return { bytes, features: b.features, heads: b.heads };
  } finally {
    splitHostileDriverScratch.clean();
  }
}

// --- Reference decoder -----------------------------------------------------------------------

/** A decoded chain: descriptors as read and segments as [gpa, len]. */
interface RefChain {
  head: number;
  descs: [bigint, number, number][]; // addr, len, flags
  readable: [number, number][];
  writable: [number, number][];
  ringDescs: number;
}
type RefResult = { kind: "none" } | { kind: "chain"; chain: RefChain } | {
  kind: "error";
  code: string;
};

/** An independent, deliberately simple split-ring reader (spec §2.7), identity DMA. */
class Reference {
  last = 0;
  nextInOrder = 0;
  inUse = new Set<number>();
  broken = false;
  constructor(
    readonly m: GuestMemory,
    readonly size: number,
    readonly features: bigint,
    readonly policy: ChainPolicy,
    readonly wide = false,
  ) {}

  pop(): RefResult {
    if (this.broken) return { kind: "none" };
    const r = this.popInner();
    if (r.kind === "error") this.broken = true;
    return r;
  }

  private popInner(): RefResult {
    const m = this.m, size = this.size;
    const idx = m.readU16(AVAIL + 2);
    if (idx === this.last) return { kind: "none" };
    if (((idx - this.last) & 0xffff) > size) return err("AVAIL_IDX_JUMP");
    const head = m.readU16(AVAIL + 4 + 2 * (this.last % size));
    if (head >= size) return err("AVAIL_HEAD_OUT_OF_RANGE");
    if (this.inUse.has(head)) return err("HEAD_IN_USE");
    const inOrder = ((this.features >> 35n) & 1n) === 1n;
    const indirectOk = ((this.features >> 28n) & 1n) === 1n;
    if (inOrder && head !== this.nextInOrder) return err("IN_ORDER_VIOLATION");
    const chain: RefChain = { head, descs: [], readable: [], writable: [], ringDescs: 0 };
    let table = -1; // GPA of the indirect table, or -1 for the ring
    let max = size;
    let i = head;
    let count = 0;
    let sawW = false;
    let total = 0;
    for (;;) {
      count++;
      if (count > max) return err("DESC_CHAIN_LOOP");
      const g = (table < 0 ? DESC : table) + 16 * i;
      const addr = BigInt(m.readU32(g)) + (BigInt(m.readU32(g + 4)) << 32n);
      const len = m.readU32(g + 8);
      const flags = m.readU16(g + 12);
      const next = m.readU16(g + 14);
      if (table < 0) chain.ringDescs++;
      chain.descs.push([addr, len, flags]);
      if (this.policy.unknownFlags === "reject" && (flags & ~7) !== 0) {
        return err("DESC_UNKNOWN_FLAGS");
      }
      if (flags & 4) {
        if (table >= 0) return err("INDIRECT_NESTED");
        if (!indirectOk) return err("INDIRECT_NOT_NEGOTIATED");
        if ((flags & 1) && this.policy.indirectWithNext === "reject") {
          return err("INDIRECT_WITH_NEXT");
        }
        if (len === 0) return err("INDIRECT_LEN_ZERO");
        if (len % 16 !== 0) return err("INDIRECT_LEN_MISALIGNED");
        if (len / 16 > size) return err("INDIRECT_TABLE_TOO_LONG");
        if (addr + BigInt(len) > 1n << 64n) return err("DESC_ADDR_WRAP");
        // Behind the wide window, bus = GPA + 2^52 (and nothing below it translates).
        const tg = this.wide ? addr - WIDE_BUS : addr;
        if (tg < 0n) return err("INDIRECT_TABLE_FAULT");
        // The table must be one guest memory region (identity DMA below 2^52).
        if (tg + BigInt(len) > 1n << 52n) return err("INDIRECT_TABLE_FAULT");
        const a = Number(tg);
        const inOne = (a + len <= REGION_SPLIT) || (a >= REGION_SPLIT && a + len <= MEM_END);
        if (!inOne) return err("INDIRECT_TABLE_FAULT");
        table = a;
        max = len / 16;
        i = 0;
        count = 0;
        continue;
      }
      if (len === 0 && this.policy.zeroLength === "reject") return err("DESC_ZERO_LENGTH");
      const w = (flags & 2) !== 0;
      if (w) sawW = true;
      else if (sawW) return err("DESC_READABLE_AFTER_WRITABLE");
      total += len;
      if (total > 0xffff_ffff) return err("CHAIN_TOO_MANY_BYTES");
      if (len > 0) {
        if (addr + BigInt(len) > 1n << 64n) return err("DESC_ADDR_WRAP");
        const g = this.wide ? addr - WIDE_BUS : addr;
        if (g < 0n) return err("DESC_BUFFER_FAULT");
        if (g + BigInt(len) > 1n << 52n) return err("DESC_BUFFER_FAULT");
        let a = Number(g);
        let left = len;
        while (left > 0) {
          if (a >= MEM_END) return err("DESC_BUFFER_FAULT");
          const end = a < REGION_SPLIT ? REGION_SPLIT : MEM_END;
          const n = Math.min(left, end - a);
          if (chain.readable.length + chain.writable.length >= this.policy.maxSegments) {
            return err("CHAIN_TOO_MANY_SEGMENTS");
          }
          (w ? chain.writable : chain.readable).push([a, n]);
          a += n;
          left -= n;
        }
      }
      if (!(flags & 1)) break;
      if (next >= max) return err("DESC_NEXT_OUT_OF_RANGE");
      if (inOrder && next !== (table < 0 ? (i + 1) % size : i + 1)) {
        return err("IN_ORDER_VIOLATION");
      }
      i = next;
    }
    this.last = (this.last + 1) & 0xffff;
    this.inUse.add(head);
    if (inOrder) this.nextInOrder = (head + chain.ringDescs) % size;
    return { kind: "chain", chain };
  }
}

function err(code: string): RefResult {
  return { kind: "error", code };
}

// --- The target ------------------------------------------------------------------------------

function fail(oracle: string, msg: string, cause?: unknown): never {
  throw new OracleFailure(oracle, msg, cause);
}

function checkChainEquals(popped: import("../../src/mod.ts").Chain, ref: RefChain, step: number) {
  const where = `pop ${step}, head ${ref.head}`;
  if (popped.id !== ref.head) fail("chain-mismatch", `${where}: id ${popped.id}`);
  if (popped.descCount !== ref.descs.length) {
    fail(
      "chain-mismatch",
      `${where}: ${popped.descCount} descriptors, reference ${ref.descs.length}`,
    );
  }
  for (let i = 0; i < ref.descs.length; i++) {
    const [addr, len, flags] = ref.descs[i];
    if (
      BigInt(popped.descAddr(i)) !== addr || popped.descLen[i] !== len ||
      popped.descFlags[i] !== flags
    ) {
      fail("chain-mismatch", `${where}: descriptor ${i} differs from the bytes`);
    }
  }
  const cmp = (
    name: string,
    n: number,
    gpa: Float64Array,
    len: Uint32Array,
    want: [number, number][],
  ) => {
    if (n !== want.length) {
      fail("chain-mismatch", `${where}: ${n} ${name} segments, reference ${want.length}`);
    }
    for (let i = 0; i < n; i++) {
      if (gpa[i] !== want[i][0] || len[i] !== want[i][1]) {
        fail(
          "chain-mismatch",
          `${where}: ${name} segment ${i} is [${gpa[i]}, ${len[i]}], reference [${want[i]}]`,
        );
      }
    }
  };
  cmp("readable", popped.readableCount, popped.readableGpa, popped.readableLen, ref.readable);
  cmp("writable", popped.writableCount, popped.writableGpa, popped.writableLen, ref.writable);
  if (popped.ringDescriptors !== ref.ringDescs) {
    fail(
      "chain-mismatch",
      `${where}: ringDescriptors ${popped.ringDescriptors}, reference ${ref.ringDescs}`,
    );
  }
}

function within(gpa: number, n: number, segs: [number, number][]): boolean {
  // [gpa, gpa+n) must be inside one segment (copies never straddle segments).
  return segs.some(([g, l]) => gpa >= g && gpa + n <= g + l);
}

/** Runs one input (exported for tests). */
export function runHostileDriver(input: HostileDriverInput): void {
  try {
    runOn(build(input), input);
  } finally {
    splitHostileDriverScratch.clean();
  }
}

/** Device queues on the scratch memory, by size, features and policy (reset before reuse). */
const queues = new Map<string, SplitDeviceQueue>();

/** Chains the device popped or rejected, over every run in this process (`workDone`). */
let chainsDone = 0;

function runOn(b: Built, input: HostileDriverInput): void {
  const size = input.size;
  const dev = deviceFor(b, input);
  const popped = popChecked(b, input, dev);
  // Completed work: push everything popped (in order) and flush; used idx advances exactly.
  if (dev.broken === null || popped.length > 0) {
    const old = dev.usedIdx;
    for (const c of popped) dev.push(c, 0);
    const notify = dev.flush();
    if (dev.usedIdx !== popped.length) {
      fail("used-idx", `used idx ${dev.usedIdx} after ${popped.length} pushes`);
    }
    if (dev.broken === null && popped.length > 0) {
      checkUsedNotification(b.memory, size, input.eventIdx, old, dev.usedIdx, notify);
    } else if (dev.broken === null && notify) {
      // §2.7.10: a flush that publishes nothing moved used idx by zero: nothing to notify
      fail("notification-decision", "a flush with nothing pushed asked to notify the driver");
    }
  }
  if (dev.broken === null) checkDeviceSleeps(dev, b.memory, size, input.eventIdx);
  else checkQuietWhenInactive(dev, b.memory, size, "broken");
}

/**
 * The device queue for this input: built once per size, features, policy and address space
 * on the scratch memory, else reset and re-activated (oracle `not-ready` in between).
 */
function deviceFor(b: Built, input: HostileDriverInput): SplitDeviceQueue {
  const size = input.size;
  // Queues on the scratch memory are reused across runs: a queue reset (spec §2.1.2) forgets
  // every position, in-flight chain and the broken error, and the rings were rebuilt from zero.
  const p = input.policy;
  const key = `${size}/${b.features}/${p.zeroLength}/${p.indirectWithNext}/${p.unknownFlags}/${
    p.maxSegments ?? ""
  }/${input.wide}`;
  let dev = queues.get(key);
  if (dev === undefined) {
    try {
      dev = new SplitDeviceQueue({
        memory: b.memory,
        dma: input.wide ? new WideSpace() : new IdentityAddressSpace(),
        size,
        addresses: input.wide
          ? { descAddr: DESC + WIDE, driverAddr: AVAIL + WIDE, deviceAddr: USED + WIDE }
          : { descAddr: DESC, driverAddr: AVAIL, deviceAddr: USED },
        features: b.features,
        policy: input.policy,
      });
    } catch (e) {
      fail("activation-failed", `valid ring layout refused: ${e}`, e);
    }
    queues.set(key, dev);
  } else {
    dev.reset();
    // Engines whose reset leaves the queue not ready (spec §2.1.2: no processing after a reset
    // until the driver re-enables the queue): a pop in between must throw QUEUE_NOT_READY and
    // break nothing; then the queue is re-enabled.
    const q = dev as { activate?: () => void; ready?: boolean };
    if (q.ready === false) {
      let code = "none";
      try {
        dev.pop();
      } catch (e) {
        code = e instanceof VirtqError ? e.code : String(e);
      }
      if (code !== "QUEUE_NOT_READY" || dev.broken !== null) {
        fail("not-ready", `pop after reset, before activate: ${code}, broken ${dev.broken}`);
      }
      checkQuietWhenInactive(dev, b.memory, size, "reset");
    }
    q.activate?.();
  }
  return dev;
}

/**
 * Pops until the reference says none (or an error), comparing each outcome and chain with the
 * reference decoder and watching the loopback copy's accesses. @returns the chains popped.
 */
function popChecked(
  b: Built,
  input: HostileDriverInput,
  dev: SplitDeviceQueue,
): import("../../src/mod.ts").Chain[] {
  const ref = new Reference(b.memory, input.size, b.features, input.policy, input.wide);
  const popped: import("../../src/mod.ts").Chain[] = [];
  for (let step = 0; step <= b.heads.length + 1; step++) {
    const want = ref.pop();
    let got: import("../../src/mod.ts").Chain | null;
    try {
      got = dev.pop();
    } catch (e) {
      chainsDone++;
      if (!(e instanceof VirtqError)) fail("uncatalogued-throw", `pop ${step} threw ${e}`, e);
      if (e.side !== "device") fail("wrong-side", `pop ${step} threw ${e.code} (${e.side})`, e);
      if (want.kind !== "error") {
        fail("false-positive", `pop ${step} threw ${e.code}; reference: ${want.kind}`, e);
      }
      if (e.code !== want.code) {
        fail("wrong-code", `pop ${step} threw ${e.code}; reference expects ${want.code}`, e);
      }
      if (dev.broken !== e) fail("not-broken", `queue not broken after ${e.code}`);
      if (dev.pop() !== null) fail("pop-after-broken", `pop returned a chain after ${e.code}`);
      break;
    }
    if (want.kind === "error") {
      fail(
        "missed-error",
        `pop ${step} returned ${got === null ? "null" : "a chain"}; reference: ${want.code}`,
      );
    }
    if (want.kind === "none") {
      if (got !== null) {
        fail("phantom-chain", `pop ${step} returned head ${got.id}; reference: none`);
      }
      break;
    }
    if (got === null) {
      fail("missed-chain", `pop ${step} returned null; reference: head ${want.chain.head}`);
    }
    chainsDone++;
    checkChainEquals(got, want.chain, step);
    // Loopback copy: every bulk access is inside the reference's segments.
    b.memory.observer = {
      onRead: (g, n) => {
        if (!within(g, n, want.chain.readable)) {
          fail("out-of-bounds-read", `read ${n} bytes at ${g}`);
        }
      },
      onWrite: (g, n) => {
        splitHostileDriverScratch.noteWrite(g, n);
        if (!within(g, n, want.chain.writable)) {
          fail("out-of-bounds-write", `write ${n} bytes at ${g}`);
        }
      },
    };
    try {
      got.copyReadableToWritable();
    } finally {
      b.memory.observer = null;
    }
    popped.push(got);
  }
  return popped;
}

/**
 * Oracle `set-notifications` on an inactive queue (§2.1.2, §2.7.10): a broken queue, or one reset
 * and not re-activated, must answer `setNotifications(false)` and `(true)` with false and write
 * neither used `flags` nor `avail_event` (it ends with notifications on, as a reset leaves them).
 */
function checkQuietWhenInactive(
  dev: SplitDeviceQueue,
  m: GuestMemory,
  size: number,
  state: string,
): void {
  const before = [m.readU16(USED), m.readU16(USED + 4 + 8 * size)];
  for (const on of [false, true]) {
    const r = dev.setNotifications(on);
    const now = [m.readU16(USED), m.readU16(USED + 4 + 8 * size)];
    if (r || now[0] !== before[0] || now[1] !== before[1]) {
      fail(
        "set-notifications",
        `${state} queue: setNotifications(${on}) = ${r}, used flags/avail_event ` +
          `${before.join("/")} -> ${now.join("/")}`,
      );
    }
  }
}

/** `vring_need_event` (spec §2.7.10), written apart from the engine's. */
function needEvent(event: number, nw: number, old: number): boolean {
  return ((nw - event - 1) & 0xffff) < ((nw - old) & 0xffff);
}

/**
 * The driver sleeps until notified (spec §2.7.7, §2.7.10): the flush that moved used `idx` from
 * `old` to `nw` must notify exactly when the driver asked, by `used_event` with EVENT_IDX, else
 * by avail `flags` bit 0 clear, as the ring bytes say now.
 */
function checkUsedNotification(
  m: GuestMemory,
  size: number,
  eventIdx: boolean,
  old: number,
  nw: number,
  notify: boolean,
): void {
  const need = eventIdx
    ? needEvent(m.readU16(AVAIL + 4 + 2 * size), nw, old)
    : (m.readU16(AVAIL) & 1) === 0;
  if (need && !notify) {
    fail("lost-notification", `flush moved used idx ${old} -> ${nw}, the driver asked, no notify`);
  }
  if (!need && notify) {
    fail("notification-decision", `flush moved used idx ${old} -> ${nw} and notified unasked`);
  }
}

/**
 * The device goes to sleep (spec §2.7.10): `setNotifications(true)` must report buffers the
 * driver made available past the device's position, and otherwise publish what makes a correct
 * driver notify for its next buffer: `avail_event` equal to avail `idx` with EVENT_IDX, used
 * `flags` without `VIRTQ_USED_F_NO_NOTIFY` else.
 */
function checkDeviceSleeps(
  dev: SplitDeviceQueue,
  m: GuestMemory,
  size: number,
  eventIdx: boolean,
): void {
  const more = dev.setNotifications(true);
  const idx = m.readU16(AVAIL + 2);
  if (more) return;
  if (idx !== dev.lastAvailIdx) {
    fail("lost-notification", `device sleeps at ${dev.lastAvailIdx} with avail idx ${idx}`);
  }
  const asks = eventIdx
    ? needEvent(m.readU16(USED + 4 + 8 * size), (idx + 1) & 0xffff, idx)
    : (m.readU16(USED) & 1) === 0;
  if (!asks) {
    fail("lost-notification", `the sleeping device at avail idx ${idx} asks for no notification`);
  }
}

/** The `split-hostile-driver` target (plus real Linux rings with one corruption, `fuzz/support/real_ring_seeds.ts`). */
export const splitHostileDriver: FuzzTarget<
  HostileDriverInput | ActivationOnlyInput | RealRingInput
> = withRealRingSeeds(
  withActivation<HostileDriverInput>(
    {
      name: "split-hostile-driver",
      description:
        "hostile driver vs split device: valid chains + one targeted corruption, checked against a reference decoder",
      arbitrary: () => hostileDriverInputArbitrary,
      run: runHostileDriver,
      describe: (input) => {
        try {
          const b = build(input);
          return describeRing(b.memory, {
            layout: "split",
            size: input.size,
            features: b.features,
            desc: DESC,
            driver: AVAIL,
            device: USED,
          }, MEM_END);
        } finally {
          splitHostileDriverScratch.clean();
        }
      },
      workUnit: "chains",
      workDone: () => chainsDone,
      encode: (input) => structuredClone(input),
      decode: (json) => hostileDriverInputSchema.parse(json),
    },
    "split",
    splitHostileDriverScratch.memory,
  ),
  "split",
);
