/**
 * `deno task fuzz:matrix --shards N --seed S [fuzz options]`: runs the same shard matrix as the
 * CI workflows (`.github/workflows/fuzz.yml`, `ci/gitlab-ci.yml`) on this machine, one process per
 * shard in parallel, then merges the shard reports with `fuzz:merge` (which fails on a missing
 * shard). Output: `OUT/shard-I.json|xml|log`, `OUT/merged.json|xml`.
 * @module
 */

import { mergeMain } from "./merge.ts";
import { oneLine } from "./output_paths.ts";

/** `--help` text of `deno task fuzz:matrix`. */
export const MATRIX_HELP = `deno task fuzz:matrix --shards N --seed S [options] [-- fuzz options]

Runs shards 1..N of one campaign (seed S) as N parallel \`deno task fuzz --shard I/N --seed S\`
processes, as the CI matrix does, writes each shard's JSON, JUnit and log under OUT, then merges
them with fuzz:merge into OUT/merged.json and OUT/merged.xml. Exits like fuzz:merge: 0 clean,
1 findings, 2 when a shard is missing or an input is bad.

Options:
  --shards N       number of shards (1..64)
  --seed S         campaign seed (0..2147483647), the same on every shard
  --out DIR        output directory (default .fuzz-matrix)
  --runs N         passed to every shard (runs per unit)
  --seconds N      passed to every shard (time budget of each shard)
  --target NAME    passed to every shard (repeatable)
  --workers N      Web Workers per shard (default 1)
  --corpus DIR     passed to every shard (default fuzz/corpus)
  -h, --help       this help

Example:
  deno task fuzz:matrix --shards 4 --seed 1234 --runs 200
`;

/** Parsed options of `fuzz:matrix`. */
export interface MatrixOptions {
  /** Number of shards. */
  shards: number;
  /** Campaign seed. */
  seed: number;
  /** Output directory. */
  out: string;
  /** Arguments passed to every shard (budget, targets, workers, corpus). */
  pass: string[];
}

/** A bad command line: one line naming the flag and the fix. */
export class MatrixUsageError extends Error {
  /** @param message the one-line problem and fix. */
  constructor(message: string) {
    super(message);
    this.name = "MatrixUsageError";
  }
}

function int(flag: string, v: string | undefined, min: number, max: number): number {
  if (v === undefined || !/^\d+$/.test(v) || Number(v) < min || Number(v) > max) {
    throw new MatrixUsageError(
      `${flag}: "${v ?? ""}" is not an integer in ${min}..${max}. Fix: pass e.g. ${flag} ${
        min + 1
      }`,
    );
  }
  return Number(v);
}

/**
 * Parses `fuzz:matrix` arguments; `null` for `--help`. @throws {MatrixUsageError}.
 */
export function parseMatrixArgs(args: readonly string[]): MatrixOptions | null {
  let shards: number | undefined;
  let seed: number | undefined;
  let out = ".fuzz-matrix";
  let workers = "1";
  const pass: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const v = args[i + 1];
    const value = () => {
      if (v === undefined || v.startsWith("--")) {
        throw new MatrixUsageError(`${a}: needs a value. Fix: write ${a} VALUE (see --help)`);
      }
      i++;
      return v;
    };
    switch (a) {
      case "-h":
      case "--help":
        return null;
      case "--shards":
        shards = int(a, value(), 1, 64);
        break;
      case "--seed":
        seed = int(a, value(), 0, 0x7fff_ffff);
        break;
      case "--out":
        out = value();
        break;
      case "--workers":
        workers = String(int(a, value(), 0, 256));
        break;
      case "--runs":
      case "--seconds":
      case "--target":
      case "--corpus":
        pass.push(a, value());
        break;
      default:
        throw new MatrixUsageError(
          `${a}: ${a.startsWith("-") ? "unknown flag" : "unexpected argument"}. Fix: use ` +
            "--shards, --seed, --out, --runs, --seconds, --target, --workers, --corpus (see --help)",
        );
    }
  }
  if (shards === undefined) {
    throw new MatrixUsageError("--shards: missing. Fix: pass e.g. --shards 4");
  }
  if (seed === undefined) {
    throw new MatrixUsageError(
      "--seed: missing (every shard needs the same seed). Fix: pass e.g. --seed 1234",
    );
  }
  return { shards, seed, out, pass: [...pass, "--workers", workers] };
}

/** Where each shard process writes. */
export function shardFiles(
  out: string,
  index: number,
): { json: string; junit: string; log: string } {
  return {
    json: `${out}/shard-${index}.json`,
    junit: `${out}/shard-${index}.xml`,
    log: `${out}/shard-${index}.log`,
  };
}

/**
 * Runs the matrix: `fuzzMain` is the fuzz CLI module run for each shard (tests pass their own).
 * Returns the exit status of the merge (2 when a shard produced no report).
 */
export async function runMatrix(
  o: MatrixOptions,
  out: (s: string) => void,
  err: (s: string) => void,
  fuzzMain = new URL("./main.ts", import.meta.url).href,
): Promise<number> {
  try {
    await Deno.mkdir(o.out, { recursive: true });
  } catch (e) {
    err(
      `fuzz:matrix: --out: cannot create ${o.out} (${
        oneLine(e)
      }). Fix: name a writable directory\n`,
    );
    return 2;
  }
  out(`fuzz:matrix: ${o.shards} shard(s) of seed ${o.seed} in parallel, output in ${o.out}/\n`);
  const codes = await Promise.all(
    Array.from({ length: o.shards }, async (_, k) => {
      const index = k + 1;
      const f = shardFiles(o.out, index);
      for (const file of [f.json, f.junit]) await Deno.remove(file).catch(() => {});
      const cmd = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--allow-read",
          "--allow-write",
          fuzzMain,
          "--shard",
          `${index}/${o.shards}`,
          "--seed",
          String(o.seed),
          "--json",
          f.json,
          "--junit",
          f.junit,
          ...o.pass,
        ],
        stdout: "piped",
        stderr: "piped",
      });
      const r = await cmd.output();
      const dec = new TextDecoder();
      await Deno.writeTextFile(f.log, dec.decode(r.stdout) + dec.decode(r.stderr));
      out(`fuzz:matrix: shard ${index}/${o.shards} exited ${r.code} (log ${f.log})\n`);
      return r.code;
    }),
  );
  const reports: string[] = [];
  for (let i = 1; i <= o.shards; i++) {
    const f = shardFiles(o.out, i);
    try {
      await Deno.stat(f.json);
      reports.push(f.json);
    } catch {
      err(
        `fuzz:matrix: shard ${i}/${o.shards} wrote no report (exit ${
          codes[i - 1]
        }); see ${f.log}\n`,
      );
    }
  }
  if (reports.length === 0) return 2;
  return mergeMain(
    [...reports, "--json", `${o.out}/merged.json`, "--junit", `${o.out}/merged.xml`],
    out,
    err,
  );
}

if (import.meta.main) {
  const enc = new TextEncoder();
  const out = (s: string) => void Deno.stdout.writeSync(enc.encode(s));
  const err = (s: string) => void Deno.stderr.writeSync(enc.encode(s));
  let o: MatrixOptions | null;
  try {
    o = parseMatrixArgs(Deno.args);
  } catch (e) {
    err(`fuzz:matrix: ${oneLine(e)}\n`);
    Deno.exit(2);
  }
  if (o === null) {
    out(MATRIX_HELP);
    Deno.exit(0);
  }
  Deno.exit(await runMatrix(o, out, err));
}
