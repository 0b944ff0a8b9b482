/**
 * Reading a packed virtqueue (spec §2.8) straight from a memory image: the descriptor ring's
 * AVAIL/USED bits, the two event suppression structures, the wrap counters inferred from the
 * ring, and the chains our device would pop, decoded with our device-side rules.
 *
 * Layout (spec §2.8.13, §2.8.10): descriptor slot `i` at `desc + 16 i` (`le64 addr`, `le32 len`,
 * `le16 id`, `le16 flags`); an event suppression structure is `le16 off_wrap` (bits 0..14
 * descriptor offset, bit 15 wrap counter) then `le16 flags` (0 enable, 1 disable, 2 desc).
 *
 * Wrap counters are device/driver private state that memory does not hold. They are inferred
 * (see {@link inferPackedUsedPosition}): a slot whose AVAIL and USED bits are equal was last
 * written by the device as a used descriptor (§2.8.1: the driver always writes AVAIL != USED), so
 * used slots before the device's used position carry its current used wrap counter and those at
 * or after it carry the inverse.
 *
 * @module
 */

import type { GuestMemory } from "../memory/guest_memory.ts";
import type { DmaAddressSpace } from "../dma/types.ts";
import { DmaTranslation, translateContiguous } from "../dma/types.ts";
import { DMA_ACCESS_READ } from "../dma/errors.ts";
import type { U64 } from "../memory/u64.ts";
import {
  VIRTQ_DESC_F_AVAIL,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_USED,
  VIRTQ_DESC_SIZE,
} from "../virtio/constants.ts";
import { hasFeature, VIRTIO_F_INDIRECT_DESC } from "../virtio/features.ts";
import {
  indirectDescriptorRule,
  indirectEntryRule,
  indirectInListRule,
  RULE_OK,
  ruleDetail,
  u64Words,
} from "../virtio/rules.ts";
import {
  addBufferDescriptor,
  type DecodedChain,
  type DecodedDescriptor,
  decodeError,
  newDecodedChain,
} from "./decoded_chain.ts";

/** A packed event suppression structure (spec §2.8.10). */
export interface PackedEventSuppression {
  /** Raw `off_wrap`. */
  offWrap: number;
  /** Descriptor ring offset (bits 0..14). */
  off: number;
  /** Wrap counter (bit 15). */
  wrap: number;
  /** Raw `flags`: 0 `RING_EVENT_FLAGS_ENABLE`, 1 `DISABLE`, 2 `DESC`, 3 reserved. */
  flags: number;
}

/** Inputs to read a packed queue. */
export interface PackedViewOptions {
  /** Guest memory (the image). */
  memory: GuestMemory;
  /** Device DMA view. */
  dma: DmaAddressSpace;
  /** Guest RAM size in bytes. */
  ramSize: number;
  /** Queue Size. */
  size: number;
  /** Descriptor ring bus address. */
  descAddr: U64;
  /** Driver event suppression bus address (driver area). */
  driverAddr: U64;
  /** Device event suppression bus address (device area). */
  deviceAddr: U64;
  /** Negotiated features. */
  features: bigint;
}

/** A slot's state from its AVAIL/USED bits. */
export type PackedSlotBits = { avail: number; used: number };

/** A reader of one packed queue's image. */
export class PackedRingView {
  /** Options it was built with. */
  readonly opts: PackedViewOptions;
  /** GPAs of the three areas. */
  readonly gpa: { desc: number; driver: number; device: number };
  /** Driver event suppression (written by the driver, read by the device). */
  readonly driverEvent: PackedEventSuppression;
  /** Device event suppression (written by the device, read by the driver). */
  readonly deviceEvent: PackedEventSuppression;

  /**
   * Translates the areas and reads the event suppression structures.
   * @throws DmaFault / MemoryFault when an area is unreachable or not captured.
   */
  constructor(opts: PackedViewOptions) {
    this.opts = opts;
    const out = new DmaTranslation();
    const n = VIRTQ_DESC_SIZE * opts.size;
    this.gpa = {
      desc: translateContiguous(opts.dma, opts.descAddr, n, DMA_ACCESS_READ, out),
      driver: translateContiguous(opts.dma, opts.driverAddr, 4, DMA_ACCESS_READ, out),
      device: translateContiguous(opts.dma, opts.deviceAddr, 4, DMA_ACCESS_READ, out),
    };
    opts.memory.resolve(this.gpa.desc, n);
    this.driverEvent = readEvent(opts.memory, this.gpa.driver);
    this.deviceEvent = readEvent(opts.memory, this.gpa.device);
  }

  /** Descriptor at ring slot `slot`; `next` holds the buffer `id`. */
  descriptor(slot: number): DecodedDescriptor {
    return readPackedDesc(this.opts.memory, this.gpa.desc + VIRTQ_DESC_SIZE * slot, slot, false);
  }

