/**
 * `deno task fuzz --device testpmd|qsd|socket:PATH`: the device campaign. Hostile drivers
 * (`cases.ts`) against a real vhost-user back-end, one verdict per case (`run_case.ts`), the
 * same JSON report, JUnit, corpus files and `--replay` as `deno task fuzz`, and a summary
 * table per back-end and hostile class. `fuzz/main.ts` hands over to {@link deviceFuzzMain}
 * when it sees `--device` or a `--replay` of a device corpus file.
 * @module
 */

import fc from "fast-check";
import { CliError, type FlagSpec, parseSeed, readFlag } from "../cli.ts";
import { type CorpusEntry, parseCorpusEntry, writeCorpusEntry } from "../corpus.ts";
import {
  buildReport,
  type CorpusOutcome,
  type FailureReport,
  fmtSeconds,
  formatJunit,
  type FuzzReport,
  type TargetReport,
} from "../report.ts";
import type { FailureRecord } from "../runner.ts";
import { fnv1a64, messageOf } from "../signature.ts";
import { DeviceBackend } from "./backend.ts";
import {
  classOf,
  DEVICE_CLASSES,
  type DeviceCase,
  deviceCaseArbitrary,
  deviceCaseSchema,
  type DeviceClass,
  nthCase,
} from "./cases.ts";
import { type CaseResult, runDeviceCase, type Verdict, VERDICTS } from "./run_case.ts";
import { shrinkDeviceCase } from "./shrink.ts";
import { z } from "zod";

/** Output sinks (the runner's `FuzzEnv` fits). */
export interface DeviceEnv {
  /** stdout. */
  out: (s: string) => void;
  /** stderr. */
  err: (s: string) => void;
}

/** Default corpus of device findings (NOT replayed by `deno task test`: they are the device's bugs). */
export const DEVICE_CORPUS = "fuzz/corpus-device";
/** Verdicts that make the run exit 1 unless `--fail-on` says otherwise. */
export const DEFAULT_FAIL_ON: readonly Verdict[] = ["WEDGED", "CORRUPT", "CRASH"];

/** `--help` of the device campaign. */
export const DEVICE_HELP = `deno task fuzz --device testpmd|qsd|socket:PATH [options]

Fuzzes a real vhost-user back-end with hostile drivers: the split hostile-driver corruptions
(descriptor table, indirect tables, available ring indices), event suppression, hostile vring
activation and, on testpmd with ACCESS_PLATFORM, translation edge cases. Each case ends in ONE
verdict: PASS, REJECT, WEDGED, CORRUPT or CRASH (see the README, "Fuzzing your own device").

Options:
  --device SPEC      testpmd (DPDK vhost PMD, started fresh), qsd (qemu-storage-daemon
                     vhost-user-blk over a known disk image), socket:PATH (a back-end you run;
                     typed blk when it offers protocol feature CONFIG, else net); repeatable or
                     a comma list: testpmd,qsd
  --seconds N        time budget for the whole campaign, split across back-ends (default 60)
  --runs N           at most N cases per back-end
  --seed N           campaign seed (default random, printed)
  --json FILE        JSON report (virtq-lab/fuzz-report@1, one target per back-end and class)
  --junit FILE       JUnit XML (one test case per back-end and class)
  --corpus DIR       where findings go (default ${DEVICE_CORPUS})
  --fail-on LIST     verdicts that make the run exit 1 (default ${DEFAULT_FAIL_ON.join(",")}; none)
  --probe-ms N       liveness probe deadline per case (default 600)
  --shrink-seconds N after each back-end's cases, shrink its new WEDGED/CORRUPT/CRASH findings
                     for up to N s in all (default 10, 0 off): smaller cases run again and the
                     smallest with the same signature is recorded and replayed
  --require-pass     exit 1 unless every back-end passed at least one case (a harness check
                     for CI, where the back-ends' own findings do not fail the run)
  --replay FILE      rerun one finding against a fresh back-end, print its verdict
  -h, --help         this help
`;

interface DeviceOptions {
  devices: string[];
  seconds: number;
  runs: number | undefined;
  seed: number | undefined;
  json: string | undefined;
  junit: string | undefined;
  corpus: string;
  failOn: Verdict[];
  probeMs: number;
  shrinkSeconds: number;
  replay: string | undefined;
  help: boolean;
  requirePass: boolean;
}

