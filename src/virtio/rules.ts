/**
 * The descriptor rules, each in one place: layout-neutral checks shared by the split device
 * (`split/walk.ts`), the packed device (`packed/walk.ts`) and the inspector views
 * (`src/inspect/split_view.ts`, `src/inspect/packed_view.ts`). The fuzz reference decoders stay
 * independent of this file on purpose: they are the oracles these rules are checked against.
 *
 * Every rule takes plain numbers and booleans, allocates nothing and returns the catalogue code
 * it violates, or {@link RULE_OK} (`null`). Callers turn a code into an error with
 * {@link ruleDetail}, which names the offending index and value; both devices then raise it as
 * `this.#fail(code, detail, index)`.
 *
 * To add a check on a descriptor, an indirect descriptor or an indirect table: extend the rule
 * here (and its test in `tests/virtio/rules_test.ts`); every caller picks it up.
 *
 * @module
 */

import { VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT } from "./constants.ts";
import type { VirtqErrorCode } from "./errors.ts";

/** What a rule returns: the violated catalogue code, or {@link RULE_OK}. */
export type RuleVerdict = VirtqErrorCode | null;

/** The verdict of a rule that holds. */
export const RULE_OK = null;

/** Largest total length of a chain: used `len` is a le32 (spec §2.7.5.2 / §2.8.4.2). */
export const MAX_CHAIN_BYTES = 0xffff_ffff;

const TWO_POW_32 = 0x1_0000_0000;

/**
 * An indirect descriptor itself (spec §2.7.5.3 split, §2.8.7 packed), in this order:
 * - §2.7.5.3.1 / §2.8.7.1: the driver MUST NOT set `VIRTQ_DESC_F_INDIRECT` unless
 *   `VIRTIO_F_INDIRECT_DESC` was negotiated → `INDIRECT_NOT_NEGOTIATED`;
 * - §2.7.5.3.1: MUST NOT set both INDIRECT and NEXT (strict policy) → `INDIRECT_WITH_NEXT`
 *   (the packed layout checks this one first: the precedence its device, inspector view and fuzz
 *   reference decoder share);
 * - §2.7.5.3: a table holds at least one descriptor → `INDIRECT_LEN_ZERO`;
 * - §2.7.5.3 / §2.8.7: the table holds `len / 16` descriptors → `INDIRECT_LEN_MISALIGNED`;
 * - §2.7.5.3.1: a chain, an indirect table included, MUST NOT exceed Queue Size →
 *   `INDIRECT_TABLE_TOO_LONG`.
 * @param flags the descriptor's flags (INDIRECT set).
 * @param _lo the table's address, bits 0..31 (for table-address rules).
 * @param _hi the table's address, bits 32..63.
 * @param len the descriptor's len (table bytes).
 * @param negotiated `VIRTIO_F_INDIRECT_DESC` negotiated.
 * @param rejectNext policy `indirectWithNext: "reject"`.
 * @param queueSize Queue Size.
 * @param nextFirst check `INDIRECT_WITH_NEXT` before negotiation (the packed precedence).
 */
export function indirectDescriptorRule(
  flags: number,
  _lo: number,
  _hi: number,
  len: number,
  negotiated: boolean,
  rejectNext: boolean,
  queueSize: number,
  nextFirst = false,
): RuleVerdict {
  const withNext = rejectNext && (flags & VIRTQ_DESC_F_NEXT) !== 0;
  if (nextFirst && withNext) return "INDIRECT_WITH_NEXT";
  if (!negotiated) return "INDIRECT_NOT_NEGOTIATED";
  if (withNext) return "INDIRECT_WITH_NEXT";
  if (len === 0) return "INDIRECT_LEN_ZERO";
  if ((len & 15) !== 0) return "INDIRECT_LEN_MISALIGNED";
  if (len >>> 4 > queueSize) return "INDIRECT_TABLE_TOO_LONG";
  return RULE_OK;
}

