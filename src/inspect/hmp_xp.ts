/**
 * QEMU human-monitor `xp` dumps (`(qemu) xp /16gx 0x2a6c000` then lines
 * `0000000002a6c000: 0x... 0x...`), parsed so a memory image can be checked byte-exact against
 * what QEMU itself read from guest memory (the `*.hmp-info-virtio.txt` captures).
 * @module
 */

import type { GuestMemory } from "../memory/guest_memory.ts";
import { toU64, type U64, u64Compare } from "../memory/u64.ts";

/** One value QEMU printed: its guest-physical address, width in bytes and value. */
export interface XpValue {
  /** GPA of the value. */
  gpa: number;
  /** Width: 1, 2, 4 or 8 bytes (`b`, `h`, `w`, `g`). */
  width: 1 | 2 | 4 | 8;
  /** The value, exact. */
  value: U64;
}

/** One `xp` command and its output. */
export interface XpDump {
  /** The command line as typed, e.g. `xp /16gx 0x2a6c000`. */
  command: string;
  /** Every value printed. */
  values: XpValue[];
}

const WIDTH: Record<string, 1 | 2 | 4 | 8> = { b: 1, h: 2, w: 4, g: 8 };

/**
 * Extracts every `xp` dump of a QEMU monitor transcript (hex format only; other commands are
 * skipped).
 * @param text the transcript.
 */
export function parseHmpXpDumps(text: string): XpDump[] {
  const out: XpDump[] = [];
  let cur: XpDump | null = null;
  let width: 1 | 2 | 4 | 8 = 4;
  for (const line of text.split("\n")) {
    if (line.startsWith("(qemu) ")) {
      cur = null;
      const m = /^\(qemu\) xp \/(\d*)([bhwgx]*)\s+(0x[0-9a-f]+)/i.exec(line);
      if (m && m[2].includes("x")) {
        const unit = m[2].replace("x", "");
        width = unit === "" ? 4 : WIDTH[unit[0]];
        cur = { command: line.slice(7).trim(), values: [] };
        out.push(cur);
      }
      continue;
    }
    if (cur === null) continue;
    const m = /^([0-9a-f]{16}):((?:\s+0x[0-9a-f]+)+)\s*$/i.exec(line);
    if (!m) {
      cur = null;
      continue;
    }
    const base = parseInt(m[1], 16);
    m[2].trim().split(/\s+/).forEach((v, i) => {
      cur!.values.push({ gpa: base + i * width, width, value: toU64(BigInt(v)) });
    });
  }
  return out;
}

/**
 * Compares every value of `dumps` with `memory`.
 * @returns one line per mismatch or unreadable value (empty when the image is byte-exact).
 */
export function checkXpDumps(memory: GuestMemory, dumps: readonly XpDump[]): string[] {
  const bad: string[] = [];
  for (const d of dumps) {
    for (const v of d.values) {
      let ours: U64;
      try {
        ours = v.width === 8
          ? memory.readU64(v.gpa)
          : v.width === 4
          ? memory.readU32(v.gpa)
          : v.width === 2
          ? memory.readU16(v.gpa)
          : memory.readU8(v.gpa);
      } catch (e) {
        bad.push(
          `${d.command}: 0x${v.gpa.toString(16)} not in the image (${(e as Error).message})`,
        );
        continue;
      }
      if (u64Compare(ours, v.value) !== 0) {
        bad.push(`${d.command}: 0x${v.gpa.toString(16)} image ${ours}, QEMU ${v.value}`);
      }
    }
  }
  return bad;
}