/** The flags of `deno task fuzz --device`. */
const DEVICE_FLAGS: FlagSpec = {
  values: [
    "--device",
    "--seconds",
    "--runs",
    "--seed",
    "--json",
    "--junit",
    "--corpus",
    "--fail-on",
    "--probe-ms",
    "--shrink-seconds",
    "--replay",
  ],
  booleans: ["--require-pass", "--help", "-h"],
};

/** `flag`'s value `v` as a number >= `min`. @throws {CliError} naming the flag otherwise. */
function numberAtLeast(flag: string, v: string, min: number): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < min || v.trim() === "") {
    throw new CliError(flag, `"${v}" is not a number >= ${min}`, `pass e.g. ${flag} 30`);
  }
  return n;
}

/**
 * Parses the device campaign's flags.
 * @throws {CliError} on an unknown flag, a bad value or a missing `--device`.
 */
function parseArgs(args: readonly string[]): DeviceOptions {
  const o: DeviceOptions = {
    devices: [],
    seconds: 60,
    runs: undefined,
    seed: undefined,
    json: undefined,
    junit: undefined,
    corpus: DEVICE_CORPUS,
    failOn: [...DEFAULT_FAIL_ON],
    probeMs: 600,
    shrinkSeconds: 10,
    replay: undefined,
    help: false,
    requirePass: false,
  };
  for (let i = 0; i < args.length; i++) {
    const { flag, value, last } = readFlag(args, i, DEVICE_FLAGS);
    i = last;
    if (value === undefined) {
      if (flag === "--require-pass") o.requirePass = true;
      else o.help = true;
      continue;
    }
    const v = value;
    const num = (min: number) => numberAtLeast(flag, v, min);
    switch (flag) {
      case "--device":
        o.devices.push(...v.split(",").map((s) => s.trim()).filter((s) => s !== ""));
        break;
      case "--seconds":
        o.seconds = num(0.1);
        break;
      case "--runs":
        o.runs = Math.floor(num(1));
        break;
      case "--seed":
        o.seed = parseSeed(flag, v);
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
      case "--probe-ms":
        o.probeMs = num(50);
        break;
      case "--shrink-seconds":
        o.shrinkSeconds = num(0);
        break;
      case "--replay":
        o.replay = v;
        break;
      case "--fail-on": {
        const vs = v === "none" ? [] : v.split(",").map((s) => s.trim().toUpperCase());
        for (const x of vs) {
          if (!(VERDICTS as readonly string[]).includes(x)) {
            throw new CliError(
              flag,
              `"${x}" is not a verdict`,
              `use a comma list of ${VERDICTS.join(", ")}, or none`,
            );
          }
        }
        o.failOn = vs as Verdict[];
        break;
      }
    }
  }
  for (const d of o.devices) {
    if (!(d === "testpmd" || d === "qsd" || (d.startsWith("socket:") && d.length > 7))) {
      throw new CliError("--device", `"${d}" is not a back-end`, "use testpmd, qsd or socket:PATH");
    }
  }
  if (o.devices.length === 0 && o.replay === undefined && !o.help) {
    throw new CliError("--device", "missing", "pass --device testpmd, qsd or socket:PATH");
  }
  return o;
}

/** True when `args` ask for a device campaign or replay a device finding. */
export function isDeviceInvocation(args: readonly string[]): boolean {
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--device" || args[i].startsWith("--device=")) return true;
    const replay = args[i] === "--replay"
      ? args[i + 1]
      : args[i].startsWith("--replay=")
      ? args[i].slice(9)
      : undefined;
    if (replay !== undefined) {
      try {
        const j = JSON.parse(Deno.readTextFileSync(replay));
        if (typeof j?.target === "string" && j.target.startsWith("device-")) return true;
      } catch { /* the runner reports unreadable files */ }
    }
  }
  return false;
}

/** The corpus `input` of a device finding: the back-end and the case. */
const deviceInputSchema = z.strictObject({
  backend: z.string(),
  iommu: z.boolean(),
  caseNo: z.int().min(0),
  case: deviceCaseSchema,
});

