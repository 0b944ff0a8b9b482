/**
 * Exact 64-bit unsigned values without rounding.
 *
 * A virtio descriptor's `addr` field and every bus address / IOVA is a u64 (spec §2.7.5
 * "The Virtqueue Descriptor Table", `le64 addr`). JavaScript numbers hold integers exactly only up
 * to 2^53 - 1, so a {@link U64} is **canonical**: a `number` when the value is at most
 * `Number.MAX_SAFE_INTEGER`, and a `bigint` otherwise. The hot path only ever sees numbers (guest
 * physical addresses are at most 52 bits on every real platform); values with high bits set
 * (POWER DDW windows at 2^63, Xen grant addresses with bit 63) take the bigint cold path and are
 * still exact.
 *
 * @module
 */

/** An exact unsigned 64-bit value: a safe-integer `number`, or a `bigint` above 2^53 - 1. */
export type U64 = number | bigint;

/** 2^32 as a number. */
export const TWO_POW_32 = 0x1_0000_0000;
/** Largest u64 as a bigint (2^64 - 1). */
export const U64_MAX = 0xffff_ffff_ffff_ffffn;
/** Highest `hi` word (bits 32..63) for which `hi * 2^32 + lo` is still a safe integer. */
const SAFE_HI_MAX = 0x1f_ffff;

/**
 * Builds a canonical {@link U64} from its two little-endian 32-bit halves.
 * @param lo bits 0..31, an unsigned 32-bit integer.
 * @param hi bits 32..63, an unsigned 32-bit integer.
 * @returns a number when the value is a safe integer, else a bigint. Never rounds.
 */
export function u64FromParts(lo: number, hi: number): U64 {
  if (hi <= SAFE_HI_MAX) return hi * TWO_POW_32 + lo;
  return (BigInt(hi) << 32n) | BigInt(lo);
}

/**
 * Normalises any integer value to canonical {@link U64} form.
 * @throws RangeError when the value is negative, not an integer, or above 2^64 - 1.
 */
export function toU64(value: number | bigint): U64 {
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new RangeError(`not an exact unsigned 64-bit integer: ${value}`);
    }
    return value;
  }
  if (value < 0n || value > U64_MAX) throw new RangeError(`out of u64 range: ${value}`);
  return value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
}

/** Low 32 bits of a {@link U64}, as an unsigned integer. */
export function u64Lo(v: U64): number {
  if (typeof v === "number") return v % TWO_POW_32;
  return Number(v & 0xffff_ffffn);
}

/** High 32 bits of a {@link U64}, as an unsigned integer. */
export function u64Hi(v: U64): number {
  if (typeof v === "number") return Math.floor(v / TWO_POW_32);
  return Number((v >> 32n) & 0xffff_ffffn);
}

/**
 * Exact sum `a + b` of a u64 and a non-negative safe integer.
 * @returns the canonical sum, or `null` when it exceeds 2^64 - 1 (a wrapping address: spec §2.7.5
 * forbids buffers that wrap, and HOSTILE_INPUTS #15 requires an error, not a wrap).
 */
export function u64Add(a: U64, b: number): U64 | null {
  if (typeof a === "number") {
    const s = a + b;
    if (s <= Number.MAX_SAFE_INTEGER) return s;
  }
  const s = BigInt(a) + BigInt(b);
  if (s > U64_MAX) return null;
  return toU64(s);
}

/** Exact comparison of two u64 values: negative, zero or positive like `a - b`. */
export function u64Compare(a: U64, b: U64): number {
  if (typeof a === "number" && typeof b === "number") return a - b;
  const d = BigInt(a) - BigInt(b);
  return d < 0n ? -1 : d > 0n ? 1 : 0;
}

/**
 * Formats a u64 as `0x` followed by 16 hex digits, for error messages and dumps. Never throws: a
 * value that is not an unsigned 64-bit integer (a caller bug reported inside an error message) is
 * printed as it is, e.g. `0x1000.5` becomes `4096.5`.
 */
export function hex64(v: U64): string {
  if (typeof v === "number" ? !Number.isSafeInteger(v) || v < 0 : v < 0n || v > U64_MAX) {
    return String(v);
  }
  return "0x" + BigInt(v).toString(16).padStart(16, "0");
}
