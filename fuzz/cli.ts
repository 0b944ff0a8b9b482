/**
 * Command-line parsing for `deno task fuzz` (pure: no I/O, so it is unit-tested).
 * @module
 */

/** A usage error: names the flag and says how to fix it. The CLI exits with status 2. */
export class CliError extends Error {
  /**
   * Creates a usage error.
   * @param flag the offending flag (or argument).
   * @param problem what is wrong.
   * @param fix what to do instead.
   */
  constructor(flag: string, problem: string, fix: string) {
    super(`${flag}: ${problem}. Fix: ${fix} (see --help)`);
    this.name = "CliError";
  }
}

/** Parsed options of `deno task fuzz`. */
export interface FuzzOptions {
  /** Print help and exit. */
  help: boolean;
  /** Print the registered targets and exit. */
  list: boolean;
  /** Selected target names (empty: all). */
  targets: string[];
  /** Campaign time budget in seconds for all targets (undefined: no time limit). */
  seconds: number | undefined;
  /** Runs per target (undefined: no run limit). */
  runs: number | undefined;
  /** Campaign seed (undefined: random, printed in the summary). */
  seed: number | undefined;
  /** Replay this corpus file (or every `.json` file of this directory) instead of fuzzing. */
  replay: string | undefined;
  /** Replay fast-check seed `replaySeed` at path `replayPath` of the one `--target`. */
  replaySeed: number | undefined;
  /** fast-check path of the counterexample (with `replaySeed`). */
  replayPath: string | undefined;
  /** Write crash-, timeout- and failure- files here (undefined: a new temp directory). */
  artifacts: string | undefined;
  /** Write the JSON report here. */
  json: string | undefined;
  /** Write a JUnit XML report here. */
  junit: string | undefined;
  /** Parallel Web Workers (0: run in the main thread). */
  workers: number;
  /** This job's shard, 1-based: `{ index: 1..count, count }`. */
  shard: { index: number; count: number };
  /** Corpus directory. */
  corpus: string;
}

/** The default campaign budget, in seconds, for all targets together. */
export const DEFAULT_SECONDS = 60;

/** `--help` text. */
export const HELP = `deno task fuzz [options]

Runs every registered fuzz target (fuzz/targets/mod.ts) under fast-check for a shared time
budget, writes each failure as a replayable counterexample under fuzz/corpus/<target>/, prints a
summary and exits 1 when any target failed (2 on a usage error).

Options:
  --target NAME      fuzz only NAME (repeatable, or a comma list)
  --seconds N        time budget for the whole campaign, split fairly across targets
                     (default ${DEFAULT_SECONDS}; with --runs alone: no time limit)
  --runs N           at most N runs per target
  --seed N           campaign seed (0..2147483647; default random, printed in the summary)
  --workers N        parallel Web Workers (default: number of cores; 0: main thread)
  --shard I/N        run shard I of N (1-based): a deterministic share of the campaign;
                     needs --seed (the same on every shard)
  --json FILE        write the JSON report (merge shards with deno task fuzz:merge)
  --junit FILE       write a JUnit XML report (one test case per target)
  --corpus DIR       corpus directory (default fuzz/corpus)
  --replay FILE|DIR  rerun one corpus counterexample (or every .json file of DIR), print its
                     input, exit 1 if it still fails
  --replay-seed N    with --replay-path and one --target: rerun the counterexample fast-check
  --replay-path P    found at seed N, path P (printed when the corpus could not be written)
  --artifacts DIR    write crash-*, timeout-* and failure-* files of this campaign to DIR
                     (default: a new directory under the system temp dir, printed on findings)
  --list             list the registered targets with their descriptions
  -h, --help         this help

Examples:
  deno task fuzz --seconds 10 --target split-hostile-driver
  deno task fuzz --shard 2/4 --seed 1234 --json shard2.json --junit shard2.xml
  deno task fuzz --replay fuzz/corpus/split-hostile-driver/0123456789abcdef.json
`;

const VALUE_FLAGS = [
  "--target",
  "--seconds",
  "--runs",
  "--seed",
  "--workers",
  "--shard",
  "--json",
  "--junit",
  "--corpus",
  "--replay",
  "--replay-seed",
  "--replay-path",
  "--artifacts",
] as const;
const BOOL_FLAGS = ["--list", "--help", "-h"] as const;

