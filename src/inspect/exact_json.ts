/**
 * JSON parsing that keeps 64-bit integers exact.
 *
 * QEMU prints descriptor addresses and feature masks as plain JSON integers up to 2^64 - 1
 * (e.g. a stale indirect-table entry `18446616370416736320`); `JSON.parse` would round them to the
 * nearest double. This parser uses the JSON.parse source-text access of the reviver to return
 * such integers as canonical {@link U64} values (a `bigint` above 2^53 - 1).
 *
 * @module
 */

import { toU64 } from "../memory/u64.ts";

/**
 * Parses JSON text; every integer literal above `Number.MAX_SAFE_INTEGER` becomes an exact
 * `bigint` (canonical {@link U64}); every other value is as `JSON.parse` gives it.
 * @param text JSON text.
 * @returns the parsed value.
 * @throws SyntaxError on malformed JSON (the caller names the file).
 */
export function parseExactJson(text: string): unknown {
  return JSON.parse(
    text,
    function (_key: string, value: unknown, context?: { source?: string }) {
      if (
        typeof value === "number" && !Number.isSafeInteger(value) &&
        context?.source !== undefined &&
        /^[0-9]+$/.test(context.source)
      ) return toU64(BigInt(context.source));
      return value;
    } as (this: unknown, key: string, value: unknown) => unknown,
  );
}
