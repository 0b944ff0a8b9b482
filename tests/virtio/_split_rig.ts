/**
 * Test rig: a split device queue over hand-built rings (the tests play a hostile driver).
 * Descriptor table at 0x0, available ring at 0x1000, used ring at 0x2000, data from 0x10000.
 */
import {
  type ChainPolicy,
  type DmaAccess,
  type DmaAddressSpace,
  type DmaTranslation,
  GuestMemory,
  IdentityAddressSpace,
  SplitDeviceQueue,
  type U64,
  u64Hi,
  u64Lo,
} from "../../src/mod.ts";

export const DESC = 0x0;
export const AVAIL = 0x1000;
export const USED = 0x2000;
export const DATA = 0x10000;

/**
 * Identity below DATA (the rings); every bus address at or above DATA maps into a 64 KiB window
 * at DATA, 64 KiB at a time (lets tests describe huge buffers in small memory).
 */
export class AliasSpace implements DmaAddressSpace {
  readonly name = "alias";
  translate(bus: U64, length: number, _a: DmaAccess, out: DmaTranslation): void {
    if (typeof bus === "number" && bus < DATA) {
      out.gpa = bus;
      out.length = Math.min(length, DATA - bus);
      return;
    }
    const off = Number(BigInt(bus) % 0x10000n);
    out.gpa = DATA + off;
    out.length = Math.min(length, 0x10000 - off);
  }
}

export interface RigOptions {
  size?: number;
  features?: bigint;
  policy?: Partial<ChainPolicy>;
  dma?: DmaAddressSpace;
  memory?: GuestMemory;
}

export class Rig {
  readonly memory: GuestMemory;
  readonly size: number;
  readonly device: SplitDeviceQueue;
  availIdx = 0;

  constructor(o: RigOptions = {}) {
    this.size = o.size ?? 8;
    this.memory = o.memory ?? GuestMemory.flat(1 << 20);
    this.device = new SplitDeviceQueue({
      memory: this.memory,
      dma: o.dma ?? new IdentityAddressSpace(),
      size: this.size,
      addresses: { descAddr: DESC, driverAddr: AVAIL, deviceAddr: USED },
      features: o.features ?? 0n,
      policy: o.policy,
    });
  }

  /** Writes descriptor `i` of the table at `table` (default the descriptor table). */
  desc(i: number, addr: U64, len: number, flags: number, next = 0, table = DESC): this {
    const g = table + 16 * i;
    this.memory.writeU32(g, u64Lo(addr));
    this.memory.writeU32(g + 4, u64Hi(addr));
    this.memory.writeU32(g + 8, len);
    this.memory.writeU16(g + 12, flags);
    this.memory.writeU16(g + 14, next);
    return this;
  }

  /** Puts heads in the available ring and publishes the new idx. */
  offer(...heads: number[]): this {
    for (const h of heads) {
      this.memory.writeU16(AVAIL + 4 + 2 * (this.availIdx % this.size), h);
      this.availIdx = (this.availIdx + 1) & 0xffff;
    }
    this.memory.writeU16(AVAIL + 2, this.availIdx);
    return this;
  }

  setAvailIdx(v: number): void {
    this.availIdx = v & 0xffff;
    this.memory.writeU16(AVAIL + 2, this.availIdx);
  }

  usedIdx(): number {
    return this.memory.readU16(USED + 2);
  }
  usedElem(i: number): [number, number] {
    return [this.memory.readU32(USED + 4 + 8 * i), this.memory.readU32(USED + 8 + 8 * i)];
  }
}
