/**
 * A chain as the inspector decodes it from a memory image: every descriptor the device would
 * visit, in chain order, with the first validation error our device-side rules raise (a code of
 * the catalogue in `src/virtio/errors.ts`) and notes about the capture (pages not kept).
 *
 * Unlike the engine's reusable {@link Chain} this is a plain JSON-friendly record: the inspector
 * is a cold path, and a report must outlive the next decode.
 *
 * @module
 */

import type { GuestMemory } from "../memory/guest_memory.ts";
import { type U64, u64Add } from "../memory/u64.ts";
import { DmaTranslation } from "../dma/types.ts";
import type { DmaAddressSpace } from "../dma/types.ts";
import { DMA_ACCESS_READ, DMA_ACCESS_WRITE } from "../dma/errors.ts";
import { VIRTQ_DESC_F_WRITE } from "../virtio/constants.ts";
import { VIRTQ_ERRORS, type VirtqErrorCode } from "../virtio/errors.ts";
import {
  addressWrapRule,
  chainBytesRule,
  framingRule,
  RULE_OK,
  ruleDetail,
  type RuleVerdict,
  u64Words,
  zeroLengthRule,
} from "../virtio/rules.ts";
import { INSPECT_ERRORS, type InspectErrorCode } from "./inspect_error.ts";

/** One descriptor as read from the descriptor table/ring or from an indirect table. */
export interface DecodedDescriptor {
  /** Index in its table (split: descriptor index; packed: ring slot; indirect: table entry). */
  index: number;
  /** Buffer address as written by the driver (exact u64). */
  addr: U64;
  /** Length in bytes. */
  len: number;
  /** Flags as read (u16). */
  flags: number;
  /** Split: the `next` field; packed: the buffer `id` field. */
  next: number;
  /** True when read from an indirect table. */
  inIndirect: boolean;
}

/** A validation failure found while decoding, with its catalogue code. */
export interface DecodeError {
  /** Catalogue code (`VIRTQ_ERRORS` key, or an `INSPECT_ERRORS` key for capture findings). */
  code: VirtqErrorCode | InspectErrorCode;
  /** What exactly is wrong, naming the index/address. */
  message: string;
  /** The spec rule (from the catalogue). */
  spec: string;
  /** The offending descriptor / slot index, when there is one. */
  index?: number;
}

/** One decoded chain. */
export interface DecodedChain {
  /** Split: ring position (free-running avail index) it was found at; packed: ring slot. */
  position: number;
  /** Split: head descriptor index; packed: head ring slot. */
  head: number;
  /** The id a used element returns (split: the head; packed: the buffer ID). */
  id: number;
  /** Ring slots / table descriptors the chain occupies outside indirect tables. */
  ringDescriptors: number;
  /** The indirect descriptor, when the chain goes through an indirect table. */
  indirect: DecodedDescriptor | null;
  /** The buffer descriptors in chain order (an indirect table's entries replace its descriptor). */
  descriptors: DecodedDescriptor[];
  /** Total device-readable bytes. */
  readableBytes: number;
  /** Total device-writable bytes. */
  writableBytes: number;
  /** First validation error (the device would stop here and need a reset), or `null`. */
  error: DecodeError | null;
  /** Capture notes, e.g. buffer pages not kept in the image (not an error of the guest). */
  notes: string[];
}

/** Makes a {@link DecodeError} from a catalogue code. */
export function decodeError(
  code: VirtqErrorCode | InspectErrorCode,
  message: string,
  index?: number,
): DecodeError {
  const spec = code in INSPECT_ERRORS
    ? INSPECT_ERRORS[code as InspectErrorCode].spec
    : VIRTQ_ERRORS[code as VirtqErrorCode].spec;
  return { code, message: `${code}: ${message}`, spec, index };
}

/** An empty chain record to fill. */
export function newDecodedChain(position: number, head: number): DecodedChain {
  return {
    position,
    head,
    id: head,
    ringDescriptors: 0,
    indirect: null,
    descriptors: [],
    readableBytes: 0,
    writableBytes: 0,
    error: null,
    notes: [],
  };
}

/** Where a buffer lies, as far as the image can tell. */
export type BufferReach = "ok" | "not-captured" | "fault";

/**
 * Checks that a descriptor's buffer is reachable: translated by `dma`, then inside guest RAM.
 * Pages inside RAM that were not kept in the image are `"not-captured"` (a capture limit, not a
 * guest error); addresses that do not translate or lie beyond RAM are `"fault"`.
 * @param ramSize guest RAM size in bytes; GPAs at or above it are outside RAM.
 */
export function bufferReach(
  memory: GuestMemory,
  dma: DmaAddressSpace,
  ramSize: number,
  addr: U64,
  len: number,
  writable: boolean,
): BufferReach {
  if (len === 0) return "ok";
  const out = new DmaTranslation();
  let bus: U64 = addr;
  let left = len;
  let captured = true;
  while (left > 0) {
    try {
      dma.translate(bus, left, writable ? DMA_ACCESS_WRITE : DMA_ACCESS_READ, out);
    } catch {
      return "fault";
    }
    if (out.gpa + out.length > ramSize) return "fault";
    if (!memory.contains(out.gpa, out.length)) captured = false;
    left -= out.length;
    const nb = u64Add(bus, out.length);
    if (nb === null) return "fault";
    bus = nb;
  }
  return captured ? "ok" : "not-captured";
}

/**
 * Records a buffer descriptor and applies the per-descriptor rules our device enforces
 * (§2.7.5 / §2.8.4 framing, zero length policy, address wrap, 2^32 total, reachability). Keeps
 * the first error only; a decode continues past these so the whole chain is listed.
 */
export function addBufferDescriptor(
  chain: DecodedChain,
  d: DecodedDescriptor,
  ctx: { memory: GuestMemory; dma: DmaAddressSpace; ramSize: number },
): void {
  chain.descriptors.push(d);
  const writable = (d.flags & VIRTQ_DESC_F_WRITE) !== 0;
  const fail = (code: VirtqErrorCode, msg: string) => {
    if (chain.error === null) chain.error = decodeError(code, msg, d.index);
  };
  const site = d.inIndirect ? "indirect entry" : "descriptor";
  const where = `${site} ${d.index}`;
  const rule = (v: RuleVerdict, value = 0) => {
    if (v !== RULE_OK) fail(v, ruleDetail(v, site, d.index, value));
  };
  // The device's rules (src/virtio/rules.ts) with the default strict policy.
  rule(zeroLengthRule(d.len, true));
  const sawWritable = chain.descriptors.some((x) =>
    x !== d && (x.flags & VIRTQ_DESC_F_WRITE) !== 0
  );
  rule(framingRule(writable, sawWritable));
  if (writable) chain.writableBytes += d.len;
  else chain.readableBytes += d.len;
  const total = chain.readableBytes + chain.writableBytes;
  rule(chainBytesRule(total), total);
  const [lo, hi] = u64Words(d.addr);
  const wrap = addressWrapRule(lo, hi, d.len);
  if (wrap !== RULE_OK) {
    rule(wrap, d.len);
    return;
  }
  const reach = bufferReach(ctx.memory, ctx.dma, ctx.ramSize, d.addr, d.len, writable);
  if (reach === "fault") {
    fail("DESC_BUFFER_FAULT", `${where}: buffer of ${d.len} bytes is not in guest RAM`);
  } else if (reach === "not-captured") {
    chain.notes.push(`${where}: buffer pages not kept in the image (contents unknown)`);
  }
}