type Tally = Record<Verdict, number>;

interface Row {
  backend: string;
  cls: DeviceClass;
  tally: Tally;
  seconds: number;
  failures: Map<string, { rec: FailureRecord; count: number }>;
  codes: Set<string>;
}

/** A new failure signature of the campaign: its row, its record and the case's result. */
interface Finding {
  row: Row;
  rec: FailureRecord;
  result: CaseResult;
}

/** One case as run: its number, the case, its result and the back-end it ran on. */
interface CaseRun {
  caseNo: number;
  c: DeviceCase;
  r: CaseResult;
  target: DeviceBackend;
}

/** A new finding of one back-end, queued for shrinking once its cases are done. */
interface ShrinkCandidate extends CaseRun {
  rec: FailureRecord;
  f: { result: CaseResult };
}

/** What the campaign gathers across back-ends. */
interface CampaignTally {
  /** Campaign seed. */
  readonly seed: number;
  /** One row per back-end and hostile class, keyed `backend/class`. */
  readonly rows: Map<string, Row>;
  /** New signatures, in the order found. */
  readonly findings: Finding[];
  /** Cases run on every back-end. */
  cases: number;
}

/** One back-end under test and, on testpmd, its ACCESS_PLATFORM twin for translation cases. */
interface BackendUnderTest {
  /** The `--device` spec it was started from. */
  spec: string;
  be: DeviceBackend;
  iommuBe: DeviceBackend | null;
}

/**
 * Shrinks the new findings of one back-end within `--shrink-seconds` in all (each gets an equal
 * share of what is left), on the back-end that found them (a fresh connection per candidate, a
 * restart after a CRASH); the corpus record then holds the smallest case with the signature.
 */
async function shrinkFindings(
  list: ShrinkCandidate[],
  arb: fc.Arbitrary<DeviceCase>,
  seed: number,
  spec: string,
  o: DeviceOptions,
  name: string,
  env: DeviceEnv,
): Promise<void> {
  if (list.length === 0 || o.shrinkSeconds <= 0) return;
  const t0 = performance.now(), total = o.shrinkSeconds * 1000;
  let runs = 0, steps = 0;
  for (let k = 0; k < list.length; k++) {
    const left = total - (performance.now() - t0);
    if (left <= 0) break;
    const { rec, f, c, r, caseNo, target } = list[k];
    const s = await shrinkDeviceCase(
      arb,
      seed,
      caseNo,
      { case: c, result: r },
      rec.signature.text,
      (cc, rr) => signatureText(name, cc, rr),
      async (cc) => {
        const rr = runDeviceCase(target, cc, caseNo, { probeMs: o.probeMs });
        if (rr.verdict === "CRASH") await target.restart();
        return rr;
      },
      { budgetMs: left / (list.length - k) },
    );
    runs += s.runs;
    steps += s.shrinks;
    rec.shrinks = s.shrinks;
    if (s.shrinks > 0) {
      rec.input = { backend: spec, iommu: target.iommu, caseNo, case: s.case };
      rec.inputText = JSON.stringify(s.case);
      rec.message = `${s.result.verdict}: ${s.result.detail}`;
      f.result = s.result;
    }
  }
  env.out(
    `  ${name}: shrank ${list.length} new finding(s): ${steps} step(s) in ${runs} run(s), ${
      fmtSeconds((performance.now() - t0) / 1000)
    }\n`,
  );
}

/** The finding signature of case `c` on back-end `backend` with result `r`. */
function signatureText(backend: string, c: DeviceCase, r: CaseResult): string {
  return `${targetName(backend, classOf(c))}/${r.verdict}/${r.code}:${subkind(c)}`;
}

function subkind(c: DeviceCase): string {
  if (c.kind === "split-ring") return c.events !== null ? "events" : c.input.corruption.kind;
  if (c.kind === "activation") return c.activation.frame;
  if (c.kind === "packed-ring") {
    const k = c.input.corruption;
    return k !== null
      ? k.field
      : c.input.raw.length > 0
      ? "raw"
      : c.input.drvEvent != null
      ? "event"
      : "none";
  }
  if (c.kind === "real-ring") return `${c.seed}:${c.corruption.field}`;
  return c.what;
}

