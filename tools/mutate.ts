/**
 * `deno task mutate`: mutation score of the fuzz campaign on the engine (`src/virtio`,
 * `src/dma`, `src/devices`).
 *
 * Mutants come from `tools/mutate/operators.ts` (operators over the TypeScript AST with
 * ts-morph; StrykerJS was tried first: 10.x needs Node >= 22, and 8.x's command runner builds
 * every mutant into instrumented code that picks the active one from the environment at run
 * time, slowing every hot-path expression, see docs/FUZZING.md). Each
 * sampled mutant is written into a private copy of the repository, a fixed-seed fuzz campaign
 * (`fuzz/main.ts --seconds S --seed N`) runs against it, and the mutant is
 *
 * - `killed` when the campaign reports a failure (exit 1) or hangs past its limit,
 * - `survived` when the campaign is clean (exit 0),
 * - `error` when the campaign cannot start (exit 2: a mutant that breaks module loading).
 *
 * Score = killed / (killed + survived). Survivors are printed as diffs.
 *
 * Usage: `deno task mutate [--seconds 60] [--sample 20] [--seed 1] [--file PREFIX]...
 * [--target NAME]... [--runs N] [--workers N] [--json FILE] [--list]`.
 * Exit 0 when it ran (whatever the score), 2 on bad usage or when the unmutated campaign fails.
 *
 * @module
 */

import { parseArgs } from "@std/cli/parse-args";
import {
  applyMutant,
  type Mutant,
  mutantDiff,
  mutantsOf,
  sampleMutants,
} from "./mutate/operators.ts";

/** Folders mutated by default. */
export const DEFAULT_FOLDERS = ["src/virtio/", "src/dma/", "src/devices/"];

/**
 * Files under {@link DEFAULT_FOLDERS} that are not engine code, so none of their mutants is
 * drawn (the same list as `NOT_ENGINE` in `fuzz/coverage.ts`, which leaves them out of the
 * coverage totals; tests/tools/mutate_test.ts keeps the two equal). `src/virtio/ring_builder.ts`
 * is the driver-side ring writer for tests, fuzz targets and benches (no engine code, no
 * checks; no engine file imports it): a mutant there changes the rings a target writes, not a
 * rule the engine applies. Its mutants are still generated and shuffled with the rest, and
 * skipped after the shuffle, so a seed draws the same engine mutants as before they were
 * left out (see docs/FUZZING.md, "Mutation score").
 */
export const NOT_MUTATED: readonly string[] = ["src/virtio/ring_builder.ts"];

/**
 * The targets that exercise each folder (the default campaign of a mutant there, so its
 * seconds are not spread over targets that never load the mutated file).
 */
export const FOCUS: Readonly<Record<string, readonly string[]>> = {
  "src/virtio/": [
    "split-hostile-driver",
    "split-hostile-device",
    "model-split",
    "model-packed",
    "packed-hostile-driver",
    "packed-hostile-device",
    "differential",
    "dma-chains",
    "viommu-hostile-device",
    "restore",
  ],
  "src/dma/": ["dma-modes", "dma-invariants", "dma-chains", "viommu-stack", "topology"],
  "src/devices/": [
    "viommu-requests",
    "viommu-stack",
    "viommu-hostile-device",
    "differential",
    "topology",
  ],
};

/** The `--target` flags of a mutant's campaign in `file` (focus within the selection). */
export function focusTargets(file: string, selected: readonly string[], focus: boolean): string[] {
  const f = focus ? Object.entries(FOCUS).find(([pre]) => file.startsWith(pre))?.[1] : undefined;
  let names: readonly string[] = selected;
  if (f !== undefined) {
    const both = selected.length > 0 ? f.filter((n) => selected.includes(n)) : f;
    names = both.length > 0 ? both : selected;
  }
  return names.flatMap((n) => ["--target", n]);
}

/** Outcome of one mutant. */
export interface MutantResult {
  /** The mutant. */
  mutant: Omit<Mutant, "start" | "end">;
  /** Outcome. */
  status: "killed" | "survived" | "error";
  /** Wall time of its campaign (ms). */
  ms: number;
  /** Failure signatures the campaign reported (killed mutants). */
  signatures: string[];
  /** The diff (every mutant; the summary prints survivors'). */
  diff: string;
}

