/**
 * The results of a benchmark run, as printed, written by `--json FILE` and saved as a baseline by
 * `--save NAME` (`bench/baselines/NAME.json`). Loading validates with zod; a bad file is an error
 * naming the file and the field.
 *
 * Times are nanoseconds per call of one round trip (a batch of chains), as mitata reports them.
 *
 * @module
 */

import { z } from "zod";

/** Bumped when the file format changes incompatibly. */
export const RESULTS_SCHEMA_VERSION = 1;

const finite = z.number().refine(Number.isFinite, { error: "must be a finite number" });
const positive = finite.refine((x) => x > 0, { error: "must be > 0" });

/** Timing statistics of one case: per-call ns, min-of-rounds central values. */
export const StatsSchema = z.strictObject({
  /** Fastest sample over all rounds (ns per call). */
  min: positive,
  /** 25th percentile of the round with the lowest median. */
  p25: positive,
  /** Lowest median over the rounds: the central value used everywhere (min-of-N). */
  p50: positive,
  /** 75th percentile of the round with the lowest median. */
  p75: positive,
  /** Mean over all rounds' samples. */
  avg: positive,
  /** Highest median over the rounds (for the cross-round spread). */
  p50max: positive,
  /** Rounds measured. */
  rounds: z.int().min(1),
  /** Samples over all rounds. */
  samples: z.int().min(1),
  /**
   * Each round's median (ns per call), in measuring order. Round `i` of every case of a run was
   * measured in the same pass over the cases, so the ratio of two cases' round-`i` medians is a
   * paired figure: a slow period of the machine that falls on that pass slows both. Absent in
   * files written before it existed.
   */
  roundP50s: z.array(positive).optional(),
  /**
   * The isolate each round of `roundP50s` ran in (0..K-1, `--isolates K`): the rounds of a run
   * are split into K blocks, and every case starts each block in a fresh V8 isolate. Absent when
   * every round ran in one isolate (K = 1, and files written before it existed).
   */
  roundIsolates: z.array(z.int().min(0)).optional(),
}).refine(
  (s) => s.roundIsolates === undefined || s.roundIsolates.length === s.roundP50s?.length,
  { error: "roundIsolates needs one entry per roundP50s entry", path: ["roundIsolates"] },
);

/** Statistics of one case. */
export type Stats = z.infer<typeof StatsSchema>;

/** One case's result. */
export const CaseResultSchema = z.strictObject({
  name: z.string().min(1),
  params: z.strictObject({
    engine: z.enum(["sol", "split", "packed", "memcpy"]),
    dma: z.string().min(1),
    size: z.int().min(1),
    batch: z.int().min(1),
    payload: z.int().min(1),
    chainLen: z.int().min(1),
    indirect: z.boolean(),
    eventIdx: z.boolean(),
  }),
  chainsPerCall: z.int().min(1),
  descriptorsPerCall: z.int().min(0),
  bytesPerCall: z.int().min(0),
  stats: StatsSchema,
  /** ns per chain (p50 / chains per call). */
  nsPerChain: positive,
  chainsPerSec: positive,
  bytesPerSec: finite.min(0),
  /** Name of the speed-of-light case with the same ring shape, when there is one. */
  sol: z.string().nullable(),
  /** Throughput as a fraction of the speed-of-light (sol time / this time), or null. */
  fractionOfSol: finite.nullable(),
  /** Event counters from the engine (e.g. IOTLB invalidations) per call. */
  counters: z.record(z.string(), finite),
});

/** One case's result. */
export type CaseResult = z.infer<typeof CaseResultSchema>;

/** One line of the targets block. */
export const TargetSchema = z.strictObject({
  name: z.string(),
  /** Measured value (a ratio), or null when it could not be measured on this branch. */
  value: finite.nullable(),
  /** Human statement of the goal, e.g. ">= 0.5". */
  goal: z.string(),
  status: z.enum(["met", "missed", "n/a", "info"]),
  detail: z.string(),
});

/** One target. */
export type Target = z.infer<typeof TargetSchema>;

/** Allocation measured per chain over N steady-state round trips. */
export const AllocSchema = z.strictObject({
  name: z.string(),
  /** True when the case runs only hot-path code and is held to zero allocation per chain. */
  hotPath: z.boolean(),
  /** Heap bytes per chain, or null when inconclusive (a GC ran during every try). */
  bytesPerChain: finite.nullable(),
  chains: z.int().min(1),
  /** True when `gc()` was available (`--v8-flags=--expose-gc`), so the figure is exact-ish. */
  forcedGc: z.boolean(),
});

/** One allocation result. */
export type AllocResult = z.infer<typeof AllocSchema>;

/** The whole file. */
export const ResultsSchema = z.strictObject({
  schema: z.literal(RESULTS_SCHEMA_VERSION),
  createdAt: z.string().min(1),
  machine: z.strictObject({
    os: z.string(),
    arch: z.string(),
    cpus: z.int().min(0),
    cpuName: z.string().nullable(),
    hostname: z.string().nullable(),
  }),
  runtime: z.strictObject({ deno: z.string(), v8: z.string(), typescript: z.string() }),
  options: z.strictObject({
    smoke: z.boolean(),
    rounds: z.int().min(1),
    timeMs: positive,
    suites: z.array(z.string()),
    filter: z.string().nullable(),
    /** Isolates per case (`--isolates`); absent in files written before it existed (1). */
    isolates: z.int().min(1).optional(),
  }),
  results: z.array(CaseResultSchema),
  targets: z.array(TargetSchema),
  alloc: z.array(AllocSchema),
});

/** A run's results. */
export type Results = z.infer<typeof ResultsSchema>;

/**
 * Validates parsed JSON as {@link Results}.
 * @param source file name for the message.
 * @throws Error `"<source>: invalid results file: <path>: <problem>"` naming each bad field.
 */
export function parseResults(json: unknown, source: string): Results {
  const r = ResultsSchema.safeParse(json);
  if (!r.success) {
    const lines = r.error.issues.map((i) =>
      `${i.path.length ? i.path.join(".") : "(root)"}: ${i.message}`
    );
    throw new Error(
      `${source}: invalid results file: ${lines.join("; ")}. ` +
        `Fix: re-create it with \`deno task bench --save NAME\` (schema ${RESULTS_SCHEMA_VERSION})`,
    );
  }
  return r.data;
}

/**
 * Reads and validates a results file.
 * @throws Error naming the file when it is missing, not JSON, or invalid.
 */
export async function loadResults(path: string): Promise<Results> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new Error(
      `${path}: cannot read results file (${(e as Error).message.split("\n")[0]}). ` +
        "Fix: pass a file written by deno task bench --json FILE or --save NAME",
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Error(`${path}: not JSON (${(e as Error).message.split("\n")[0]})`);
  }
  return parseResults(json, path);
}

/** Baseline names: letters, digits, `.`, `_`, `-` (they become file names). */
export const BASELINE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/**
 * Path of baseline `name` under `dir` (default `bench/baselines`).
 * @throws Error when the name is not a safe file name.
 */
export function baselinePath(name: string, dir = "bench/baselines"): string {
  if (!BASELINE_NAME.test(name)) {
    throw new Error(
      `baseline name "${name}": start with a letter or digit, then letters, digits, ".", "_" ` +
        `or "-" (at most 64 characters)`,
    );
  }
  return `${dir}/${name}.json`;
}

/** Writes results as pretty JSON (validated first, so a saved file always loads). */
export async function writeResults(path: string, results: Results): Promise<void> {
  parseResults(results, path);
  const dir = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) : ".";
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(path, JSON.stringify(results, null, 2) + "\n");
}