function targetName(backend: string, cls: DeviceClass): string {
  return `device-${backend}-${cls}`;
}

function dir(): string {
  return `/tmp/virtq-device-fuzz-${Deno.pid}`;
}

/** Starts the back-end(s) of `spec`; prints one line and returns null when one cannot start. */
async function startBackend(spec: string, env: DeviceEnv): Promise<BackendUnderTest | null> {
  try {
    const be = await DeviceBackend.start(spec, { dir: dir() });
    const iommuBe = be.name === "testpmd"
      ? await DeviceBackend.start(spec, { dir: dir(), iommu: true })
      : null;
    return { spec, be, iommuBe };
  } catch (e) {
    env.err(
      `fuzz: --device ${spec}: the back-end cannot start: ${messageOf(e).split("\n")[0]}\n`,
    );
    return null;
  }
}

/** The row of `backend` and `cls`, created empty on first use. */
function rowFor(rows: Map<string, Row>, backend: string, cls: DeviceClass): Row {
  const key = `${backend}/${cls}`;
  let row = rows.get(key);
  if (row === undefined) {
    row = {
      backend,
      cls,
      tally: { PASS: 0, REJECT: 0, WEDGED: 0, CORRUPT: 0, CRASH: 0 },
      seconds: 0,
      failures: new Map(),
      codes: new Set(),
    };
    rows.set(key, row);
  }
  return row;
}

/**
 * Counts a WEDGED/CORRUPT/CRASH result under its signature in `row`; returns the new finding
 * when the signature is new (null for PASS, REJECT or a signature seen before).
 */
function recordFailure(row: Row, spec: string, seed: number, run: CaseRun): Finding | null {
  const { caseNo, c, r, target } = run;
  if (r.verdict === "PASS" || r.verdict === "REJECT") return null;
  const text = signatureText(row.backend, c, r);
  const prev = row.failures.get(text);
  if (prev !== undefined) {
    prev.count++;
    return null;
  }
  const signature = {
    target: targetName(row.backend, row.cls),
    oracle: r.verdict,
    code: `${r.code}:${subkind(c)}`,
    text,
    hash: fnv1a64(text),
  };
  const rec: FailureRecord = {
    signature,
    message: `${r.verdict}: ${r.detail}`,
    seed,
    path: String(caseNo),
    input: { backend: spec, iommu: target.iommu, caseNo, case: c },
    inputText: JSON.stringify(c),
    shrinks: 0,
  };
  row.failures.set(text, { rec, count: 1 });
  return { row, rec, result: r };
}

/** Tallies one case of back-end `backend` into its row; returns its finding when new. */
function tallyCase(
  tally: CampaignTally,
  backend: string,
  spec: string,
  run: CaseRun,
): Finding | null {
  const { r } = run;
  tally.cases++;
  const row = rowFor(tally.rows, backend, classOf(run.c));
  row.tally[r.verdict]++;
  row.seconds += r.ms / 1000;
  row.codes.add(`${r.verdict}:${r.code}`);
  const finding = recordFailure(row, spec, tally.seed, run);
  if (finding !== null) tally.findings.push(finding);
  return finding;
}

/**
 * Runs cases on one back-end until its `seconds` or `runs` budget is used up, restarting it
 * after a CRASH and printing a progress line every 5 s; returns the case count and the new
 * findings to shrink.
 */
async function runBackendCases(
  tally: CampaignTally,
  but: BackendUnderTest,
  arb: fc.Arbitrary<DeviceCase>,
  budget: { seconds: number; runs: number | undefined; probeMs: number },
  env: DeviceEnv,
): Promise<{ cases: number; toShrink: ShrinkCandidate[] }> {
  const { spec, be, iommuBe } = but;
  const toShrink: ShrinkCandidate[] = [];
  const t0 = performance.now();
  let n = 0;
  let lastLine = 0;
  while (
    (performance.now() - t0) / 1000 < budget.seconds &&
    (budget.runs === undefined || n < budget.runs)
  ) {
    const caseNo = n++;
    const c = nthCase(arb, tally.seed, caseNo);
    const target = c.kind === "translation" ? iommuBe! : be;
    const r = runDeviceCase(target, c, caseNo, { probeMs: budget.probeMs });
    const run = { caseNo, c, r, target };
    const fresh = tallyCase(tally, be.name, spec, run);
    if (r.verdict === "CRASH") await target.restart();
    if (fresh !== null) toShrink.push({ ...run, rec: fresh.rec, f: fresh });
    const now = performance.now();
    if (now - lastLine > 5000) {
      lastLine = now;
      env.out(`  ${be.name}: ${n} cases, ${(n / ((now - t0) / 1000)).toFixed(1)} cases/s\n`);
    }
  }
  return { cases: n, toShrink };
}