  /** AVAIL/USED bits of every slot. */
  slotBits(): PackedSlotBits[] {
    const out: PackedSlotBits[] = [];
    for (let i = 0; i < this.opts.size; i++) {
      const f = this.opts.memory.readU16(this.gpa.desc + VIRTQ_DESC_SIZE * i + 14);
      out.push({ avail: f & VIRTQ_DESC_F_AVAIL ? 1 : 0, used: f & VIRTQ_DESC_F_USED ? 1 : 0 });
    }
    return out;
  }

  /** True when slot `slot` is available for wrap counter `wrap` (§2.8.1). */
  isAvailable(slot: number, wrap: number): boolean {
    const f = this.opts.memory.readU16(this.gpa.desc + VIRTQ_DESC_SIZE * slot + 14);
    const a = f & VIRTQ_DESC_F_AVAIL ? 1 : 0;
    const u = f & VIRTQ_DESC_F_USED ? 1 : 0;
    return a === wrap && u !== wrap;
  }

  /**
   * Decodes the chain at ring slot `slot` with avail wrap counter `wrap`, as our device pops it
   * (§2.8.6 chains over consecutive slots, §2.8.7 indirect). Returns the chain and the slot and
   * wrap counter after it.
   */
  decodeChain(slot: number, wrap: number): { chain: DecodedChain; slot: number; wrap: number } {
    const { memory, dma, ramSize, size, features } = this.opts;
    const ctx = { memory, dma, ramSize };
    const chain = newDecodedChain(slot, slot);
    let s = slot;
    let w = wrap;
    for (let k = 0; k < size; k++) {
      if (k > 0 && !this.isAvailable(s, w)) {
        // §2.8.6: the whole list is available before the head is.
        chain.error ??= decodeError(
          "PACKED_CHAIN_UNAVAILABLE",
          `chain from slot ${slot} continues into slot ${s}, which is not available`,
          s,
        );
        return { chain, slot: s, wrap: w };
      }
      const d = this.descriptor(s);
      chain.ringDescriptors++;
      chain.id = d.next;
      s++;
      if (s === size) {
        s = 0;
        w ^= 1;
      }
      if (d.flags & VIRTQ_DESC_F_INDIRECT) {
        chain.indirect = d;
        // The device's rules (src/virtio/rules.ts), strict policy as the engine's default.
        let v = indirectInListRule(k + 1);
        if (v === RULE_OK) {
          const negotiated = hasFeature(features, VIRTIO_F_INDIRECT_DESC);
          const [lo, hi] = u64Words(d.addr);
          v = indirectDescriptorRule(d.flags, lo, hi, d.len, negotiated, true, size, true);
        }
        if (v !== RULE_OK) {
          chain.error ??= decodeError(v, ruleDetail(v, "slot", d.index, d.len, size), d.index);
        } else this.#decodeTable(chain, d, ctx);
        return { chain, slot: s, wrap: w };
      }
      addBufferDescriptor(chain, d, ctx);
      if (!(d.flags & VIRTQ_DESC_F_NEXT)) return { chain, slot: s, wrap: w };
    }
    // §2.8.6 / §2.7.5.2: a list is at most Queue Size descriptors.
    chain.error ??= decodeError(
      "DESC_CHAIN_LOOP",
      `chain from slot ${slot} is longer than ${size} descriptors`,
      slot,
    );
    return { chain, slot: s, wrap: w };
  }

  #decodeTable(
    chain: DecodedChain,
    d: DecodedDescriptor,
    ctx: { memory: GuestMemory; dma: DmaAddressSpace; ramSize: number },
  ): void {
    const i = d.index;
    // §2.8.7: the table holds len/16 descriptors (checked by indirectDescriptorRule).
    const n = d.len / VIRTQ_DESC_SIZE;
    let gpa: number;
    try {
      gpa = translateContiguous(
        this.opts.dma,
        d.addr,
        d.len,
        DMA_ACCESS_READ,
        new DmaTranslation(),
      );
      this.opts.memory.resolve(gpa, d.len);
    } catch (e) {
      chain.error ??= decodeError(
        "INDIRECT_TABLE_FAULT",
        `slot ${i}: table of ${d.len} bytes unreachable (${(e as Error).message})`,
        i,
      );
      return;
    }
    for (let j = 0; j < n; j++) {
      const t = readPackedDesc(this.opts.memory, gpa + VIRTQ_DESC_SIZE * j, j, true);
      const nested = indirectEntryRule(t.flags);
      if (nested !== RULE_OK) {
        chain.descriptors.push(t);
        chain.error ??= decodeError(nested, ruleDetail(nested, "indirect entry", j), j);
        return;
      }
      // §2.8.7: entries are used in order; NEXT inside a table is ignored (reserved).
      addBufferDescriptor(chain, t, ctx);
    }
  }
}

