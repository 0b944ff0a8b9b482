/**
 * Corpus tools (`deno task fuzz:corpus`): merging corpora keeping one entry per signature, and
 * minimising a hand-written or found input (`tmin`) while it keeps failing with the same
 * signature.
 * @module
 */

import { type CorpusEntry, corpusPath, loadCorpus } from "./corpus.ts";
import type { FuzzTarget } from "./target.ts";
import { signatureOf } from "./signature.ts";

/** What {@link mergeCorpora} did. */
export interface MergeOutcome {
  /** Entries read from all inputs. */
  read: number;
  /** Entries written (one per target + signature hash). */
  written: number;
  /** Entries dropped because another input had the same signature (the smaller input is kept). */
  duplicates: number;
}

/**
 * Merges the corpora in `inputs` (each `<dir>/<target>/<hash>.json`) into `out`, one entry per
 * target and signature; of two entries with one signature the one with the shorter `inputText`
 * wins. @throws CorpusError for an invalid file in an input.
 */
export async function mergeCorpora(inputs: readonly string[], out: string): Promise<MergeOutcome> {
  const best = new Map<string, CorpusEntry>();
  let read = 0;
  for (const dir of inputs) {
    for (const { entry } of await loadCorpus(dir)) {
      read++;
      const key = `${entry.target}/${entry.error.hash}`;
      const old = best.get(key);
      if (old === undefined || entry.inputText.length < old.inputText.length) best.set(key, entry);
    }
  }
  for (const e of best.values()) {
    const file = corpusPath(out, e.target, e.error.hash);
    await Deno.mkdir(file.slice(0, file.lastIndexOf("/")), { recursive: true });
    await Deno.writeTextFile(file, JSON.stringify(e, null, 2) + "\n");
  }
  return { read, written: best.size, duplicates: read - best.size };
}

/** Smaller variants of a JSON value, simplest first (for {@link minimiseInput}). */
export function* smaller(v: unknown): Generator<unknown> {
  if (Array.isArray(v)) {
    if (v.length > 0) yield [];
    for (let n = v.length >> 1; n >= 1; n >>= 1) {
      for (let i = 0; i + n <= v.length; i += n) yield [...v.slice(0, i), ...v.slice(i + n)];
    }
    for (let i = 0; i < v.length; i++) {
      for (const s of smaller(v[i])) yield [...v.slice(0, i), s, ...v.slice(i + 1)];
    }
  } else if (typeof v === "number" && Number.isFinite(v) && v !== 0) {
    yield 0;
    if (Number.isInteger(v) && Math.abs(v) > 1) yield Math.trunc(v / 2);
    if (v < 0) yield -v;
  } else if (typeof v === "string" && v.length > 0) {
    yield "";
    // chunks of halving sizes, and pairs (one byte of a hex string)
    const sizes = new Set([2]);
    for (let n = v.length >> 1; n >= 1; n >>= 1) sizes.add(n);
    for (const n of [...sizes].sort((a, b) => b - a)) {
      for (let i = 0; i + n <= v.length; i += n) yield v.slice(0, i) + v.slice(i + n);
    }
    if (/^[0-9a-f]+$/i.test(v) && /[^0]/.test(v)) yield "0".repeat(v.length);
  } else if (typeof v === "boolean" && v) {
    yield false;
  } else if (v !== null && typeof v === "object") {
    const o = v as Record<string, unknown>;
    for (const k of Object.keys(o)) {
      for (const s of smaller(o[k])) yield { ...o, [k]: s };
    }
  }
}

/** Result of {@link minimiseInput}. */
export interface TminResult {
  /** The smallest encoded input found that still fails with the same signature. */
  input: unknown;
  /** The signature kept. */
  signature: string;
  /** Candidates tried. */
  tries: number;
  /** Steps that made the input smaller. */
  steps: number;
}

/**
 * Greedy delta minimisation of an encoded input (`target.encode` form): tries
 * {@link smaller} variants, keeps any that decodes and still fails with the same signature
 * hash, until none does or `maxTries` is reached. @throws Error when the input does not fail.
 */
export function minimiseInput(
  target: FuzzTarget<unknown>,
  encoded: unknown,
  maxTries = 20_000,
): TminResult {
  if (target.decode === undefined) {
    throw new Error(`target ${target.name} has no decode, so its inputs cannot be minimised`);
  }
  const decode = target.decode.bind(target);
  const failure = (enc: unknown): string | null => {
    let input: unknown;
    try {
      input = decode(enc);
    } catch {
      return null; // not a valid input of the target
    }
    try {
      target.run(input);
      return null;
    } catch (e) {
      return signatureOf(target.name, e).hash;
    }
  };
  const want = failure(encoded);
  if (want === null) throw new Error("the input does not fail: nothing to minimise");
  let cur = encoded;
  let tries = 0;
  let steps = 0;
  let improved = true;
  while (improved && tries < maxTries) {
    improved = false;
    for (const cand of smaller(cur)) {
      if (++tries > maxTries) break;
      if (failure(cand) === want) {
        cur = cand;
        steps++;
        improved = true;
        break;
      }
    }
  }
  return { input: cur, signature: want, tries, steps };
}
