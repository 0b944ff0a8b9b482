/**
 * Hex dumps of guest memory for the inspector, in QEMU `xp`-like lines; bytes of pages that are
 * not in the image print as `??` (absent is not zero).
 * @module
 */

import type { GuestMemory } from "../memory/guest_memory.ts";

/**
 * Formats `length` bytes at `gpa` as lines of 16 bytes: `GPA: hex bytes  |ascii|`.
 * @param memory guest memory (accesses never throw: absent bytes print as `??`).
 * @param gpa first byte.
 * @param length bytes to dump.
 * @returns the lines.
 */
export function hexDump(memory: GuestMemory, gpa: number, length: number): string[] {
  const lines: string[] = [];
  for (let off = 0; off < length; off += 16) {
    const n = Math.min(16, length - off);
    const hex: string[] = [];
    let ascii = "";
    for (let i = 0; i < n; i++) {
      const a = gpa + off + i;
      if (memory.contains(a, 1)) {
        const b = memory.readU8(a);
        hex.push(b.toString(16).padStart(2, "0"));
        ascii += b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : ".";
      } else {
        hex.push("??");
        ascii += " ";
      }
    }
    lines.push(
      `${(gpa + off).toString(16).padStart(16, "0")}: ${hex.join(" ").padEnd(47)}  |${ascii}|`,
    );
  }
  return lines;
}