/** The JSON report (`--json`). */
export interface MutateReport {
  /** Format tag. */
  schema: "virtq-lab/mutate@1";
  /** Campaign seed and per-mutant seconds. */
  seed: number;
  /** Seconds of fuzzing per mutant. */
  secondsPerMutant: number;
  /** Mutants generated over the selected files ({@link NOT_MUTATED}'s not counted). */
  generated: number;
  /** Mutants run. */
  sampled: number;
  /** Counts. */
  killed: number;
  /** Mutants the campaign did not notice. */
  survived: number;
  /** Mutants whose campaign could not start. */
  errors: number;
  /** killed / (killed + survived), 0..1. */
  score: number;
  /** Every mutant's outcome. */
  results: MutantResult[];
}

const HELP = `deno task mutate: mutation score of the fuzz campaign on the engine

Usage: deno task mutate [options]
  --seconds N    total fuzz budget, split evenly across the sampled mutants (default 60)
  --sample N     mutants to draw (seeded) from all generated (default 20; 0: all)
  --seed N       sampling seed and fuzz campaign seed (default 1)
  --file PREFIX  mutate only files under PREFIX (repeatable; default src/virtio/, src/dma/,
                 src/devices/; src/virtio/ring_builder.ts, a test-support ring writer, never)
  --target NAME  fuzz only NAME (repeatable; default every registered target); with focus on,
                 a mutant's campaign runs the targets of its folder among these
  --no-focus     run every selected target for every mutant (default: only the targets that
                 exercise the mutant's folder, see FOCUS in tools/mutate.ts)
  --runs N       cap runs per target (deterministic campaigns; with --seconds still bounded)
  --workers N    fuzz workers per campaign (default: number of cores)
  --json FILE    write the JSON report
  --list         list the mutants that would run, do not run them
  -h, --help     this help
`;

function usage(msg: string): never {
  console.error(`mutate: ${msg}. Fix: see deno task mutate --help`);
  Deno.exit(2);
}

async function listTs(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    const p = `${dir}/${e.name}`;
    if (e.isDirectory) out.push(...await listTs(p));
    else if (e.name.endsWith(".ts") && !e.name.endsWith(".d.ts")) out.push(p);
  }
  return out.sort();
}

async function copyTree(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const e of Deno.readDir(from)) {
    if (e.name === ".git" || e.name === "node_modules" || e.name === "coverage") continue;
    const a = `${from}/${e.name}`, b = `${to}/${e.name}`;
    if (e.isDirectory) await copyTree(a, b);
    else if (e.isFile) await Deno.copyFile(a, b);
  }
}

interface Campaign {
  code: number;
  signatures: string[];
  ms: number;
}

async function campaign(
  root: string,
  seconds: number,
  seed: number,
  extra: string[],
): Promise<Campaign> {
  const json = `${root}/.mutate-report.json`;
  await Deno.remove(json).catch(() => {});
  const args = [
    "run",
    "--allow-read",
    "--allow-write",
    "--allow-env=VIRTQ_FIXTURES_DIR",
    "fuzz/main.ts",
    "--seconds",
    String(seconds),
    "--seed",
    String(seed),
    "--corpus",
    `${root}/.mutate-corpus`,
    "--json",
    json,
    ...extra,
  ];
  const t0 = performance.now();
  const child = new Deno.Command(Deno.execPath(), {
    args,
    cwd: root,
    stdout: "null",
    stderr: "null",
  }).spawn();
  // A mutant can make the engine loop: the runner's own watchdog ends hung units, this is the
  // backstop (twice the budget plus startup).
  const limit = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
  }, (seconds * 2 + 30) * 1000);
  const status = await child.status;
  clearTimeout(limit);
  const ms = performance.now() - t0;
  const signatures: string[] = [];
  try {
    const rep = JSON.parse(await Deno.readTextFile(json));
    for (const t of rep.targets ?? []) {
      for (const f of t.failures ?? []) signatures.push(f.signature.text);
      if (t.crash !== undefined) signatures.push(`${t.target}/crash`);
    }
  } catch { /* no report: hung or could not start */ }
  await Deno.remove(`${root}/.mutate-corpus`, { recursive: true }).catch(() => {});
  const code = status.signal !== null ? 124 : status.code;
  return { code, signatures, ms };
}

/** The flags of `deno task mutate`, checked. */
interface MutateArgs {
  /** `--list`: print the sampled mutants, do not run them. */
  list: boolean;
  /** Focus each mutant's campaign on the targets of its folder (`--no-focus` clears it). */
  focus: boolean;
  /** Total fuzz budget (s). */
  seconds: number;
  /** Mutants to draw (0: all). */
  sample: number;
  /** Sampling and campaign seed. */
  seed: number;
  /** Mutate files under these prefixes. */
  prefixes: readonly string[];
  /** `--target` names (empty: every target). */
  selected: string[];
  /** Flags passed through to every campaign (`--runs`, `--workers`). */
  extra: string[];
  /** `--json` report path. */
  json: string | undefined;
}

