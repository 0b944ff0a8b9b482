/**
 * An independent, deliberately simple reference decoder of one packed-ring list (spec §2.8.6,
 * §2.8.7), for fuzz oracles. It reads guest memory field by field with exact bigint addresses,
 * assumes identity DMA over memory from GPA 0 (one region, or adjacent regions split at
 * `splits`), and returns either nothing available, the
 * chain the bytes describe, or every rule violation it met before it had to stop.
 * @module
 */

import type { GuestMemory } from "../../src/memory/mod.ts";
import type { ChainPolicy } from "../../src/virtio/mod.ts";

/** What the reference makes of the ring at one position. */
export type RefResult =
  | { kind: "none" }
  | {
    kind: "chain";
    id: number;
    slots: number;
    readable: [number, number][];
    writable: [number, number][];
    /** Ranges the device may legitimately touch: indirect tables and buffers. */
    named: [number, number][];
  }
  | { kind: "error"; codes: Set<string> };

/** Input of {@link refDecode}. */
export interface RefEnv {
  memory: GuestMemory;
  memSize: number;
  ringGpa: number;
  size: number;
  pos: number;
  wrap: number;
  outstandingSlots: number;
  indirect: boolean;
  policy: ChainPolicy;
  /**
   * GPAs where one guest memory region ends and the next (adjacent) begins: a buffer across one
   * is one segment per region, an indirect table across one is not reachable (one region holds
   * a table). Absent: one region.
   */
  splits?: readonly number[];
}

const KNOWN = 0x8087;

function isAvail(f: number, w: number): boolean {
  const a = (f >> 7) & 1, u = (f >> 15) & 1;
  return a !== u && a === w;
}

/** Decodes the list at `env.pos` / `env.wrap`. */
export function refDecode(env: RefEnv): RefResult {
  const m = env.memory;
  const at = (slot: number) => env.ringGpa + 16 * slot;
  const head = m.readU16(at(env.pos) + 14);
  if (!isAvail(head, env.wrap)) return { kind: "none" };
  const codes = new Set<string>();
  const descs: { addr: bigint; len: number; write: boolean }[] = [];
  const named: [number, number][] = [];
  let p = env.pos, w = env.wrap, n = 0, id = 0;
  let total = 0n;
  let segments = 0;
  let completed = false;
  const buffer = (addr: bigint, len: number, write: boolean) => {
    if (len === 0) {
      if (env.policy.zeroLength === "reject") codes.add("DESC_ZERO_LENGTH");
      return;
    }
    total += BigInt(len);
    if (total > 0xffff_ffffn) codes.add("CHAIN_TOO_MANY_BYTES");
    if (addr + BigInt(len) > 2n ** 64n) codes.add("DESC_ADDR_WRAP");
    else if (addr + BigInt(len) > BigInt(env.memSize)) {
      codes.add("DESC_BUFFER_FAULT");
      // The device takes the backed pieces (one segment per region) before the unbacked one.
      for (const b of env.splits ?? []) if (addr < BigInt(b)) segments++;
    } else {
      // One segment per region the buffer touches.
      let a = Number(addr);
      const end = a + len;
      for (const b of env.splits ?? []) {
        if (a < b && b < end) {
          descs.push({ addr: BigInt(a), len: b - a, write });
          segments++;
          a = b;
        }
      }
      descs.push({ addr: BigInt(a), len: end - a, write });
    }
    segments++;
  };
  let seenW = false;
  for (;;) {
    n++;
    if (n > env.size) {
      codes.add("DESC_CHAIN_LOOP");
      break;
    }
    const f = m.readU16(at(p) + 14);
    if (n > 1 && !isAvail(f, w)) {
      codes.add("PACKED_CHAIN_UNAVAILABLE");
      break;
    }
    const addr = BigInt(m.readU64(at(p)));
    const len = m.readU32(at(p) + 8);
    id = m.readU16(at(p) + 12);
    if (env.policy.unknownFlags === "reject" && (f & ~KNOWN) !== 0) codes.add("DESC_UNKNOWN_FLAGS");
    if (f & 4) {
      if (n > 1) {
        codes.add("PACKED_INDIRECT_IN_LIST");
        break;
      }
      if ((f & 1) && env.policy.indirectWithNext === "reject") {
        codes.add("INDIRECT_WITH_NEXT");
        break;
      }
      const before = codes.size;
      if (!env.indirect) codes.add("INDIRECT_NOT_NEGOTIATED");
      if (len === 0) codes.add("INDIRECT_LEN_ZERO");
      if (len % 16 !== 0) codes.add("INDIRECT_LEN_MISALIGNED");
      if (len / 16 > env.size) codes.add("INDIRECT_TABLE_TOO_LONG");
      if (addr + BigInt(len) > 2n ** 64n) codes.add("DESC_ADDR_WRAP");
      else if (addr + BigInt(len) > BigInt(env.memSize)) codes.add("INDIRECT_TABLE_FAULT");
      else if ((env.splits ?? []).some((b) => addr < BigInt(b) && BigInt(b) < addr + BigInt(len))) {
        codes.add("INDIRECT_TABLE_FAULT");
      }
      if (codes.size > before) break;
      const t = Number(addr);
      named.push([t, len]);
      let tw = false;
      for (let i = 0; i < len / 16; i++) {
        const e = t + 16 * i;
        const ef = m.readU16(e + 14);
        if (env.policy.unknownFlags === "reject" && (ef & ~KNOWN) !== 0) {
          codes.add("DESC_UNKNOWN_FLAGS");
        }
        if (ef & 4) codes.add("INDIRECT_NESTED");
        const write = (ef & 2) !== 0;
        if (write) tw = true;
        else if (tw) codes.add("DESC_READABLE_AFTER_WRITABLE");
        buffer(BigInt(m.readU64(e)), m.readU32(e + 8), write);
      }
      completed = true;
      break;
    }
    const write = (f & 2) !== 0;
    if (write) seenW = true;
    else if (seenW) codes.add("DESC_READABLE_AFTER_WRITABLE");
    buffer(addr, len, write);
    if (!(f & 1)) {
      completed = true;
      break;
    }
    p++;
    if (p === env.size) {
      p = 0;
      w ^= 1;
    }
  }
  // Checks the device makes once the list is complete: true violations whatever else was found.
  if (completed && env.outstandingSlots + n > env.size) codes.add("HEAD_IN_USE");
  if (segments > env.policy.maxSegments) codes.add("CHAIN_TOO_MANY_SEGMENTS");
  if (codes.size > 0) return { kind: "error", codes };
  const readable: [number, number][] = [];
  const writable: [number, number][] = [];
  for (const d of descs) {
    (d.write ? writable : readable).push([Number(d.addr), d.len]);
    named.push([Number(d.addr), d.len]);
  }
  return { kind: "chain", id, slots: n, readable, writable, named };
}
