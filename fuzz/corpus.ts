/**
 * The corpus of counterexamples: `fuzz/corpus/<target>/<signature-hash>.json`, one file per
 * distinct failure signature (target + oracle + error code). Each file is a regression test:
 * `tests/fuzz/corpus_replay_test.ts` replays it and expects the bug to be fixed.
 * @module
 */

import fc from "fast-check";
import { z } from "zod";
import { zodLine } from "./zod_line.ts";
import type { FuzzTarget } from "./target.ts";
import type { FailureRecord } from "./runner.ts";
import { messageOf, signatureOf } from "./signature.ts";

/** Format tag of corpus entries. */
export const CORPUS_FORMAT = "virtq-lab/fuzz-counterexample@1";

/** zod schema of a corpus entry. */
export const CorpusEntrySchema = z.strictObject({
  format: z.literal(CORPUS_FORMAT),
  target: z.string().regex(/^[a-z0-9]+(-[a-z0-9]+)*$/, { error: "a kebab-case target name" }),
  seed: z.int().min(0).max(0x7fff_ffff),
  path: z.string().regex(/^\d+(:\d+)*$/, { error: 'a fast-check path such as "12:0:3"' }),
  replayPath: z.string().optional(),
  /** `target.encode` of the shrunk input; absent when the target does not encode. */
  input: z.unknown().optional(),
  /** The shrunk input as fast-check prints it (for people; replay does not read it). */
  inputText: z.string(),
  error: z.strictObject({
    oracle: z.string().min(1),
    code: z.string().min(1),
    signature: z.string().min(1),
    hash: z.string().regex(/^[0-9a-f]{16}$/, { error: "16 lower-case hex digits" }),
    message: z.string(),
  }),
  fastCheckVersion: z.string(),
  date: z.iso.datetime(),
});

/** A corpus entry. */
export type CorpusEntry = z.infer<typeof CorpusEntrySchema>;

/** A bad corpus file: names the file, the fields and the fix. */
export class CorpusError extends Error {
  /**
   * Creates a corpus error.
   * @param file the corpus file.
   * @param problem what is wrong, with field paths.
   * @param fix how to repair it.
   */
  constructor(file: string, problem: string, fix: string) {
    super(`${file}: ${problem}. Fix: ${fix}`);
    this.name = "CorpusError";
  }
}

/** Builds the corpus entry of a failure. */
export function corpusEntry(f: FailureRecord, date = new Date()): CorpusEntry {
  const e: CorpusEntry = {
    format: CORPUS_FORMAT,
    target: f.signature.target,
    seed: f.seed,
    path: f.path,
    inputText: f.inputText,
    error: {
      oracle: f.signature.oracle,
      code: f.signature.code,
      signature: f.signature.text,
      hash: f.signature.hash,
      message: f.message,
    },
    fastCheckVersion: fc.__version,
    date: date.toISOString(),
  };
  if (f.replayPath !== undefined) e.replayPath = f.replayPath;
  if (f.input !== undefined) e.input = f.input;
  return e;
}

/** `<dir>/<target>/<hash>.json`. */
export function corpusPath(dir: string, target: string, hash: string): string {
  return `${dir.replace(/\/+$/, "")}/${target}/${hash}.json`;
}

/**
 * Writes a failure's counterexample unless the corpus already holds its signature (then the
 * existing, possibly hand-minimised, file is kept). Returns the file and whether it is new.
 */
export async function writeCorpusEntry(
  dir: string,
  f: FailureRecord,
): Promise<{ file: string; isNew: boolean }> {
  const file = corpusPath(dir, f.signature.target, f.signature.hash);
  try {
    const old = JSON.parse(await Deno.readTextFile(file));
    // a smaller counterexample of the same signature replaces the older, larger one, so the
    // printed replay command shows the smallest input found
    if (typeof old?.inputText !== "string" || f.inputText.length >= old.inputText.length) {
      return { file, isNew: false };
    }
    await Deno.writeTextFile(file, JSON.stringify(corpusEntry(f), null, 2) + "\n");
    return { file, isNew: false };
  } catch (e) {
    if (e instanceof SyntaxError) return { file, isNew: false }; // a broken file: replay names it
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  await Deno.mkdir(file.slice(0, file.lastIndexOf("/")), { recursive: true });
  await Deno.writeTextFile(file, JSON.stringify(corpusEntry(f), null, 2) + "\n");
  return { file, isNew: true };
}

/** Parses and validates one corpus file's text. @throws {CorpusError}. */
export function parseCorpusEntry(file: string, text: string): CorpusEntry {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new CorpusError(
      file,
      `invalid JSON (${messageOf(e)})`,
      "restore the file from git or delete it",
    );
  }
  const r = CorpusEntrySchema.safeParse(json);
  if (!r.success) {
    throw new CorpusError(
      file,
      `not a corpus entry (${CORPUS_FORMAT}): ${zodLine(r.error)}`,
      "correct the named fields, or delete the file and let `deno task fuzz` find the bug again",
    );
  }
  const e = r.data;
  const parts = file.split("/");
  const [dirName, base] = [parts.at(-2), parts.at(-1)];
  // an artifact (`--artifacts DIR`) names its target and hash in the file name instead
  if (base === `failure-${e.target}-${e.error.hash}.json`) return e;
  if (dirName !== e.target) {
    throw new CorpusError(
      file,
      `field "target" is "${e.target}" but the file is in directory "${dirName}"`,
      `move it to fuzz/corpus/${e.target}/`,
    );
  }
  if (base !== `${e.error.hash}.json`) {
    throw new CorpusError(
      file,
      `field "error.hash" is "${e.error.hash}" but the file is named "${base}"`,
      `rename it to ${e.error.hash}.json`,
    );
  }
  return e;
}

