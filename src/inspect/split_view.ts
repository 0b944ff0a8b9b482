/**
 * Reading a split virtqueue (spec §2.7) straight from a memory image: the available and used
 * rings' indices, flags and event-suppression fields, and the chain behind any head, decoded with
 * our device-side validation rules.
 *
 * Layout offsets (spec §2.7.5, §2.7.6, §2.7.8): descriptor `i` at `desc + 16 i` (`le64 addr`,
 * `le32 len`, `le16 flags`, `le16 next`); available ring `flags` @0, `idx` @2, `ring[i]` @4+2i,
 * `used_event` @4+2N; used ring `flags` @0, `idx` @2, `ring[i]` @4+8i (`le32 id`, `le32 len`),
 * `avail_event` @4+8N. Reads are cold-path `GuestMemory` accessors: absent pages raise
 * `MemoryFault`.
 *
 * @module
 */

import type { GuestMemory } from "../memory/guest_memory.ts";
import type { DmaAddressSpace } from "../dma/types.ts";
import { DmaTranslation, translateContiguous } from "../dma/types.ts";
import { DMA_ACCESS_READ } from "../dma/errors.ts";
import type { U64 } from "../memory/u64.ts";
import { VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_SIZE } from "../virtio/constants.ts";
import { hasFeature, VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC } from "../virtio/features.ts";
import {
  chainLengthRule,
  indirectDescriptorRule,
  indirectEntryRule,
  nextIndexRule,
  RULE_OK,
  ruleDetail,
  u64Words,
} from "../virtio/rules.ts";
import {
  addBufferDescriptor,
  type DecodedChain,
  type DecodedDescriptor,
  type DecodeError,
  decodeError,
  newDecodedChain,
} from "./decoded_chain.ts";

/** Byte sizes of the three split areas for a queue of `size` (spec §2.7: with event fields). */
export function splitAreaSizes(size: number): { desc: number; avail: number; used: number } {
  return { desc: VIRTQ_DESC_SIZE * size, avail: 6 + 2 * size, used: 6 + 8 * size };
}

/** Inputs to read a split queue. */
export interface SplitViewOptions {
  /** Guest memory (the image). */
  memory: GuestMemory;
  /** Device DMA view used to reach ring areas and buffers. */
  dma: DmaAddressSpace;
  /** Guest RAM size in bytes (buffers beyond it are faults; inside it, merely not captured). */
  ramSize: number;
  /** Queue Size. */
  size: number;
  /** Descriptor table bus address. */
  descAddr: U64;
  /** Available ring bus address. */
  availAddr: U64;
  /** Used ring bus address. */
  usedAddr: U64;
  /** Negotiated features. */
  features: bigint;
}

/** Split ring state as read from memory. */
export interface SplitRingState {
  /** GPAs of the three areas after translation. */
  gpa: { desc: number; avail: number; used: number };
  /** Available ring `flags` (bit 0 `VIRTQ_AVAIL_F_NO_INTERRUPT`). */
  availFlags: number;
  /** Available ring `idx` (free-running u16). */
  availIdx: number;
  /** `used_event` (meaningful only with `VIRTIO_F_EVENT_IDX`; always read). */
  usedEvent: number;
  /** Used ring `flags` (bit 0 `VIRTQ_USED_F_NO_NOTIFY`). */
  usedFlags: number;
  /** Used ring `idx` (free-running u16). */
  usedIdx: number;
  /** `avail_event` (meaningful only with `VIRTIO_F_EVENT_IDX`; always read). */
  availEvent: number;
  /** True when `VIRTIO_F_EVENT_IDX` was negotiated. */
  eventIdx: boolean;
}

/** A reader of one split queue's image. */
export class SplitRingView {
  /** Options it was built with. */
  readonly opts: SplitViewOptions;
  /** Ring state read at construction. */
  readonly state: SplitRingState;

  /**
   * Translates the three areas and reads the ring indices.
   * @throws DmaFault / MemoryFault when an area is not reachable or not captured (the caller
   * reports `RING_UNMAPPED`).
   */
  constructor(opts: SplitViewOptions) {
    this.opts = opts;
    const s = splitAreaSizes(opts.size);
    const out = new DmaTranslation();
    const gpa = {
      desc: translateContiguous(opts.dma, opts.descAddr, s.desc, DMA_ACCESS_READ, out),
      avail: translateContiguous(opts.dma, opts.availAddr, s.avail, DMA_ACCESS_READ, out),
      used: translateContiguous(opts.dma, opts.usedAddr, s.used, DMA_ACCESS_READ, out),
    };
    const m = opts.memory;
    // Touch every byte range once so an uncaptured page is reported up front.
    m.resolve(gpa.desc, s.desc);
    m.resolve(gpa.avail, s.avail);
    m.resolve(gpa.used, s.used);
    this.state = {
      gpa,
      availFlags: m.readU16(gpa.avail),
      availIdx: m.readU16(gpa.avail + 2),
      usedEvent: m.readU16(gpa.avail + 4 + 2 * opts.size),
      usedFlags: m.readU16(gpa.used),
      usedIdx: m.readU16(gpa.used + 2),
      availEvent: m.readU16(gpa.used + 4 + 8 * opts.size),
      eventIdx: hasFeature(opts.features, VIRTIO_F_EVENT_IDX),
    };
  }

  /** Available ring entry at free-running position `pos` (slot `pos % N`). */
  availRing(pos: number): number {
    return this.opts.memory.readU16(this.state.gpa.avail + 4 + 2 * (pos % this.opts.size));
  }

