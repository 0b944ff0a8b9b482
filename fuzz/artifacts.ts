/**
 * Campaign artifacts, libFuzzer style: one file per finding in a directory outside the source tree
 * (`--artifacts DIR`, default a new temp directory): `failure-<target>-<hash>.json` (a corpus
 * entry, replayable with `--replay`), `crash-<target>-<slice>.txt` and `timeout-<target>-<slice>.txt`
 * (a target that crashed or hung: its unit seed and the runner's message).
 * @module
 */

import { corpusEntry } from "./corpus.ts";
import type { CorpusOutcome } from "./report.ts";
import type { UnitResult } from "./runner.ts";

/** Whether a crash message is the campaign watchdog's "no result" (a hang). */
export function isTimeout(crash: string): boolean {
  return /^no result after /.test(crash) || /\btimed? ?out\b/i.test(crash);
}

/** Why `dir` cannot hold artifacts (one line with the fix), or `null`. */
export function artifactsDirProblem(dir: string): string | null {
  try {
    if (!Deno.statSync(dir).isDirectory) {
      return `--artifacts: ${dir} is not a directory. Fix: name a directory (it is created)`;
    }
    return null;
  } catch {
    const slash = dir.replace(/\/+$/, "").lastIndexOf("/");
    const parent = slash < 0 ? "." : slash === 0 ? "/" : dir.slice(0, slash);
    try {
      if (Deno.statSync(parent).isDirectory) return null;
    } catch { /* below */ }
    return `--artifacts: parent directory ${parent} does not exist. Fix: create it first ` +
      `(mkdir -p ${parent})`;
  }
}

/**
 * Writes the artifacts of `results` into `dir` (created; undefined: a new temp directory).
 * Returns the directory and the files written.
 */
export async function writeArtifacts(
  dir: string | undefined,
  results: readonly UnitResult[],
  _corpus?: CorpusOutcome,
): Promise<{ dir: string; files: string[] }> {
  const out = dir ?? await Deno.makeTempDir({ prefix: "virtq-fuzz-artifacts-" });
  await Deno.mkdir(out, { recursive: true });
  const files: string[] = [];
  const seen = new Set<string>();
  for (const r of results) {
    if (r.crash !== undefined) {
      const kind = isTimeout(r.crash) ? "timeout" : "crash";
      const file = `${out}/${kind}-${r.target}-${r.slice}.txt`;
      await Deno.writeTextFile(
        file,
        `target: ${r.target}\nslice: ${r.slice}\nunit seed: ${r.seed}\nruns before: ${r.runs}\n` +
          `${r.crash}\nreproduce: deno task fuzz --target ${r.target} --seed <campaign seed> ` +
          "(the unit seed above is derived from it)\n",
      );
      files.push(file);
    }
    for (const f of r.failures) {
      if (seen.has(f.signature.hash)) continue;
      seen.add(f.signature.hash);
      const file = `${out}/failure-${r.target}-${f.signature.hash}.json`;
      await Deno.writeTextFile(file, JSON.stringify(corpusEntry(f), null, 2) + "\n");
      files.push(file);
    }
  }
  return { dir: out, files };
}
