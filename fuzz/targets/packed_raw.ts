/**
 * Raw packed-ring access for hostile fuzz targets and tests: writes and reads descriptors and
 * event suppression structures byte by byte through {@link GuestMemory}, with no engine code, so
 * a target can play a driver or a device that breaks every rule (spec §2.8.13, §2.8.14).
 * @module
 */

import type { GuestMemory } from "../../src/memory/mod.ts";

/** One packed descriptor as raw fields; `addr` is an exact bigint. */
export interface RawPackedDesc {
  /** le64 buffer address. */
  addr: bigint;
  /** le32 length in bytes. */
  len: number;
  /** le16 Buffer ID. */
  id: number;
  /** le16 flags. */
  flags: number;
}

/** A packed ring of `size` descriptors at `gpa`, accessed with plain memory reads and writes. */
export class RawPackedRing {
  /**
   * @param memory guest memory holding the ring.
   * @param gpa GPA of descriptor 0.
   * @param size Queue Size.
   */
  constructor(readonly memory: GuestMemory, readonly gpa: number, readonly size: number) {}

  /** Writes descriptor `slot` (addr, len, id, then flags last). */
  write(slot: number, d: RawPackedDesc): void {
    const at = this.gpa + 16 * slot;
    this.memory.writeU64(at, d.addr);
    this.memory.writeU32(at + 8, d.len);
    this.memory.writeU16(at + 12, d.id);
    this.memory.writeU16(at + 14, d.flags);
  }

  /** Reads descriptor `slot`. */
  read(slot: number): RawPackedDesc {
    const at = this.gpa + 16 * slot;
    return {
      addr: BigInt(this.memory.readU64(at)),
      len: this.memory.readU32(at + 8),
      id: this.memory.readU16(at + 12),
      flags: this.memory.readU16(at + 14),
    };
  }

  /** Writes only the flags of descriptor `slot`. */
  writeFlags(slot: number, flags: number): void {
    this.memory.writeU16(this.gpa + 16 * slot + 14, flags);
  }
}

/** Writes an event suppression structure (`desc` = off | wrap << 15, then `flags`). */
export function writeEvent(memory: GuestMemory, gpa: number, offWrap: number, flags: number) {
  memory.writeU16(gpa, offWrap);
  memory.writeU16(gpa + 2, flags);
}

/** Flags bits making a descriptor available in lap `wrap` (AVAIL = wrap, USED = !wrap). */
export function availBits(wrap: number): number {
  return wrap ? 0x80 : 0x8000;
}

/** Flags bits marking a descriptor used in lap `wrap` (AVAIL = USED = wrap). */
export function usedBits(wrap: number): number {
  return wrap ? 0x8080 : 0;
}