/**
 * An entry of an indirect table (spec §2.7.5.3.1 / §2.8.7.1: the driver MUST NOT set
 * `VIRTQ_DESC_F_INDIRECT` inside a table) → `INDIRECT_NESTED`.
 * @param flags the entry's flags.
 */
export function indirectEntryRule(flags: number): RuleVerdict {
  return (flags & VIRTQ_DESC_F_INDIRECT) !== 0 ? "INDIRECT_NESTED" : RULE_OK;
}

/**
 * Packed only (spec §2.8.7.1): an indirect descriptor is never part of a NEXT-linked list, so
 * it may only be the first descriptor of its list → `PACKED_INDIRECT_IN_LIST`.
 * @param position 1-based position of the indirect descriptor in its list.
 */
export function indirectInListRule(position: number): RuleVerdict {
  return position > 1 ? "PACKED_INDIRECT_IN_LIST" : RULE_OK;
}

/**
 * Reserved flag bits (spec §2.7.5 / §2.8.1 define the others; the spec ignores reserved bits,
 * the strict-flags policy rejects them) → `DESC_UNKNOWN_FLAGS`.
 * @param flags the descriptor's flags.
 * @param known the flag bits the layout defines.
 * @param reject policy `unknownFlags: "reject"`.
 */
export function unknownFlagsRule(flags: number, known: number, reject: boolean): RuleVerdict {
  return reject && (flags & ~known) !== 0 ? "DESC_UNKNOWN_FLAGS" : RULE_OK;
}

/**
 * Zero-length buffers (policy; QEMU: "zero sized buffers are not allowed") → `DESC_ZERO_LENGTH`.
 * @param len the descriptor's len.
 * @param reject policy `zeroLength: "reject"`.
 */
export function zeroLengthRule(len: number, reject: boolean): RuleVerdict {
  return len === 0 && reject ? "DESC_ZERO_LENGTH" : RULE_OK;
}

/**
 * Message framing (spec §2.7.4.2 / §2.8.4): device-writable descriptors come after the
 * device-readable ones → `DESC_READABLE_AFTER_WRITABLE`.
 * @param writable this descriptor is device-writable.
 * @param sawWritable an earlier descriptor of the chain was device-writable.
 */
export function framingRule(writable: boolean, sawWritable: boolean): RuleVerdict {
  return !writable && sawWritable ? "DESC_READABLE_AFTER_WRITABLE" : RULE_OK;
}

/**
 * Chain length in bytes (spec §2.7.5.2 / §2.8.4.2: at most 2^32 - 1, what used `len` can report)
 * → `CHAIN_TOO_MANY_BYTES`.
 * @param total the chain's running byte total including this descriptor.
 */
export function chainBytesRule(total: number): RuleVerdict {
  return total > MAX_CHAIN_BYTES ? "CHAIN_TOO_MANY_BYTES" : RULE_OK;
}

/**
 * Chain length in descriptors (spec §2.7.5.2 / §2.8.6: loops are forbidden, a chain or an
 * indirect table holds at most its table's descriptors) → `DESC_CHAIN_LOOP`.
 * @param count descriptors visited so far, this one included.
 * @param max the table's size (Queue Size, or the indirect table's entries).
 */
export function chainLengthRule(count: number, max: number): RuleVerdict {
  return count > max ? "DESC_CHAIN_LOOP" : RULE_OK;
}

/**
 * Split `next` (spec §2.7.5: an index into the descriptor or indirect table) →
 * `DESC_NEXT_OUT_OF_RANGE`.
 * @param next the descriptor's next field.
 * @param tableSize entries in its table.
 */
export function nextIndexRule(next: number, tableSize: number): RuleVerdict {
  return next >= tableSize ? "DESC_NEXT_OUT_OF_RANGE" : RULE_OK;
}

/**
 * A buffer `[addr, addr + len)` cannot wrap the 64-bit address space (spec §2.7.5 / §2.8.13)
 * → `DESC_ADDR_WRAP`.
 * @param lo addr bits 0..31.
 * @param hi addr bits 32..63.
 * @param len the descriptor's len.
 */