/** Runs one back-end's share of the campaign, shrinks its new findings, then stops it. */
async function fuzzBackend(
  tally: CampaignTally,
  but: BackendUnderTest,
  o: DeviceOptions,
  seconds: number,
  env: DeviceEnv,
): Promise<void> {
  const { spec, be, iommuBe } = but;
  const arb = deviceCaseArbitrary(be.type, iommuBe !== null, be.packed);
  const t0 = performance.now();
  let n: number;
  try {
    const budget = { seconds, runs: o.runs, probeMs: o.probeMs };
    const { cases, toShrink } = await runBackendCases(tally, but, arb, budget, env);
    n = cases;
    await shrinkFindings(toShrink, arb, tally.seed, spec, o, be.name, env);
  } finally {
    await be.stop();
    await iommuBe?.stop();
  }
  env.out(
    `  ${be.name}: ${n} cases in ${fmtSeconds((performance.now() - t0) / 1000)} (${
      (n / ((performance.now() - t0) / 1000)).toFixed(1)
    } cases/s), ${be.restarts + (iommuBe?.restarts ?? 0)} restart(s)\n`,
  );
}

/** Writes each finding to the corpus (one file per signature), keyed by signature hash. */
async function writeFindings(
  corpus: string,
  findings: readonly Finding[],
  env: DeviceEnv,
): Promise<CorpusOutcome> {
  const files: CorpusOutcome = new Map();
  for (const f of findings) {
    try {
      files.set(f.rec.signature.hash, await writeCorpusEntry(corpus, f.rec));
    } catch (e) {
      env.err(`fuzz: cannot write ${f.rec.signature.text} to ${corpus}: ${messageOf(e)}\n`);
      files.set(f.rec.signature.hash, { file: null, isNew: true });
    }
  }
  return files;
}

/** Rows by back-end name, then in {@link DEVICE_CLASSES} order. */
function sortedRows(rows: Map<string, Row>): Row[] {
  return [...rows.values()].sort((a, b) =>
    a.backend.localeCompare(b.backend) ||
    DEVICE_CLASSES.indexOf(a.cls) - DEVICE_CLASSES.indexOf(b.cls)
  );
}

/** One row as a target of the JSON report. */
function targetReport(row: Row, files: CorpusOutcome): TargetReport {
  const runs = VERDICTS.reduce((s, v) => s + row.tally[v], 0);
  const failures: FailureReport[] = [...row.failures.values()].map(({ rec, count }) => {
    const c = files.get(rec.signature.hash) ?? { file: null, isNew: true };
    return {
      signature: rec.signature,
      message: count > 1 ? `${rec.message} (${count} cases with this signature)` : rec.message,
      seed: rec.seed,
      path: rec.path,
      inputText: rec.inputText,
      shrinks: rec.shrinks,
      corpusFile: c.file,
      isNew: c.isNew,
    };
  });
  return {
    target: targetName(row.backend, row.cls),
    description: `${row.cls} on ${row.backend}: ${
      VERDICTS.map((v) => `${v} ${row.tally[v]}`).join(", ")
    }`,
    units: 1,
    runs,
    seconds: row.seconds,
    runsPerSecond: row.seconds > 0 ? Math.round(runs / row.seconds) : 0,
    failures,
    errorCodes: [...row.codes].sort(),
    verdicts: { ...row.tally },
  };
}

