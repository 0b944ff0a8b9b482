/**
 * A driver-side ring builder for tests, fuzz targets, benchmarks and examples (the idea of
 * rust-vmm virtio-queue's `mock.rs`): writes split descriptors, indirect tables, available and
 * used ring entries, event suppression fields and packed descriptors with wrap counters at the
 * spec's exact offsets over a {@link GuestMemory}, with no engine code and no checks, so a caller
 * can build legal rings and hostile ones alike (a device under test sees only guest memory).
 *
 * Offsets: split descriptor 16 bytes `{le64 addr, le32 len, le16 flags, le16 next}` (§2.7.5);
 * available ring `{le16 flags, le16 idx, le16 ring[size], le16 used_event}` (§2.7.6); used ring
 * `{le16 flags, le16 idx, {le32 id, le32 len}[size], le16 avail_event}` (§2.7.8); packed
 * descriptor `{le64 addr, le32 len, le16 id, le16 flags}` (§2.8.13); event suppression
 * structure `{le16 off_wrap, le16 flags}` (§2.8.14).
 *
 * @example Build a one-descriptor split chain and pop it
 * ```ts
 * import { GuestMemory } from "../memory/mod.ts";
 * import { IdentityAddressSpace } from "../dma/mod.ts";
 * import { SplitDeviceQueue, SplitRingBuilder } from "./mod.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const memory = GuestMemory.flat(1 << 16);
 * const ring = new SplitRingBuilder(memory, 8, { desc: 0x0, avail: 0x1000, used: 0x2000 });
 * ring.desc(0, 0x8000, 64, 0).offer(0);
 * const device = new SplitDeviceQueue({
 *   memory,
 *   dma: new IdentityAddressSpace(),
 *   size: 8,
 *   addresses: ring.addresses,
 *   features: 0n,
 * });
 * assertEquals(device.pop()?.readableBytes, 64);
 * ```
 *
 * @module
 */

import type { GuestMemory } from "../memory/guest_memory.ts";
import type { U64 } from "../memory/u64.ts";
import type { VirtqueueAddresses } from "./queue.ts";
import { splitAvailEventOffset, splitUsedEventOffset } from "./split/layout.ts";

/** Writes split descriptor `index` of the table at `tableGpa` (spec §2.7.5), fields as given. */
export function writeSplitDescriptor(
  memory: GuestMemory,
  tableGpa: number,
  index: number,
  addr: U64,
  len: number,
  flags: number,
  next = 0,
): void {
  const g = tableGpa + 16 * index;
  const a = BigInt(addr);
  memory.writeU32(g, Number(a & 0xffff_ffffn));
  memory.writeU32(g + 4, Number((a >> 32n) & 0xffff_ffffn));
  memory.writeU32(g + 8, len >>> 0);
  memory.writeU16(g + 12, flags & 0xffff);
  memory.writeU16(g + 14, next & 0xffff);
}

/** One split descriptor as raw fields (for {@link SplitRingBuilder.indirectTable}). */
export interface RawSplitDescriptor {
  /** le64 buffer address. */
  addr: U64;
  /** le32 length in bytes. */
  len: number;
  /** le16 flags. */
  flags: number;
  /** le16 next index (default 0). */
  next?: number;
}

/** GPAs of the three split ring areas. */
export interface SplitRingAreas {
  /** Descriptor table (16-byte aligned for a legal ring). */
  desc: number;
  /** Available ring (driver area). */
  avail: number;
  /** Used ring (device area). */
  used: number;
}

/**
 * Plays the driver of a split ring over guest memory (spec §2.7): every method writes the spec's
 * fields at their exact offsets and nothing else, so hostile values pass through unchanged.
 */
export class SplitRingBuilder {
  /** The driver's free-running available `idx` (u16) last published. */
  availIdx = 0;

  /** Guest memory holding the rings. */
  readonly memory: GuestMemory;
  /** Queue Size. */
  readonly size: number;
  /** GPAs of the descriptor table, available ring and used ring. */
  readonly areas: SplitRingAreas;

  /**
   * Creates a builder over rings the caller placed in `memory`; writes nothing yet.
   * @param memory guest memory holding the rings.
   * @param size Queue Size.
   * @param areas GPAs of the descriptor table, available ring and used ring.
   */
  constructor(memory: GuestMemory, size: number, areas: SplitRingAreas) {
    this.memory = memory;
    this.size = size;
    this.areas = areas;
  }

  /** The ring's areas as device queue addresses (identity DMA: bus address = GPA). */
  get addresses(): VirtqueueAddresses {
    return { descAddr: this.areas.desc, driverAddr: this.areas.avail, deviceAddr: this.areas.used };
  }