const VALUE_FLAGS = ["seconds", "sample", "seed", "file", "target", "runs", "workers", "json"];

/**
 * Joins "--flag -1" into "--flag=-1" so a negative number after a value flag is read as its
 * value (then range-checked) rather than as an unknown flag.
 */
function joinNegativeValues(args: readonly string[]): string[] {
  return args.flatMap((x, i, all) =>
    /^-[\d.]/.test(x) && VALUE_FLAGS.includes(all[i - 1]?.replace(/^--/, "")) ? [] : [
      VALUE_FLAGS.includes(x.replace(/^--/, "")) && /^-[\d.]/.test(all[i + 1] ?? "")
        ? `${x}=${all[i + 1]}`
        : x,
    ]
  );
}

/** `v` as a number >= `min`, `d` when absent; exits 2 naming `--flag` otherwise. */
function numberFlag(v: string | undefined, d: number, flag: string, min = 0): number {
  if (v === undefined) return d;
  const n = Number(v);
  if (!Number.isFinite(n) || n < min) usage(`--${flag} ${v} must be a number >= ${min}`);
  return n;
}

/** Parses and checks the command line (`"help"` for `--help`); exits 2 on bad usage. */
function parseMutateArgs(args: readonly string[]): MutateArgs | "help" {
  const a = parseArgs(joinNegativeValues(args), {
    string: VALUE_FLAGS,
    boolean: ["list", "help", "focus"],
    default: { focus: true },
    negatable: ["focus"],
    collect: ["file", "target"],
    alias: { h: "help" },
    unknown: (f: string) => {
      if (f.startsWith("-")) usage(`unknown flag ${f}`);
      return true;
    },
  });
  if (a.help) return "help";
  const seconds = numberFlag(a.seconds, 60, "seconds", 1);
  const sample = numberFlag(a.sample, 20, "sample");
  const seed = Math.floor(numberFlag(a.seed, 1, "seed"));
  const prefixes = (a.file as string[]).length > 0 ? a.file as string[] : DEFAULT_FOLDERS;
  const extra: string[] = [];
  if (a.runs !== undefined) extra.push("--runs", String(numberFlag(a.runs, 0, "runs", 1)));
  if (a.workers !== undefined) {
    extra.push("--workers", String(numberFlag(a.workers, 0, "workers")));
  }
  return {
    list: a.list as boolean,
    focus: a.focus as boolean,
    seconds,
    sample,
    seed,
    prefixes,
    selected: a.target as string[],
    extra,
    json: a.json,
  };
}

/** Every mutant of the `.ts` files under `prefixes`, with the files' original texts. */
interface MutantPool {
  /** Repository-relative paths of the mutated files. */
  files: string[];
  /** Original text of each file. */
  texts: Map<string, string>;
  /** Every generated mutant. */
  all: Mutant[];
}

/** Generates every mutant of the repository's `src/` files under `prefixes`; exits 2 if none. */
async function generateMutants(repo: string, prefixes: readonly string[]): Promise<MutantPool> {
  const files = (await listTs(`${repo}/src`))
    .map((p) => p.slice(repo.length + 1))
    .filter((p) => prefixes.some((pre) => p.startsWith(pre)));
  if (files.length === 0) usage(`no .ts file under ${prefixes.join(", ")}`);
  const texts = new Map<string, string>();
  const all: Mutant[] = [];
  for (const f of files) {
    const t = await Deno.readTextFile(`${repo}/${f}`);
    texts.set(f, t);
    all.push(...mutantsOf(f, t));
  }
  return { files, texts, all };
}

/** Runs the unmutated campaign in `work` with `flags`; exits 2 when it is not clean. */
async function requireCleanBaseline(
  work: string,
  per: number,
  seed: number,
  flags: string[],
): Promise<void> {
  const base = await campaign(work, per, seed, flags);
  if (base.code !== 0) {
    console.error(
      `mutate: the unmutated campaign fails (exit ${base.code}: ${base.signatures.join(", ")}). ` +
        "Fix: make deno task fuzz clean first",
    );
    Deno.exit(2);
  }
}