  /** Used ring element at free-running position `pos`: `{ id, len }`. */
  usedElem(pos: number): { id: number; len: number } {
    const a = this.state.gpa.used + 4 + 8 * (pos % this.opts.size);
    return { id: this.opts.memory.readU32(a), len: this.opts.memory.readU32(a + 4) };
  }

  /** Descriptor `i` of the descriptor table. */
  descriptor(i: number): DecodedDescriptor {
    return readDesc(this.opts.memory, this.state.gpa.desc + VIRTQ_DESC_SIZE * i, i, false);
  }

  /**
   * Decodes the chain whose head is descriptor `head`, as our device would pop it (spec §2.7.5,
   * §2.7.5.3). Structural errors (next out of range, loop, indirect table faults) end the walk;
   * per-buffer errors are recorded and the walk goes on, so every descriptor is listed.
   * @param position the free-running avail index the head was read at (for the report).
   */
  decodeChain(head: number, position: number): DecodedChain {
    const { memory, dma, ramSize, size, features } = this.opts;
    const chain = newDecodedChain(position, head);
    if (head >= size) {
      // §2.7.6: avail ring entries are descriptor indices below Queue Size.
      chain.error = decodeError(
        "AVAIL_HEAD_OUT_OF_RANGE",
        `avail ring position ${position} names head ${head} >= queue size ${size}`,
        head,
      );
      return chain;
    }
    const ctx = { memory, dma, ramSize };
    let tableGpa = this.state.gpa.desc;
    let max = size;
    let inIndirect = false;
    let i = head;
    let visited = 0;
    for (;;) {
      let d: DecodedDescriptor;
      try {
        d = readDesc(memory, tableGpa + VIRTQ_DESC_SIZE * i, i, inIndirect);
      } catch (e) {
        chain.error ??= decodeError(
          inIndirect ? "INDIRECT_TABLE_FAULT" : "RING_UNMAPPED",
          `descriptor ${i} cannot be read (${(e as Error).message})`,
          i,
        );
        return chain;
      }
      visited++;
      if (!inIndirect) chain.ringDescriptors++;
      if (d.flags & VIRTQ_DESC_F_INDIRECT) {
        const nested = inIndirect ? indirectEntryRule(d.flags) : RULE_OK;
        if (nested !== RULE_OK) {
          chain.descriptors.push(d);
          chain.error ??= decodeError(nested, ruleDetail(nested, "indirect entry", i), i);
          return chain;
        }
        chain.indirect = d;
        // The device's rule (src/virtio/rules.ts); INDIRECT_WITH_NEXT is recorded and the table
        // still decoded (strict policy; QEMU ignores NEXT).
        const negotiated = hasFeature(features, VIRTIO_F_INDIRECT_DESC);
        const [lo, hi] = u64Words(d.addr);
        let v = indirectDescriptorRule(d.flags, lo, hi, d.len, negotiated, true, size);
        if (v === "INDIRECT_WITH_NEXT") {
          chain.error ??= decodeError(v, ruleDetail(v, "descriptor", i), i);
          v = indirectDescriptorRule(d.flags, lo, hi, d.len, negotiated, false, size);
        }
        if (v !== RULE_OK) {
          chain.error ??= decodeError(v, ruleDetail(v, "descriptor", i, d.len, size), i);
          return chain;
        }
        const t = this.#tableGpa(d);
        if (typeof t !== "number") {
          chain.error ??= t;
          return chain;
        }
        tableGpa = t;
        max = d.len / VIRTQ_DESC_SIZE;
        inIndirect = true;
        i = 0;
        visited = 0;
        continue;
      }
      addBufferDescriptor(chain, d, ctx);
      if (!(d.flags & VIRTQ_DESC_F_NEXT)) return chain;
      const site = inIndirect ? "indirect entry" : "descriptor";
      // §2.7.5: next indexes the descriptor (or indirect) table.
      const range = nextIndexRule(d.next, max);
      if (range !== RULE_OK) {
        chain.error ??= decodeError(range, ruleDetail(range, site, i, d.next, max), i);
        return chain;
      }
      // §2.7.5.2: no loops; a chain has at most Queue Size (or table size) descriptors.
      const loop = chainLengthRule(visited + 1, max);
      if (loop !== RULE_OK) {
        chain.error ??= decodeError(
          loop,
          `chain from head ${head}: ${ruleDetail(loop, site, i, 0, max)}`,
          i,
        );
        return chain;
      }
      i = d.next;
    }
  }

  /** Translates an indirect table (the rules passed); returns its GPA or the error. */
  #tableGpa(d: DecodedDescriptor): DecodeError | number {
    const i = d.index;
    const out = new DmaTranslation();
    try {
      const gpa = translateContiguous(this.opts.dma, d.addr, d.len, DMA_ACCESS_READ, out);
      this.opts.memory.resolve(gpa, d.len);
      return gpa;
    } catch (e) {
      return decodeError(
        "INDIRECT_TABLE_FAULT",
        `descriptor ${i}: table of ${d.len} bytes unreachable (${(e as Error).message})`,
        i,
      );
    }
  }
}

/** Reads one 16-byte split descriptor at `gpa`. @throws MemoryFault */
export function readDesc(
  memory: GuestMemory,
  gpa: number,
  index: number,
  inIndirect: boolean,
): DecodedDescriptor {
  return {
    index,
    addr: memory.readU64(gpa),
    len: memory.readU32(gpa + 8),
    flags: memory.readU16(gpa + 12),
    next: memory.readU16(gpa + 14),
    inIndirect,
  };
}
