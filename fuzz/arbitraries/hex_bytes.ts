/**
 * Raw bytes as a lower-case hex string (JSON-safe corpus form): schema, type and arbitrary. The
 * arbitrary maps `fc.uint8Array` with an unmapper, as fast-check composes its own arbitraries,
 * so a hex string from a corpus file can be shrunk as the bytes it encodes.
 *
 * @module
 */

import fc from "fast-check";
import { z } from "zod";

/** zod schema: an even number of lower-case hex digits. */
export const hexBytesSchema = z.string().regex(/^([0-9a-f]{2})*$/);

/** Bytes as lower-case hex, two digits per byte. */
export type HexBytes = z.infer<typeof hexBytesSchema>;

const HEX = Array.from({ length: 256 }, (_, x) => x.toString(16).padStart(2, "0"));

/** Bytes to lower-case hex. */
export function toHex(bytes: Uint8Array): HexBytes {
  let s = "";
  for (let i = 0; i < bytes.length; i++) s += HEX[bytes[i]];
  return s;
}

/** Lower-case hex back to bytes. @throws Error when `v` is not {@link HexBytes}. */
export function fromHex(v: unknown): Uint8Array<ArrayBuffer> {
  const hex = hexBytesSchema.parse(v);
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** Hex strings of `minLength..maxLength` random bytes. */
export function hexBytesArbitrary(
  constraints: { minLength: number; maxLength: number },
): fc.Arbitrary<HexBytes> {
  return fc.uint8Array(constraints).map(toHex, fromHex);
}
