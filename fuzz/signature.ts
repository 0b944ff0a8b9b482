/**
 * Failure signatures (the de-duplication key of the corpus) and small deterministic hashes.
 * @module
 */

import { OracleFailure } from "./target.ts";
import { errorCodeOf } from "./observe.ts";

/** What identifies one bug: the target, the violated oracle and the error code involved. */
export interface FailureSignature {
  /** Target name. */
  target: string;
  /** Violated oracle (`OracleFailure.oracle`), or `"uncaught-exception"`. */
  oracle: string;
  /** Catalogue code of the underlying error (`VirtqError.code`, ...), the error's name, or `"-"`. */
  code: string;
  /** `target/oracle/code`. */
  text: string;
  /** 16 hex digits of FNV-1a 64 over {@link text}: the corpus file name. */
  hash: string;
}

const MASK64 = (1n << 64n) - 1n;

/** FNV-1a 64-bit hash of a string's UTF-8 bytes, as 16 lower-case hex digits. */
export function fnv1a64(text: string): string {
  let h = 0xcbf29ce484222325n;
  for (const b of new TextEncoder().encode(text)) {
    h ^= BigInt(b);
    h = (h * 0x100000001b3n) & MASK64;
  }
  return h.toString(16).padStart(16, "0");
}

/** A fast-check seed (31-bit non-negative integer) derived deterministically from `parts`. */
export function deriveSeed(...parts: readonly (string | number)[]): number {
  return Number(BigInt("0x" + fnv1a64(parts.join("|"))) & 0x7fff_ffffn);
}

/** Classifies a thrown value into the signature of the failure it represents. */
export function signatureOf(target: string, err: unknown): FailureSignature {
  let oracle: string;
  let code: string | undefined;
  if (err instanceof OracleFailure) {
    oracle = err.oracle;
    code = errorCodeOf(err.cause);
  } else {
    oracle = "uncaught-exception";
    code = errorCodeOf(err) ?? (err instanceof Error ? err.name : typeof err);
  }
  const text = `${target}/${oracle}/${code ?? "-"}`;
  return { target, oracle, code: code ?? "-", text, hash: fnv1a64(text) };
}

/** The message of a thrown value, whatever it is. */
export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