function positiveNumber(flag: string, v: string, integer: boolean, example: string): number {
  const n = Number(v);
  if (v.trim() === "" || !Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) {
    throw new CliError(
      flag,
      `"${v}" is not a positive ${integer ? "integer" : "number"}`,
      `pass e.g. ${flag} ${example}`,
    );
  }
  return n;
}

/** The options of a run without flags. */
function defaultOptions(workers: number): FuzzOptions {
  return {
    help: false,
    list: false,
    targets: [],
    seconds: undefined,
    runs: undefined,
    seed: undefined,
    replay: undefined,
    replaySeed: undefined,
    replayPath: undefined,
    artifacts: undefined,
    json: undefined,
    junit: undefined,
    workers,
    shard: { index: 1, count: 1 },
    corpus: "fuzz/corpus",
  };
}

/** One flag read from the command line. */
export interface ReadFlag {
  /** The flag's name (without an `=VALUE` tail). */
  flag: string;
  /** Its value; undefined for a boolean flag. */
  value: string | undefined;
  /** Index of the last argument it used (its value may be the next argument). */
  last: number;
}

/** The flags a command accepts: those that take a value and those that stand alone. */
export interface FlagSpec {
  /** Flags that take a value (`--flag V` or `--flag=V`). */
  values: readonly string[];
  /** Flags that take none (`--list`, `-h`). */
  booleans: readonly string[];
}

/** The flags of `deno task fuzz`. */
const FUZZ_FLAGS: FlagSpec = { values: VALUE_FLAGS, booleans: BOOL_FLAGS };

/**
 * Reads the flag at `args[i]` and its value (`--flag=V` or `--flag V`), as `spec` allows.
 * A value may start with `-` (`--seconds -1` reaches the range check); only a following
 * `--flag` counts as a missing value.
 * @throws {CliError} on an unknown flag, a boolean flag with a value, or a missing value.
 */
export function readFlag(
  args: readonly string[],
  i: number,
  spec: FlagSpec = FUZZ_FLAGS,
): ReadFlag {
  const arg = args[i];
  const eq = arg.startsWith("--") ? arg.indexOf("=") : -1;
  const flag = eq >= 0 ? arg.slice(0, eq) : arg;
  if (spec.booleans.includes(flag)) {
    if (eq >= 0) throw new CliError(flag, "takes no value", `write ${flag} alone`);
    return { flag, value: undefined, last: i };
  }
  if (!spec.values.includes(flag)) {
    throw new CliError(
      arg,
      flag.startsWith("-") ? "unknown flag" : "unexpected argument",
      `use one of ${
        [...spec.values, ...spec.booleans.filter((b) => b.startsWith("--"))].join(", ")
      }`,
    );
  }
  if (eq >= 0) return { flag, value: arg.slice(eq + 1), last: i };
  if (i + 1 >= args.length || args[i + 1].startsWith("--")) {
    throw new CliError(flag, "needs a value", `write ${flag} VALUE`);
  }
  return { flag, value: args[i + 1], last: i + 1 };
}

/** `--target`: a comma list of one or more target names. */
function parseTargetNames(flag: string, v: string): string[] {
  const names = v.split(",").map((s) => s.trim()).filter((s) => s !== "");
  if (names.length === 0) {
    throw new CliError(flag, "empty target name", "pass a name from --list");
  }
  return names;
}

/**
 * `--seed`: an integer in 0..2^31-1.
 * @throws {CliError} naming `flag` for anything else.
 */
export function parseSeed(flag: string, v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n > 0x7fff_ffff) {
    throw new CliError(
      flag,
      `"${v}" is not an integer in 0..2147483647`,
      "pass e.g. --seed 42",
    );
  }
  return n;
}

/** `--workers`: an integer in 0..256. */
function parseWorkers(flag: string, v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n > 256) {
    throw new CliError(flag, `"${v}" is not an integer in 0..256`, "pass e.g. --workers 2");
  }
  return n;
}

/** `--shard`: `I/N` with 1 <= I <= N. */
function parseShard(flag: string, v: string): { index: number; count: number } {
  const m = /^(\d+)\/(\d+)$/.exec(v);
  const index = m ? Number(m[1]) : NaN;
  const count = m ? Number(m[2]) : NaN;
  if (!m || count < 1 || index < 1 || index > count) {
    throw new CliError(
      flag,
      `"${v}" is not I/N with 1 <= I <= N`,
      "pass e.g. --shard 1/4 (shards are numbered from 1)",
    );
  }
  return { index, count };
}

