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
  SplitRingBuilder,
  type U64,
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

/** A split device queue over rings a {@link SplitRingBuilder} writes (the test plays the driver). */
export class Rig extends SplitRingBuilder {
  readonly device: SplitDeviceQueue;

  constructor(o: RigOptions = {}) {
    const size = o.size ?? 8;
    super(o.memory ?? GuestMemory.flat(1 << 20), size, { desc: DESC, avail: AVAIL, used: USED });
    this.device = new SplitDeviceQueue({
      memory: this.memory,
      dma: o.dma ?? new IdentityAddressSpace(),
      size,
      addresses: this.addresses,
      features: o.features ?? 0n,
      policy: o.policy,
    });
  }
}
