/**
 * The memory layer's error: an access that no guest-physical region backs completely.
 * @module
 */

import { hex64 } from "./u64.ts";

/**
 * Why a guest-physical access failed.
 * - `unmapped`: the first byte is in no region (a hole, or beyond RAM).
 * - `straddle`: the access starts in a region but runs past its end.
 * - `invalid`: the address or length is not a non-negative safe integer (or the range wraps).
 */
export type MemoryFaultKind = "unmapped" | "straddle" | "invalid";

/**
 * Thrown by {@link GuestMemory} for an access outside every region, or one that straddles a
 * region's end. Carries the guest physical address (GPA) and length in bytes of the access.
 */
export class MemoryFault extends Error {
  /** Stable error code, `MEMORY_FAULT`. */
  readonly code = "MEMORY_FAULT" as const;
  /** Why the access failed. */
  readonly kind: MemoryFaultKind;
  /** GPA of the first byte of the access. */
  readonly gpa: number;
  /** Length of the access in bytes. */
  readonly length: number;

  /**
   * Creates a fault for an access of `length` bytes at `gpa`.
   * @param kind why the access failed.
   * @param gpa guest physical address of the first byte.
   * @param length access length in bytes.
   */
  constructor(kind: MemoryFaultKind, gpa: number, length: number) {
    const where = Number.isSafeInteger(gpa) && gpa >= 0 ? hex64(gpa) : String(gpa);
    const why = kind === "unmapped"
      ? "no guest memory region contains it"
      : kind === "straddle"
      ? "it runs past the end of its guest memory region"
      : "address or length is not a non-negative safe integer";
    super(`MEMORY_FAULT: access of ${length} bytes at GPA ${where} failed: ${why}`);
    this.name = "MemoryFault";
    this.kind = kind;
    this.gpa = gpa;
    this.length = length;
  }
}