/** `--replay-seed`: any safe integer (fast-check seeds may be negative). */
function parseReplaySeed(flag: string, v: string): number {
  const n = Number(v);
  if (!/^-?\d+$/.test(v) || !Number.isSafeInteger(n)) {
    throw new CliError(flag, `"${v}" is not an integer`, "pass the seed the report printed");
  }
  return n;
}

/** `--replay-path`: a fast-check path such as `3:1:0`. */
function parseReplayPath(flag: string, v: string): string {
  if (!/^\d+(:\d+)*$/.test(v)) {
    throw new CliError(
      flag,
      `"${v}" is not a fast-check path`,
      'pass e.g. --replay-path "3:1:0"',
    );
  }
  return v;
}

/** Records a boolean flag (`--list`, `--help`, `-h`) in `o`. */
function applyBoolFlag(o: FuzzOptions, flag: string): void {
  if (flag === "--list") o.list = true;
  else o.help = true;
}

/**
 * Records a value flag in `o`.
 * @throws {CliError} on a malformed value.
 */
function applyValueFlag(o: FuzzOptions, flag: string, v: string): void {
  switch (flag) {
    case "--target":
      o.targets.push(...parseTargetNames(flag, v));
      break;
    case "--seconds":
      o.seconds = positiveNumber(flag, v, false, "30");
      break;
    case "--runs":
      o.runs = positiveNumber(flag, v, true, "1000");
      break;
    case "--seed":
      o.seed = parseSeed(flag, v);
      break;
    case "--workers":
      o.workers = parseWorkers(flag, v);
      break;
    case "--shard":
      o.shard = parseShard(flag, v);
      break;
    case "--json":
      o.json = v;
      break;
    case "--junit":
      o.junit = v;
      break;
    case "--corpus":
      o.corpus = v;
      break;
    case "--replay":
      o.replay = v;
      break;
    case "--replay-seed":
      o.replaySeed = parseReplaySeed(flag, v);
      break;
    case "--replay-path":
      o.replayPath = parseReplayPath(flag, v);
      break;
    case "--artifacts":
      o.artifacts = v;
      break;
  }
}

/**
 * Rejects flags that are each valid but do not go together.
 * @throws {CliError} naming the flag that needs a partner or conflicts.
 */
function checkFlagCombinations(o: FuzzOptions): void {
  if (o.shard.count > 1 && o.seed === undefined) {
    throw new CliError(
      "--shard",
      "needs --seed so every CI job fuzzes a disjoint, reproducible part of one campaign " +
        "(a random seed per job makes the shards overlap)",
      "add --seed <N> (the same on every shard)",
    );
  }
  if ((o.replaySeed === undefined) !== (o.replayPath === undefined)) {
    throw new CliError(
      o.replaySeed === undefined ? "--replay-path" : "--replay-seed",
      "needs its partner flag",
      "pass --replay-seed N --replay-path P together, with one --target",
    );
  }
  if (o.replaySeed !== undefined && (o.targets.length !== 1 || o.replay !== undefined)) {
    throw new CliError(
      "--replay-seed",
      "needs exactly one --target (and no --replay)",
      "add --target NAME, the target the report names",
    );
  }
  if (o.replay !== undefined && (o.list || o.targets.length > 0 || o.shard.count > 1)) {
    throw new CliError(
      "--replay",
      "cannot be combined with --list, --target or --shard",
      "replay one file alone",
    );
  }
}

/**
 * Parses `deno task fuzz` arguments.
 * @param defaultWorkers value of `--workers` when not given (the number of cores).
 * @throws {CliError} on an unknown flag, a missing or malformed value, or conflicting flags.
 */
export function parseFuzzArgs(args: readonly string[], defaultWorkers = 1): FuzzOptions {
  const o = defaultOptions(defaultWorkers);
  for (let i = 0; i < args.length; i++) {
    const { flag, value, last } = readFlag(args, i);
    if (value === undefined) applyBoolFlag(o, flag);
    else applyValueFlag(o, flag, value);
    i = last;
  }
  // --seconds only ever sets a positive number, so undefined here means "not given".
  if (o.seconds === undefined && o.runs === undefined) o.seconds = DEFAULT_SECONDS;
  checkFlagCombinations(o);
  return o;
}
