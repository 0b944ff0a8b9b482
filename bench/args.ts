/**
 * Command-line options of `deno task bench`, parsed strictly: an unknown flag or a bad value is
 * an error naming the flag and the fix.
 *
 * @module
 */

import { parseArgs } from "@std/cli/parse-args";

/** Parsed options. */
export interface BenchArgs {
  /** Print help and exit. */
  help: boolean;
  /** Tiny subset, a few seconds (used by `deno task ci`). */
  smoke: boolean;
  /** List suites and cases, run nothing. */
  list: boolean;
  /** Suites to run (empty = all). */
  suites: string[];
  /** Case-name filter. */
  filter: RegExp | null;
  /** Rounds per case (min-of-N). */
  rounds: number;
  /** Minimum measured time per case per round, ms. */
  timeMs: number;
  /** Save results as baseline NAME. */
  save: string | null;
  /** Compare with baseline NAME. */
  compare: string | null;
  /** Relative change that counts as a regression (0.10 = 10%). */
  threshold: number;
  /** Noise floor of the verdict (0.08 = 8%). */
  noise: number;
  /** Write results JSON here. */
  json: string | null;
  /** Modeled latency per IOTLB invalidation, ns. */
  invalidationNs: number;
  /** Modeled latency per virtio-iommu request, ns. */
  requestNs: number;
  /** Skip the allocation check. */
  noAlloc: boolean;
  /**
   * `case`: one Worker isolate per case (default); `family`: one per engine family; `none`:
   * everything in this isolate.
   */
  isolate: "case" | "family" | "none";
  /**
   * Isolates per case: the rounds are split into this many blocks and every case starts each
   * block in a fresh Worker isolate (default 3 with `--suite lines`, else 1; clamped to rounds).
   */
  isolates: number;
  /** After the run, measure every case again alone in a fresh isolate and compare. */
  checkIsolation: boolean;
}

/** Help text. */
export const HELP = `deno task bench [options]

Ring round-trip benchmarks (mitata). Each case is one batch: add x batch, kick, pop/copy/push,
flush, get-used. Reports chains/s, bytes/s and the fraction of the speed-of-light loop (the
same ring memory operations inlined on typed arrays, measured in the same run).

Options:
  --smoke              tiny subset in a few seconds (used by deno task ci)
  --suite NAME         run one suite (repeatable; default: all). --list shows them
  --filter REGEX       only cases whose name matches, e.g. "q256 b32" or "^split/iommu"
  --list               list suites and their cases (with --suite/--filter: those selected)
  --rounds N           rounds per case, interleaved across cases; min-of-N medians (default 3)
  --time MS            measured time per case per round (default 200; smoke 30)
  --save NAME          save results as bench/baselines/NAME.json
  --compare NAME|FILE  compare with bench/baselines/NAME.json (or a results FILE ending in
                       .json); exit 1 if any case is slower, 2 if no case is in both
  --threshold PCT      regression threshold in percent (default 10)
  --noise PCT          noise floor in percent (default 8, measured on this machine); a case is
                       "slower" only past the threshold AND past its noise band (the larger of
                       this floor and the two runs' IQR/median + cross-round spread)
  --json FILE          write results as JSON (same format as a baseline)
  --invalidation-ns N  MODELED cost of one IOTLB invalidation for the lazy/strict target
                       (default 1000; a model parameter, never a delay)
  --request-ns N       MODELED cost of one virtio-iommu MAP/UNMAP request (default 5000)
  --no-alloc           skip the allocation-per-chain check
  --isolate MODE       case (default): every case runs in its own Worker isolate, so V8 type
                       feedback from other cases cannot slow it: a case measures the same in the
                       full run as alone; family: one isolate per layout/DMA-mode family (cases
                       of a family share feedback); none: all cases in one isolate (shows the
                       polymorphic cost)
  --isolates K         isolates per case (default 3 with --suite lines, else 1): the rounds are
                       split into K blocks of consecutive rounds, and before each block every
                       case gets a fresh Worker isolate (prepared and warmed again; rounds still
                       interleave across cases). V8 settles each isolate in a steady state of
                       its own, a few percent apart, so the paired lines take their figure from
                       each case's best round per isolate, then the median over isolates. Costs
                       one more start and warm-up per case per isolate (about 6 s per extra
                       isolate for the 30 lines cases). Clamped to --rounds; needs --isolate case
                       or family. Use an odd K: with an even K the median is the mean of the two
                       middle isolates, so one isolate moves it
  --check-isolation    after the run, measure every case again alone in a fresh isolate and
                       print full-run/alone per case; exit 1 when one differs by more than the
                       noise band (use with --filter; doubles the run time)
  -h, --help           this text

Examples:
  deno task bench --smoke
  deno task bench --suite size --suite payload
  deno task bench --save before        # then change the hot path ...
  deno task bench --compare before     # ratio per case, verdict, exit 1 on a regression
  deno task bench --json /tmp/r.json && deno task bench:plot /tmp/r.json
`;