/**
 * Loads and validates every `<dir>/<target>/*.json`. A missing directory is an empty corpus.
 * @throws {CorpusError} for the first bad file.
 */
export async function loadCorpus(dir: string): Promise<{ file: string; entry: CorpusEntry }[]> {
  const out: { file: string; entry: CorpusEntry }[] = [];
  const root = dir.replace(/\/+$/, "");
  let targets: Deno.DirEntry[];
  try {
    targets = [...Deno.readDirSync(root)];
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return out;
    throw e;
  }
  for (const t of targets.sort((a, b) => a.name.localeCompare(b.name))) {
    if (!t.isDirectory) {
      if (t.name.startsWith(".") || t.name === "README.md") continue;
      throw new CorpusError(
        `${root}/${t.name}`,
        "a file directly in the corpus directory",
        "corpus files live in <corpus>/<target>/<hash>.json",
      );
    }
    const files = [...Deno.readDirSync(`${root}/${t.name}`)].filter((f) => f.name.endsWith(".json"))
      .sort((a, b) => a.name.localeCompare(b.name));
    for (const f of files) {
      const file = `${root}/${t.name}/${f.name}`;
      out.push({ file, entry: parseCorpusEntry(file, await Deno.readTextFile(file)) });
    }
  }
  return out;
}

/** Outcome of replaying a corpus entry. */
export interface ReplayResult {
  /** True when the recorded failure no longer happens (the regression test passes). */
  fixed: boolean;
  /** The input that was run (decoded, or regenerated from seed and path), when known. */
  input: unknown;
  /** How it was replayed. */
  mode: "decoded-input" | "seed-path" | "seed-path-replay-path";
  /** The error of the replay, when it still fails. */
  error?: unknown;
  /** Signature of that error (compare with the entry's to see if it is the same bug). */
  signature?: string;
}

/**
 * Replays an entry against its target: the decoded input when the target has `decode` (and the
 * entry an `input`), else fast-check with `seed`, `path` (+ `replayPath`) and `endOnFailure`.
 * @throws {CorpusError} when the target name does not match or the input does not decode.
 */
export function replayEntry(
  target: FuzzTarget<unknown>,
  entry: CorpusEntry,
  file = "(entry)",
): ReplayResult {
  if (target.name !== entry.target) {
    throw new CorpusError(
      file,
      `entry is for "${entry.target}", not "${target.name}"`,
      "replay it with its own target",
    );
  }
  if (target.decode !== undefined && entry.input !== undefined) {
    let input: unknown;
    try {
      input = target.decode(entry.input);
    } catch (e) {
      throw new CorpusError(
        file,
        `field "input" does not decode for target ${target.name}: ${messageOf(e)}`,
        "delete the file and let `deno task fuzz` find the bug again",
      );
    }
    try {
      target.run(input);
      return { fixed: true, input, mode: "decoded-input" };
    } catch (error) {
      return {
        fixed: false,
        input,
        mode: "decoded-input",
        error,
        signature: signatureOf(target.name, error).text,
      };
    }
  }
  const useReplayPath = entry.replayPath !== undefined && target.replayArbitrary !== undefined;
  const arb = useReplayPath ? target.replayArbitrary!(entry.replayPath!) : target.arbitrary();
  let last: unknown;
  const details = fc.check(
    fc.property(arb, (input) => {
      last = input;
      target.run(input);
    }),
    { seed: entry.seed, path: entry.path, endOnFailure: true },
  );
  const mode = useReplayPath ? "seed-path-replay-path" : "seed-path";
  if (!details.failed) return { fixed: true, input: last, mode };
  return {
    fixed: false,
    input: details.counterexample?.[0] ?? last,
    mode,
    error: details.errorInstance,
    signature: signatureOf(target.name, details.errorInstance).text,
  };
}