export function addressWrapRule(lo: number, hi: number, len: number): RuleVerdict {
  return hi === 0xffff_ffff && lo + len > TWO_POW_32 ? "DESC_ADDR_WRAP" : RULE_OK;
}

/**
 * The device's limit on segments per chain (spec §2.7.4: the device MAY limit descriptors per
 * chain) → `CHAIN_TOO_MANY_SEGMENTS`.
 * @param segments segments already in the chain.
 * @param max the policy's `maxSegments`.
 */
export function segmentLimitRule(segments: number, max: number): RuleVerdict {
  return segments >= max ? "CHAIN_TOO_MANY_SEGMENTS" : RULE_OK;
}

/**
 * Splits a 64-bit address into its `[lo, hi]` 32-bit words, the form the rules take (cold
 * paths such as the inspector views; the devices read the words from the ring directly).
 * @param addr an exact address (number below 2^53, or bigint).
 */
export function u64Words(addr: number | bigint): [number, number] {
  const a = BigInt(addr);
  return [Number(a & 0xffff_ffffn), Number((a >> 32n) & 0xffff_ffffn)];
}

/** Where a violation sits, for {@link ruleDetail}. */
export type RuleSite = "descriptor" | "slot" | "indirect entry";

/**
 * The message detail of a rule violation (cold path): names the offending index, the rule and
 * the value that broke it, e.g. `indirect descriptor 3 has len 20, not a multiple of 16`.
 * @param code the verdict a rule returned.
 * @param site what `index` counts: a split descriptor, a packed ring slot, or a table entry.
 * @param index the offending index.
 * @param value the offending value (flags, len, next, running total or count; per rule).
 * @param limit the limit it broke (table or queue size, segment limit), when there is one.
 */
export function ruleDetail(
  code: VirtqErrorCode,
  site: RuleSite,
  index: number,
  value = 0,
  limit = 0,
): string {
  const at = `${site} ${index}`;
  switch (code) {
    case "INDIRECT_NOT_NEGOTIATED":
      return `${at} is indirect without VIRTIO_F_INDIRECT_DESC`;
    case "INDIRECT_WITH_NEXT":
      return `${at} sets both INDIRECT and NEXT`;
    case "INDIRECT_LEN_ZERO":
      return `indirect ${at} has len 0`;
    case "INDIRECT_LEN_MISALIGNED":
      return `indirect ${at} has len ${value}, not a multiple of 16`;
    case "INDIRECT_TABLE_TOO_LONG":
      return `indirect table of ${at} has ${value >>> 4} entries, queue size ${limit}`;
    case "INDIRECT_NESTED":
      return `${at} of an indirect table is itself indirect`;
    case "PACKED_INDIRECT_IN_LIST":
      return `${at} is indirect at position ${value} of a NEXT-linked list`;
    case "DESC_UNKNOWN_FLAGS":
      return `${at} has reserved flags 0x${value.toString(16)}`;
    case "DESC_ZERO_LENGTH":
      return `${at} has len 0`;
    case "DESC_READABLE_AFTER_WRITABLE":
      return `${at} is device-readable after a device-writable one`;
    case "CHAIN_TOO_MANY_BYTES":
      return `${at} brings the chain to ${value} bytes, above 2^32 - 1`;
    case "DESC_CHAIN_LOOP":
      return `${at}: the chain visits more than ${limit} descriptors (a loop or overlong chain)`;
    case "DESC_NEXT_OUT_OF_RANGE":
      return `${at} has next ${value}, table size ${limit}`;
    case "DESC_ADDR_WRAP":
      return `${at}: addr + len ${value} wraps 2^64`;
    case "CHAIN_TOO_MANY_SEGMENTS":
      return `${at}: the chain has more than ${limit} segments`;
    default:
      return `${at} breaks ${code}`;
  }
}