const STRINGS = [
  "suite",
  "filter",
  "rounds",
  "time",
  "save",
  "compare",
  "threshold",
  "noise",
  "json",
  "invalidation-ns",
  "request-ns",
  "isolate",
  "isolates",
];
const BOOLEANS = ["help", "smoke", "list", "no-alloc", "check-isolation"];

function num(flag: string, v: unknown, min: number, max: number, int: boolean): number {
  const x = Number(v);
  if (
    typeof v !== "string" || v.trim() === "" || !Number.isFinite(x) || (int && !Number.isInteger(x))
  ) {
    throw new Error(`--${flag} ${String(v)}: expected ${int ? "an integer" : "a number"}`);
  }
  if (x < min || x > max) throw new Error(`--${flag} ${x}: expected ${min}..${max}`);
  return x;
}

function one(flag: string, v: unknown): string | undefined {
  const all = v === undefined ? [] : Array.isArray(v) ? v : [v];
  if (all.length === 0) return undefined;
  if (all.length > 1) throw new Error(`--${flag} given more than once`);
  const x = all[0];
  if (typeof x !== "string" || x === "") throw new Error(`--${flag} needs a value`);
  return x;
}

/**
 * Parses the command line.
 * @throws Error naming the flag for an unknown flag, a missing value or a bad number.
 */
export function parseBenchArgs(argv: readonly string[]): BenchArgs {
  // "--rounds -1": a negative number after a value flag is its value (then range-checked),
  // not an unknown option "-1"
  const joined: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const next = argv[i + 1];
    if (
      STRINGS.includes(argv[i].replace(/^--/, "")) && next !== undefined && /^-[\d.]/.test(next)
    ) {
      joined.push(`${argv[i]}=${next}`);
      i++;
    } else joined.push(argv[i]);
  }
  const a = parseArgs(joined, {
    string: STRINGS,
    boolean: BOOLEANS,
    collect: STRINGS, // every value flag, so that a repeated one is an error (not last-wins)
    alias: { h: "help" },
    unknown: (arg: string) => {
      throw new Error(`unknown option ${arg}; see --help`);
    },
  });
  const smoke = a.smoke === true;
  const filterText = one("filter", a.filter);
  let filter: RegExp | null = null;
  if (filterText !== undefined) {
    try {
      filter = new RegExp(filterText);
    } catch (e) {
      throw new Error(`--filter ${filterText}: not a regular expression (${(e as Error).message})`);
    }
  }
  const suites: string[] = (a.suite as unknown[]).map((s) => {
    if (typeof s !== "string" || s === "") throw new Error("--suite needs a name");
    return s;
  });
  const get = (f: string) => one(f, a[f]);
  const rounds = get("rounds");
  const time = get("time");
  const threshold = get("threshold");
  const noise = get("noise");
  const inv = get("invalidation-ns");
  const req = get("request-ns");
  const isolate = get("isolate") ?? "case";
  if (isolate !== "case" && isolate !== "family" && isolate !== "none") {
    throw new Error(`--isolate ${isolate}: expected case, family or none`);
  }
  const isolatesText = get("isolates");
  const isolates = isolatesText === undefined
    ? (suites.includes("lines") && isolate !== "none" ? 3 : 1)
    : num("isolates", isolatesText, 1, 100, true);
  if (isolates > 1 && isolate === "none") {
    throw new Error(
      `--isolates ${isolates}: needs Worker isolates; drop --isolate none or use --isolates 1`,
    );
  }
  return {
    help: a.help === true,
    smoke,
    list: a.list === true,
    suites,
    filter,
    rounds: rounds === undefined ? 3 : num("rounds", rounds, 1, 100, true),
    timeMs: time === undefined ? (smoke ? 30 : 200) : num("time", time, 1, 600_000, false),
    save: get("save") ?? null,
    compare: get("compare") ?? null,
    threshold: threshold === undefined ? 0.1 : num("threshold", threshold, 0, 1000, false) / 100,
    noise: noise === undefined ? 0.08 : num("noise", noise, 0, 1000, false) / 100,
    json: get("json") ?? null,
    invalidationNs: inv === undefined ? 1000 : num("invalidation-ns", inv, 0, 1e9, false),
    requestNs: req === undefined ? 5000 : num("request-ns", req, 0, 1e9, false),
    noAlloc: a["no-alloc"] === true,
    isolate,
    isolates,
    checkIsolation: a["check-isolation"] === true,
  };
}