  /** Writes descriptor `i` of the table at `table` (default the descriptor table). */
  desc(i: number, addr: U64, len: number, flags: number, next = 0, table = this.areas.desc): this {
    writeSplitDescriptor(this.memory, table, i, addr, len, flags, next);
    return this;
  }

  /** Writes an indirect table at `gpa`: entry `k` of `entries` at `gpa + 16k` (§2.7.5.3). */
  indirectTable(gpa: number, entries: readonly RawSplitDescriptor[]): this {
    entries.forEach((d, k) =>
      writeSplitDescriptor(this.memory, gpa, k, d.addr, d.len, d.flags, d.next ?? 0)
    );
    return this;
  }

  /** Puts `heads` in the available ring at the driver's positions and publishes the new idx. */
  offer(...heads: number[]): this {
    for (const h of heads) {
      this.memory.writeU16(this.areas.avail + 4 + 2 * (this.availIdx % this.size), h);
      this.availIdx = (this.availIdx + 1) & 0xffff;
    }
    this.memory.writeU16(this.areas.avail + 2, this.availIdx);
    return this;
  }

  /** Publishes available `idx` = `v` (u16) without writing ring entries. */
  setAvailIdx(v: number): this {
    this.availIdx = v & 0xffff;
    this.memory.writeU16(this.areas.avail + 2, this.availIdx);
    return this;
  }

  /** Writes the available ring `flags` (e.g. `VIRTQ_AVAIL_F_NO_INTERRUPT`, §2.7.6). */
  setAvailFlags(flags: number): this {
    this.memory.writeU16(this.areas.avail, flags);
    return this;
  }

  /** Writes `used_event` (after `avail->ring[size]`, §2.7.10). */
  setUsedEvent(v: number): this {
    this.memory.writeU16(this.areas.avail + splitUsedEventOffset(this.size), v);
    return this;
  }

  /** Reads the used ring `flags`. */
  usedFlags(): number {
    return this.memory.readU16(this.areas.used);
  }

  /** Reads the used `idx`. */
  usedIdx(): number {
    return this.memory.readU16(this.areas.used + 2);
  }

  /** Reads used element `i` as `[id, len]`. */
  usedElem(i: number): [number, number] {
    const g = this.areas.used + 4 + 8 * i;
    return [this.memory.readU32(g), this.memory.readU32(g + 4)];
  }

  /** Reads `avail_event` (after `used->ring[size]`, §2.7.10). */
  availEvent(): number {
    return this.memory.readU16(this.areas.used + splitAvailEventOffset(this.size));
  }
}

/** One packed descriptor as raw fields; `addr` is an exact bigint. */
export interface RawPackedDescriptor {
  /** le64 buffer address. */
  addr: bigint;
  /** le32 length in bytes. */
  len: number;
  /** le16 Buffer ID. */
  id: number;
  /** le16 flags (with AVAIL/USED per the wrap counter: `packedAvailFlags`). */
  flags: number;
}

/**
 * A packed descriptor ring of `size` descriptors at `gpa` (spec §2.8.13), written and read with
 * plain memory accesses: plays a driver (or a device) that may break every rule.
 */
export class PackedRingBuilder {
  /** Guest memory holding the ring. */
  readonly memory: GuestMemory;
  /** GPA of descriptor 0. */
  readonly gpa: number;
  /** Queue Size. */
  readonly size: number;

  /**
   * Creates a builder over a ring the caller placed in `memory`; writes nothing yet.
   * @param memory guest memory holding the ring.
   * @param gpa GPA of descriptor 0.
   * @param size Queue Size.
   */
  constructor(memory: GuestMemory, gpa: number, size: number) {
    this.memory = memory;
    this.gpa = gpa;
    this.size = size;
  }

  /** Writes descriptor `slot`: addr, len, id, then flags last (§2.8.21 ordering). */
  write(slot: number, d: RawPackedDescriptor): void {
    const at = this.gpa + 16 * slot;
    this.memory.writeU64(at, d.addr);
    this.memory.writeU32(at + 8, d.len);
    this.memory.writeU16(at + 12, d.id);
    this.memory.writeU16(at + 14, d.flags);
  }

  /** Reads descriptor `slot`. */
  read(slot: number): RawPackedDescriptor {
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

/**
 * Writes a packed event suppression structure at `gpa` (spec §2.8.14): `off_wrap` (offset |
 * wrap << 15, see `packedEventOffWrap`), then `flags` (`RING_EVENT_FLAGS_*`).
 */
export function writePackedEvent(
  memory: GuestMemory,
  gpa: number,
  offWrap: number,
  flags: number,
): void {
  memory.writeU16(gpa, offWrap);
  memory.writeU16(gpa + 2, flags);
}
