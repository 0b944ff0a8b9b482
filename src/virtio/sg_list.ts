/**
 * A reusable scatter-gather list: the segments (GPA + length in bytes) of one buffer as the
 * driver hands it to `DriverQueue.add`. Backed by typed arrays so that building and adding a
 * buffer allocates nothing once the list exists.
 * @module
 */

import { VirtqError } from "./errors.ts";

/** Segments of a buffer on the driver side, each a guest physical address and a byte length. */
export class SgList {
  /** GPA of each segment (index < `count`). */
  gpa: Float64Array;
  /** Length in bytes of each segment (index < `count`). */
  len: Uint32Array;
  /** Number of segments in use. */
  count = 0;

  /** Creates an empty list.
   * @param capacity initial segment capacity (grows on demand, cold path). */
  constructor(capacity = 8) {
    this.gpa = new Float64Array(capacity);
    this.len = new Uint32Array(capacity);
  }

  /**
   * Builds a list from `[gpa, len]` pairs (convenience for tests and tools), validating each.
   * @throws VirtqError `SEGMENT_INVALID` naming the segment when a GPA is not a non-negative
   * safe integer or a length is not an integer in 0..2^32-1 (`push` itself does not check: it is
   * the hot path, and would silently wrap -5 to 4294967291).
   */
  static of(...segments: ReadonlyArray<readonly [number, number]>): SgList {
    const l = new SgList(Math.max(1, segments.length));
    segments.forEach(([g, n], i) => {
      if (!Number.isSafeInteger(g) || g < 0) {
        throw new VirtqError(
          "SEGMENT_INVALID",
          `segment ${i}: gpa ${String(g)} is not a non-negative safe integer ` +
            "(fix: pass a guest physical address such as 0x1000)",
          { index: i },
        );
      }
      if (!Number.isInteger(n) || n < 0 || n > 0xffff_ffff) {
        throw new VirtqError(
          "SEGMENT_INVALID",
          `segment ${i} at 0x${g.toString(16)}: len ${String(n)} is not an integer in ` +
            "0..0xffffffff (fix: pass the byte length of the segment)",
          { index: i },
        );
      }
      l.push(g, n);
    });
    return l;
  }

  /** Empties the list, keeping its storage. */
  clear(): this {
    this.count = 0;
    return this;
  }

  /**
   * Appends a segment.
   * @param gpa guest physical address of the first byte (safe integer).
   * @param len length in bytes, 0..2^32-1.
   */
  push(gpa: number, len: number): this {
    if (this.count === this.gpa.length) this.#grow();
    this.gpa[this.count] = gpa;
    this.len[this.count] = len;
    this.count++;
    return this;
  }

  /** Total bytes of all segments. */
  totalBytes(): number {
    let t = 0;
    for (let i = 0; i < this.count; i++) t += this.len[i];
    return t;
  }

  #grow(): void {
    const n = Math.max(8, this.gpa.length * 2);
    const g = new Float64Array(n);
    g.set(this.gpa);
    const l = new Uint32Array(n);
    l.set(this.len);
    this.gpa = g;
    this.len = l;
  }
}

/** An always-empty list, for buffers with no readable or no writable part. Never push to it. */
export const EMPTY_SG: SgList = Object.freeze(new SgList(0)) as SgList;