/** Reads a packed descriptor at `gpa` (`next` holds the buffer id). @throws MemoryFault */
export function readPackedDesc(
  memory: GuestMemory,
  gpa: number,
  index: number,
  inIndirect: boolean,
): DecodedDescriptor {
  return {
    index,
    addr: memory.readU64(gpa),
    len: memory.readU32(gpa + 8),
    next: memory.readU16(gpa + 12),
    flags: memory.readU16(gpa + 14),
    inIndirect,
  };
}

/** Reads an event suppression structure at `gpa`. @throws MemoryFault */
export function readEvent(memory: GuestMemory, gpa: number): PackedEventSuppression {
  const offWrap = memory.readU16(gpa);
  return { offWrap, off: offWrap & 0x7fff, wrap: offWrap >> 15, flags: memory.readU16(gpa + 2) };
}

/** Ring positions inferred from the slots' AVAIL/USED bits. */
export interface PackedPositionGuess {
  /** Slot the driver makes its next buffer available at. */
  driverIdx: number;
  /** The driver's wrap counter. */
  driverWrap: number;
  /** Slot the device writes its next used descriptor to (its next avail slot if none in flight). */
  usedIdx: number;
  /** The device's used wrap counter. */
  usedWrap: number;
  /** Slots from the device's used position to the driver's position (outstanding buffers' slots). */
  pendingSlots: number;
  /**
   * `"exact"` when every step was unambiguous; `"chain-guess"` when the last used buffer was
   * followed by driver-written slots with its buffer ID, counted as its chain's companions;
   * `"inconsistent"` when the AVAIL bits have more than one lap boundary (corrupt ring).
   */
  basis: "exact" | "chain-guess" | "inconsistent";
}

/**
 * Infers the driver's and the device's ring positions from the slots' AVAIL/USED bits.
 *
 * Every slot's AVAIL bit is the lap (wrap counter) of its last write, by the driver (AVAIL !=
 * USED, §2.8.1) or by the device writing a used descriptor (AVAIL == USED == its used wrap
 * counter, §2.8.5) in the same lap: so the AVAIL bits change value exactly once, at the driver's
 * next slot. Walking back from there over driver-written slots (not yet used) reaches the last
 * slot the device wrote as used; the device's used position follows it (plus that chain's
 * driver-written companions, which carry the same buffer ID). With no used slot within a lap the
 * whole ring is outstanding and the device is one lap behind the driver.
 */
export function inferPackedPositions(view: PackedRingView): PackedPositionGuess {
  const n = view.opts.size;
  const bits = view.slotBits();
  let driverIdx = 0;
  let boundaries = 0;
  for (let s = 1; s < n; s++) {
    if (bits[s].avail !== bits[s - 1].avail) {
      if (boundaries === 0) driverIdx = s;
      boundaries++;
    }
  }
  // Slots [0, driverIdx) carry the driver's current lap; with no boundary a lap just completed.
  const driverWrap = driverIdx === 0 ? bits[0].avail ^ 1 : bits[0].avail;
  let basis: PackedPositionGuess["basis"] = boundaries > 1 ? "inconsistent" : "exact";
  let s = driverIdx;
  let w = driverWrap;
  let found = -1;
  let foundWrap = 0;
  let pending = 0;
  for (let k = 0; k < n; k++) {
    if (s === 0) {
      s = n - 1;
      w ^= 1;
    } else s--;
    if (bits[s].avail === bits[s].used) {
      found = s;
      foundWrap = w;
      break;
    }
    pending++;
  }
  if (found < 0) {
    return {
      driverIdx,
      driverWrap,
      usedIdx: driverIdx,
      usedWrap: driverWrap ^ 1,
      pendingSlots: n,
      basis,
    };
  }
  let usedIdx = found;
  let usedWrap = foundWrap;
  const step = () => {
    usedIdx++;
    if (usedIdx === n) {
      usedIdx = 0;
      usedWrap ^= 1;
    }
  };
  step();
  // Companions of the last used buffer: driver-written slots with its ID, NEXT-linked, ending
  // with one without NEXT (§2.8.6). Only counted when the list is well formed.
  const id = view.descriptor(found).next;
  let k = 0;
  let probe = usedIdx;
  let complete = false;
  while (k < pending) {
    const d = view.descriptor(probe);
    if (d.next !== id) break;
    k++;
    if (!(d.flags & VIRTQ_DESC_F_NEXT)) {
      complete = true;
      break;
    }
    probe = probe + 1 === n ? 0 : probe + 1;
  }
  if (complete && k > 1) {
    // A NEXT-linked run with the used buffer's ID: counted as its companions, but a new buffer
    // reusing the ID right away looks the same, so say it is a guess. A single slot (k == 1) is
    // taken as a new buffer (Linux reuses a returned ID at once; with INDIRECT_DESC its chains
    // occupy one slot).
    basis = basis === "inconsistent" ? basis : "chain-guess";
    for (let j = 0; j < k; j++) step();
    pending -= k;
  }
  return { driverIdx, driverWrap, usedIdx, usedWrap, pendingSlots: pending, basis };
}
