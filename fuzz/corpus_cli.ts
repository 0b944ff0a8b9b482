/**
 * `deno task fuzz:corpus`: corpus tools.
 *
 * - `merge OUT IN...`: merge corpora, one entry per target and signature (the smaller input wins).
 * - `tmin FILE [--out FILE]`: minimise the input of a corpus entry, or of a hand-written
 *   `{ "target": NAME, "input": ... }` file, while it fails with the same signature.
 * @module
 */

import fc from "fast-check";
import { CORPUS_FORMAT, type CorpusEntry, CorpusEntrySchema, CorpusError } from "./corpus.ts";
import { mergeCorpora, minimiseInput } from "./corpus_tools.ts";
import { messageOf, signatureOf } from "./signature.ts";
import { outputPathProblem } from "./output_paths.ts";
import type { FuzzTarget } from "./target.ts";

/** `--help` text. */
export const CORPUS_HELP = `deno task fuzz:corpus merge OUT IN...
deno task fuzz:corpus tmin FILE [--out FILE]

merge   merges corpus directories IN... into OUT (<OUT>/<target>/<hash>.json), keeping one entry
        per target and failure signature (of two, the smaller input); e.g. the main corpus and
        the new-corpus artifacts of CI shards
tmin    minimises the input of FILE (a corpus entry, or a hand-written {"target", "input"} file
        in the target's encoded form) while the target still fails with the same signature;
        prints the smaller input, or writes it as a corpus entry with --out FILE
  -h, --help   this help

Exit status: 0 done, 2 bad input (one line naming the file and the fix).`;

class Usage extends Error {}

async function tmin(
  file: string,
  out: string | undefined,
  targets: readonly FuzzTarget<unknown>[],
) {
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(await Deno.readTextFile(file));
  } catch (e) {
    throw new Usage(
      `${file}: cannot read JSON (${
        messageOf(e).split("\n")[0]
      }). Fix: pass a corpus entry or {"target", "input"}`,
    );
  }
  if (
    typeof json !== "object" || json === null || typeof json.target !== "string" ||
    !("input" in json)
  ) {
    throw new Usage(
      `${file}: needs fields "target" (a name from deno task fuzz --list) and "input" (the target's encoded input). Fix: add them`,
    );
  }
  const target = targets.find((t) => t.name === json.target);
  if (target === undefined) {
    throw new Usage(
      `${file}: field "target": "${json.target}" is not registered. Fix: use a name from deno task fuzz --list`,
    );
  }
  let r;
  try {
    r = minimiseInput(target, json.input);
  } catch (e) {
    throw new Usage(
      `${file}: ${
        messageOf(e).split("\n")[0]
      }. Fix: pass an input that fails (replay it with deno task fuzz --replay)`,
    );
  }
  const input = target.decode!(r.input);
  let error: unknown;
  try {
    target.run(input);
  } catch (e) {
    error = e;
  }
  const sig = signatureOf(target.name, error);
  const entry: CorpusEntry = {
    format: CORPUS_FORMAT,
    target: target.name,
    seed: typeof json.seed === "number" ? json.seed : 0,
    path: typeof json.path === "string" ? json.path : "0",
    input: r.input,
    inputText: JSON.stringify(r.input),
    error: {
      oracle: sig.oracle,
      code: sig.code,
      signature: sig.text,
      hash: sig.hash,
      message: messageOf(error),
    },
    fastCheckVersion: fc.__version,
    date: new Date().toISOString(),
  };
  CorpusEntrySchema.parse(entry);
  const before = JSON.stringify(json.input).length;
  console.log(
    `tmin: ${target.name} ${sig.text}: ${before} -> ${entry.inputText.length} characters in ` +
      `${r.steps} step(s), ${r.tries} tries`,
  );
  if (out === undefined) console.log(JSON.stringify(r.input, null, 2));
  else {
    await Deno.writeTextFile(out, JSON.stringify(entry, null, 2) + "\n");
    console.log(
      `tmin: wrote ${out} (move it to fuzz/corpus/${target.name}/${sig.hash}.json to keep it)`,
    );
  }
}

/** Runs the CLI; returns the exit status. */
export async function corpusMain(
  args: readonly string[],
  loadTargets: () => Promise<readonly FuzzTarget<unknown>[]>,
): Promise<number> {
  try {
    const [cmd, ...rest] = args;
    if (cmd === undefined) {
      throw new Usage("no command. Fix: deno task fuzz:corpus merge OUT IN... or tmin FILE");
    }
    if (cmd === "-h" || cmd === "--help") {
      console.log(CORPUS_HELP);
      return 0;
    }
    const flag = rest.find((a) => a.startsWith("-") && a !== "--out");
    if (flag !== undefined) throw new Usage(`${flag}: unknown flag. Fix: see --help`);
    if (cmd === "merge") {
      const [outDir, ...inputs] = rest;
      if (outDir === undefined || inputs.length === 0) {
        throw new Usage(
          "merge: needs OUT and at least one IN. Fix: deno task fuzz:corpus merge OUT IN...",
        );
      }
      for (const d of inputs) {
        try {
          if (!Deno.statSync(d).isDirectory) throw new Error("not a directory");
        } catch (e) {
          throw new Usage(
            `merge: ${d}: ${messageOf(e).split("\n")[0]}. Fix: pass corpus directories`,
          );
        }
      }
      const probe = outputPathProblem("OUT", `${outDir.replace(/\/+$/, "")}/.probe`);
      if (probe !== null && !/does not exist/.test(probe)) throw new Usage(`merge: ${probe}`);
      const r = await mergeCorpora(inputs, outDir);
      console.log(
        `fuzz:corpus merge: ${r.read} entries read, ${r.written} written to ${outDir}, ` +
          `${r.duplicates} duplicate signature(s) dropped`,
      );
      return 0;
    }
    if (cmd === "tmin") {
      const outAt = rest.indexOf("--out");
      const out = outAt >= 0 ? rest[outAt + 1] : undefined;
      if (outAt >= 0 && out === undefined) throw new Usage("--out: needs a value. Fix: --out FILE");
      const files = rest.filter((_, i) => i !== outAt && i !== outAt + 1);
      if (files.length !== 1) {
        throw new Usage("tmin: needs one FILE. Fix: deno task fuzz:corpus tmin FILE");
      }
      if (out !== undefined) {
        const p = outputPathProblem("--out", out);
        if (p !== null) throw new Usage(p);
      }
      await tmin(files[0], out, await loadTargets());
      return 0;
    }
    throw new Usage(`${cmd}: unknown command. Fix: use merge or tmin (see --help)`);
  } catch (e) {
    if (e instanceof Usage || e instanceof CorpusError) {
      console.error(`fuzz:corpus: ${e.message}`);
      return 2;
    }
    throw e;
  }
}

if (import.meta.main) {
  Deno.exit(
    await corpusMain(Deno.args, async () => (await import("./targets/mod.ts")).TARGETS),
  );
}