/** Prints each finding with its case and how to replay it. */
function printFindings(
  findings: readonly Finding[],
  files: CorpusOutcome,
  seed: number,
  env: DeviceEnv,
): void {
  for (const f of findings) {
    const file = files.get(f.rec.signature.hash)?.file;
    env.out(
      [
        "",
        `${f.rec.signature.oracle} ${f.rec.signature.target} [${f.rec.signature.code}]`,
        `  ${f.result.detail}`,
        `  case: ${
          f.rec.inputText.length > 300 ? f.rec.inputText.slice(0, 300) + "..." : f.rec.inputText
        }`,
        file
          ? `  replay: deno task fuzz --replay ${file}`
          : `  replay: --seed ${seed}, case ${f.rec.path}`,
        "",
      ].join("\n"),
    );
  }
}

/** Writes the `--json` and `--junit` reports when asked. */
function writeReportFiles(
  report: FuzzReport,
  json: string | undefined,
  junit: string | undefined,
  env: DeviceEnv,
): void {
  if (json !== undefined) {
    Deno.writeTextFileSync(json, JSON.stringify(report, null, 2) + "\n");
    env.out(`fuzz: JSON report written to ${json}\n`);
  }
  if (junit !== undefined) {
    Deno.writeTextFileSync(junit, formatJunit(report));
    env.out(`fuzz: JUnit report written to ${junit}\n`);
  }
}

/**
 * The exit status: 1 when a `--fail-on` verdict occurred, or with `--require-pass` when a
 * back-end passed no case (printed); else 0.
 */
function exitStatus(ordered: readonly Row[], o: DeviceOptions, env: DeviceEnv): number {
  const failing = ordered.some((r) => o.failOn.some((v) => r.tally[v] > 0));
  if (o.requirePass) {
    const passless = o.devices.filter((d) => {
      const name = d.startsWith("socket:") ? "socket" : d;
      return !ordered.some((r) => r.backend === name && r.tally.PASS > 0);
    });
    if (passless.length > 0) {
      env.err(
        `fuzz: --require-pass: no case passed on ${
          passless.join(", ")
        }: the probe never saw valid work done\n`,
      );
      return 1;
    }
  }
  return failing ? 1 : 0;
}

/** Writes the corpus, the reports and the summary of a finished campaign; returns the exit status. */
async function reportCampaign(
  tally: CampaignTally,
  o: DeviceOptions,
  wall: number,
  env: DeviceEnv,
): Promise<number> {
  const files = await writeFindings(o.corpus, tally.findings, env);
  const ordered = sortedRows(tally.rows);
  const targets = ordered.map((row) => targetReport(row, files));
  const report = buildReport(
    {
      seed: tally.seed,
      shard: { index: 1, count: 1 },
      targets: targets.map((t) => t.target),
      date: new Date().toISOString(),
      wallSeconds: wall,
      workers: 0,
      budget: { seconds: o.seconds, runs: o.runs ?? null },
      devices: [...new Set(ordered.map((r) => r.backend))],
    },
    targets,
    { fastCheck: fc.__version, deno: Deno.version.deno },
  );
  env.out(formatVerdictTable(ordered, tally.cases, wall) + "\n");
  printFindings(tally.findings, files, tally.seed, env);
  writeReportFiles(report, o.json, o.junit, env);
  return exitStatus(ordered, o, env);
}