/**
 * Writes mutant `m` into `work`, runs its campaign with `flags`, restores `orig`, and
 * classifies the mutant by the campaign's exit code.
 */
async function runMutant(
  work: string,
  m: Mutant,
  orig: string,
  per: number,
  seed: number,
  flags: string[],
): Promise<MutantResult> {
  await Deno.writeTextFile(`${work}/${m.file}`, applyMutant(orig, m));
  let c: Campaign;
  try {
    c = await campaign(work, per, seed, flags);
  } finally {
    await Deno.writeTextFile(`${work}/${m.file}`, orig);
  }
  const status = c.code === 0 ? "survived" : c.code === 2 ? "error" : "killed";
  const { start: _s, end: _e, ...shown } = m;
  return {
    mutant: shown,
    status,
    ms: Math.round(c.ms),
    signatures: c.signatures,
    diff: mutantDiff(orig, m),
  };
}

/** One progress line per mutant. */
function printMutantLine(i: number, total: number, m: Mutant, r: MutantResult): void {
  console.log(
    `[${i + 1}/${total}] ${r.status.padEnd(8)} ${m.id} ` +
      `(${m.original.replace(/\s+/g, " ").slice(0, 30)} -> ${m.replacement})` +
      (r.signatures.length > 0 ? `  ${r.signatures[0]}` : ""),
  );
}

/** Counts the outcomes into the JSON report. */
function buildReport(
  results: MutantResult[],
  seed: number,
  per: number,
  generated: number,
): MutateReport {
  const killed = results.filter((r) => r.status === "killed").length;
  const survived = results.filter((r) => r.status === "survived").length;
  const errors = results.filter((r) => r.status === "error").length;
  const score = killed + survived > 0 ? killed / (killed + survived) : 0;
  return {
    schema: "virtq-lab/mutate@1",
    seed,
    secondsPerMutant: per,
    generated,
    sampled: results.length,
    killed,
    survived,
    errors,
    score,
    results,
  };
}

/** Prints the survivors' diffs and the score line. */
function printSummary(report: MutateReport): void {
  const { results, killed, survived, errors, score } = report;
  for (const r of results.filter((r) => r.status === "survived")) console.log(`\n${r.diff}`);
  console.log(
    `\nmutation score ${(score * 100).toFixed(1)}%: ${killed} killed, ${survived} survived, ` +
      `${errors} could not start (${report.sampled} sampled of ${report.generated})`,
  );
}

async function main(): Promise<void> {
  const args = parseMutateArgs(Deno.args);
  if (args === "help") {
    console.log(HELP);
    return;
  }
  const { seed, extra, selected, focus } = args;
  const repo = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
  const { files, texts, all } = await generateMutants(repo, args.prefixes);
  const drawn = (m: Mutant) => !NOT_MUTATED.includes(m.file);
  const chosen = args.sample === 0
    ? all.filter(drawn)
    : sampleMutants(all, args.sample, seed, drawn);
  const left = all.length - all.filter(drawn).length;
  const leftNote = left > 0 ? ` (${left} more in ${NOT_MUTATED.join(", ")}: not engine)` : "";
  if (chosen.length === 0) usage(`no engine mutant under ${args.prefixes.join(", ")}`);
  if (args.list) {
    for (const m of chosen) console.log(`${m.id}  ${m.original} -> ${m.replacement}`);
    console.log(
      `${chosen.length} of ${all.length - left} mutants over ${files.length} files${leftNote}`,
    );
    return;
  }
  const per = Math.max(1, Math.round((args.seconds / chosen.length) * 10) / 10);
  const work = await Deno.makeTempDir({ prefix: "virtq-mutate-" });
  try {
    await copyTree(repo, work);
    console.log(
      `mutate: ${chosen.length} of ${all.length - left} mutants${leftNote} (seed ${seed}), ` +
        `${per} s of fuzzing each`,
    );
    await requireCleanBaseline(work, per, seed, [...extra, ...focusTargets("", selected, false)]);
    const results: MutantResult[] = [];
    for (const [i, m] of chosen.entries()) {
      const flags = [...extra, ...focusTargets(m.file, selected, focus)];
      const r = await runMutant(work, m, texts.get(m.file)!, per, seed, flags);
      results.push(r);
      printMutantLine(i, chosen.length, m, r);
    }
    const report = buildReport(results, seed, per, all.length - left);
    printSummary(report);
    if (args.json) await Deno.writeTextFile(args.json, JSON.stringify(report, null, 2) + "\n");
  } finally {
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) await main();