/** Runs the device CLI; returns the exit status (0 ok, 1 findings in --fail-on, 2 usage/setup). */
export async function deviceFuzzMain(args: readonly string[], env: DeviceEnv): Promise<number> {
  let o: DeviceOptions;
  try {
    o = parseArgs(args);
  } catch (e) {
    if (e instanceof CliError) {
      env.err(`fuzz: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
  if (o.help) {
    env.out(DEVICE_HELP);
    return 0;
  }
  if (o.replay !== undefined) return await replay(o.replay, o, env);
  const seed = o.seed ?? Math.floor(Math.random() * 0x7fff_ffff);
  const per = o.seconds / o.devices.length;
  env.out(
    `fuzz: device campaign on ${o.devices.join(", ")}, seed ${seed}, ${
      per.toFixed(1)
    } s per back-end${o.runs === undefined ? "" : `, at most ${o.runs} cases each`}\n`,
  );
  const tally: CampaignTally = { seed, rows: new Map(), findings: [], cases: 0 };
  const start = performance.now();
  for (const spec of o.devices) {
    const but = await startBackend(spec, env);
    if (but === null) return 2;
    await fuzzBackend(tally, but, o, per, env);
  }
  return await reportCampaign(tally, o, (performance.now() - start) / 1000, env);
}

/** The summary: one row per back-end and hostile class, a column per verdict. */
export function formatVerdictTable(
  rows: readonly { backend: string; cls: string; tally: Tally; seconds: number }[],
  cases: number,
  wall: number,
): string {
  const header = ["back-end", "class", "cases", ...VERDICTS, "cases/s"];
  const body = rows.map((r) => {
    const n = VERDICTS.reduce((s, v) => s + r.tally[v], 0);
    return [
      r.backend,
      r.cls,
      String(n),
      ...VERDICTS.map((v) => String(r.tally[v])),
      r.seconds > 0 ? (n / r.seconds).toFixed(1) : "-",
    ];
  });
  const tot: Tally = { PASS: 0, REJECT: 0, WEDGED: 0, CORRUPT: 0, CRASH: 0 };
  for (const r of rows) for (const v of VERDICTS) tot[v] += r.tally[v];
  body.push([
    "total",
    "",
    String(cases),
    ...VERDICTS.map((v) => String(tot[v])),
    wall > 0 ? (cases / wall).toFixed(1) : "-",
  ]);
  const w = header.map((h, i) => Math.max(h.length, ...body.map((r) => r[i].length)));
  const line = (r: string[]) =>
    r.map((c, i) => (i < 2 ? c.padEnd(w[i]) : c.padStart(w[i]))).join("  ").trimEnd();
  const sep = w.map((x) => "-".repeat(x)).join("  ");
  const out = [line(header), sep, ...body.slice(0, -1).map(line), sep, line(body[body.length - 1])];
  return out.join("\n");
}

async function replay(file: string, o: DeviceOptions, env: DeviceEnv): Promise<number> {
  let entry: CorpusEntry;
  let input: z.infer<typeof deviceInputSchema>;
  try {
    entry = parseCorpusEntry(file, Deno.readTextFileSync(file));
    const r = deviceInputSchema.safeParse(entry.input);
    if (!r.success) {
      env.err(
        `fuzz: ${file}: field "input" is not a device case (${
          z.prettifyError(r.error).split("\n")[0]
        }). Fix: delete the file and run the campaign again\n`,
      );
      return 2;
    }
    input = r.data;
  } catch (e) {
    env.err(`fuzz: --replay: ${messageOf(e).split("\n")[0]}\n`);
    return 2;
  }
  let be: DeviceBackend;
  try {
    be = await DeviceBackend.start(input.backend, { dir: dir(), iommu: input.iommu });
  } catch (e) {
    env.err(
      `fuzz: --replay ${file}: back-end ${input.backend} cannot start: ${
        messageOf(e).split("\n")[0]
      }\n`,
    );
    return 2;
  }
  let r: CaseResult;
  try {
    r = runDeviceCase(be, input.case, input.caseNo, { probeMs: o.probeMs });
  } finally {
    await be.stop();
  }
  const fixed = r.verdict === "PASS" || r.verdict === "REJECT";
  env.out(
    [
      `replay ${file}`,
      `  target:    ${entry.target} (back-end ${input.backend}${
        input.iommu ? ", ACCESS_PLATFORM" : ""
      })`,
      `  recorded:  ${entry.error.signature}: ${entry.error.message.split("\n")[0]}`,
      `  found:     ${entry.date}, seed ${entry.seed}, case ${entry.path}`,
      `  case:      ${JSON.stringify(input.case)}`,
      `  verdict:   ${r.verdict} (${r.code}) in ${r.ms.toFixed(0)} ms: ${r.detail}`,
      fixed
        ? `FIXED: the back-end now passes or refuses cleanly`
        : `STILL FAILS: ${r.verdict}${
          r.verdict === entry.error.oracle ? "" : ` (recorded ${entry.error.oracle})`
        }`,
      "",
    ].join("\n"),
  );
  return fixed ? 0 : 1;
}

if (import.meta.main) {
  const enc = new TextEncoder();
  Deno.exit(
    await deviceFuzzMain(Deno.args, {
      out: (s) => Deno.stdout.writeSync(enc.encode(s)),
      err: (s) => Deno.stderr.writeSync(enc.encode(s)),
    }),
  );
}
