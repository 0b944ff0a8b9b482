/**
 * Campaign reports: the JSON report (zod schema, validated again on merge), the human summary
 * table, JUnit XML, and the merge of shard reports.
 * @module
 */

import { z } from "zod";
import type { UnitResult } from "./runner.ts";
import { CATALOGUE_CODES } from "./catalogue.ts";
import { zodLine } from "./zod_line.ts";

/** Format tag of the JSON report. */
export const REPORT_FORMAT = "virtq-lab/fuzz-report@1";

const Signature = z.strictObject({
  target: z.string(),
  oracle: z.string(),
  code: z.string(),
  text: z.string(),
  hash: z.string().regex(/^[0-9a-f]{16}$/),
});

const Failure = z.strictObject({
  signature: Signature,
  message: z.string(),
  seed: z.int(),
  path: z.string(),
  replayPath: z.string().optional(),
  inputText: z.string(),
  shrinks: z.int().nonnegative(),
  /** Corpus file of the counterexample (null when it could not be written). */
  corpusFile: z.string().nullable(),
  /** False when the corpus already held this signature. */
  isNew: z.boolean(),
});

const TargetReport = z.strictObject({
  target: z.string(),
  description: z.string(),
  units: z.int().nonnegative(),
  runs: z.int().nonnegative(),
  seconds: z.number().nonnegative(),
  runsPerSecond: z.number().nonnegative(),
  failures: z.array(Failure),
  errorCodes: z.array(z.string()),
  /** Work counted by the target (`FuzzTarget.workUnit`), e.g. chains popped or rejected. */
  work: z.strictObject({
    unit: z.string(),
    count: z.int().nonnegative(),
    perSecond: z.number().nonnegative(),
  }).optional(),
  crash: z.string().optional(),
  /** Each unit this target ran: its slice, derived seed and runs (merged shards: every shard's). */
  slices: z.array(z.strictObject({
    slice: z.int().nonnegative(),
    seed: z.int(),
    runs: z.int().nonnegative(),
  })).optional(),
  /** Device campaigns (`fuzz --device`): cases per verdict of this back-end and class. */
  verdicts: z.strictObject({
    PASS: z.int().nonnegative(),
    REJECT: z.int().nonnegative(),
    WEDGED: z.int().nonnegative(),
    CORRUPT: z.int().nonnegative(),
    CRASH: z.int().nonnegative(),
  }).optional(),
});

const Campaign = z.strictObject({
  seed: z.int(),
  shard: z.strictObject({ index: z.int().positive(), count: z.int().positive() }),
  /** The selected targets in plan order: with seed and shard, the units this shard ran. */
  targets: z.array(z.string()).optional(),
  date: z.string(),
  wallSeconds: z.number().nonnegative(),
  workers: z.int().nonnegative(),
  budget: z.strictObject({ seconds: z.number().nullable(), runs: z.int().nullable() }),
  /** Device campaigns (`fuzz --device`): the back-ends it ran against, e.g. `["testpmd"]`. */
  devices: z.array(z.string()).optional(),
});

/** zod schema of the JSON report (`--json`, `deno task fuzz:merge`). */
export const FuzzReportSchema = z.strictObject({
  format: z.literal(REPORT_FORMAT),
  fastCheckVersion: z.string(),
  denoVersion: z.string(),
  campaigns: z.array(Campaign).min(1),
  targets: z.array(TargetReport),
  totals: z.strictObject({
    targets: z.int().nonnegative(),
    runs: z.int().nonnegative(),
    failures: z.int().nonnegative(),
    crashes: z.int().nonnegative(),
    seconds: z.number().nonnegative(),
  }),
  errorCodes: z.array(z.string()),
});

/** The JSON report of a campaign (or of merged shards). */
export type FuzzReport = z.infer<typeof FuzzReportSchema>;
/** One target's line of a {@link FuzzReport}. */
export type TargetReport = z.infer<typeof TargetReport>;
/** One failure of a {@link TargetReport}. */
export type FailureReport = z.infer<typeof Failure>;
/** One campaign (shard run) of a {@link FuzzReport}. */
export type CampaignInfo = z.infer<typeof Campaign>;

/** Where each failure's counterexample went (by signature hash). */
export type CorpusOutcome = Map<string, { file: string | null; isNew: boolean }>;

/** Runs per second, rounded; 0 for no time. */
export function rate(runs: number, seconds: number): number {
  return seconds > 0 ? Math.round(runs / seconds) : 0;
}

/** The sorted union of string lists. */
export function sortedUnion(lists: Iterable<readonly string[]>): string[] {
  const s = new Set<string>();
  for (const l of lists) for (const x of l) s.add(x);
  return [...s].sort();
}

/** `base` with its totals and united error codes filled in. */
export function withTotals(
  base: Omit<FuzzReport, "totals" | "errorCodes">,
): FuzzReport {
  const t = base.targets;
  return {
    ...base,
    totals: {
      targets: t.length,
      runs: t.reduce((a, x) => a + x.runs, 0),
      failures: t.reduce((a, x) => a + x.failures.length, 0),
      crashes: t.filter((x) => x.crash !== undefined).length,
      seconds: t.reduce((a, x) => a + x.seconds, 0),
    },
    errorCodes: sortedUnion(t.map((x) => x.errorCodes)),
  };
}

/** Folds unit results into per-target lines (units of one target are combined). */
export function targetReports(
  units: readonly UnitResult[],
  descriptions: ReadonlyMap<string, string>,
  corpus: CorpusOutcome,
): TargetReport[] {
  const by = new Map<string, TargetReport>();
  for (const u of units) {
    let t = by.get(u.target);
    if (t === undefined) {
      t = {
        target: u.target,
        description: descriptions.get(u.target) ?? "",
        units: 0,
        runs: 0,
        seconds: 0,
        runsPerSecond: 0,
        failures: [],
        errorCodes: [],
      };
      by.set(u.target, t);
    }
    t.units++;
    t.runs += u.runs;
    (t.slices ??= []).push({ slice: u.slice, seed: u.seed, runs: u.runs });
    t.seconds += u.seconds;
    t.errorCodes = sortedUnion([t.errorCodes, u.errorCodes]);
    if (u.work !== undefined) {
      t.work ??= { unit: u.work.unit, count: 0, perSecond: 0 };
      t.work.count += u.work.count;
    }
    if (u.crash !== undefined) t.crash = t.crash === undefined ? u.crash : `${t.crash}\n${u.crash}`;
    for (const f of u.failures) {
      if (t.failures.some((g) => g.signature.hash === f.signature.hash)) continue;
      const c = corpus.get(f.signature.hash) ?? { file: null, isNew: true };
      const rec: FailureReport = {
        signature: f.signature,
        message: f.message,
        seed: f.seed,
        path: f.path,
        inputText: f.inputText,
        shrinks: f.shrinks,
        corpusFile: c.file,
        isNew: c.isNew,
      };
      if (f.replayPath !== undefined) rec.replayPath = f.replayPath;
      t.failures.push(rec);
    }
  }
  for (const t of by.values()) {
    t.runsPerSecond = rate(t.runs, t.seconds);
    if (t.work !== undefined) t.work.perSecond = rate(t.work.count, t.seconds);
  }
  return [...by.values()];
}

/** Builds the JSON report of one campaign. */
export function buildReport(
  campaign: CampaignInfo,
  targets: TargetReport[],
  versions: { fastCheck: string; deno: string },
): FuzzReport {
  return withTotals({
    format: REPORT_FORMAT,
    fastCheckVersion: versions.fastCheck,
    denoVersion: versions.deno,
    campaigns: [campaign],
    targets,
  });
}

/** A report problem found while merging: names the file and the field. */
export class ReportError extends Error {
  /**
   * Creates a report error.
   * @param file the report file.
   * @param problem what is wrong (field paths included).
   */
  constructor(file: string, problem: string) {
    super(`${file}: ${problem}`);
    this.name = "ReportError";
  }
}

/**
 * Validates a parsed JSON report. @throws {ReportError} naming the file, the fields and the fix.
 */
export function parseReport(file: string, json: unknown): FuzzReport {
  const r = FuzzReportSchema.safeParse(json);
  if (!r.success) {
    throw new ReportError(
      file,
      `not a fuzz report (${REPORT_FORMAT}): ${zodLine(r.error)}. ` +
        "Fix: pass files written by `deno task fuzz --json FILE` of this version",
    );
  }
  return r.data;
}

function fmtInt(n: number): string {
  return n.toLocaleString("en-US");
}

/** Seconds as `12.3s` / `2m05s`. */
export function fmtSeconds(s: number): string {
  if (s < 60) return `${s.toFixed(1)}s`;
  const m = Math.floor(s / 60);
  return `${m}m${String(Math.round(s - m * 60)).padStart(2, "0")}s`;
}

/** The human summary: one row per target, totals, then each failure with its replay command. */
export function formatSummary(report: FuzzReport): string {
  const header = ["target", "runs", "runs/s", "failures", "time", "status"];
  const rows = report.targets.map((t) => [
    t.target,
    fmtInt(t.runs),
    fmtInt(t.runsPerSecond),
    String(t.failures.length),
    fmtSeconds(t.seconds),
    t.crash !== undefined ? "CRASH" : t.failures.length > 0 ? "FAIL" : "ok",
  ]);
  const tot = report.totals;
  rows.push([
    "total",
    fmtInt(tot.runs),
    fmtInt(rate(tot.runs, tot.seconds)),
    String(tot.failures),
    fmtSeconds(tot.seconds),
    tot.failures + tot.crashes > 0 ? "FAIL" : "ok",
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) =>
    r.map((c, i) => (i === 0 || i === 5 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ")
      .trimEnd();
  const out = [line(header), widths.map((w) => "-".repeat(w)).join("  ")];
  rows.forEach((r, i) => {
    if (i === rows.length - 1 && i > 0) out.push(widths.map((w) => "-".repeat(w)).join("  "));
    out.push(line(r));
  });
  const c = report.campaigns;
  const wall = Math.max(...c.map((x) => x.wallSeconds));
  out.push(
    "",
    `seed ${[...new Set(c.map((x) => x.seed))].join(", ")}; shard ${
      c.map((x) => `${x.shard.index}/${x.shard.count}`).join(", ")
    }; wall ${fmtSeconds(wall)}${c.length > 1 ? " (longest shard)" : ""}, ${
      fmtInt(rate(tot.runs, wall))
    } runs/s in all; ${
      report.errorCodes.filter((x) => CATALOGUE_CODES.includes(x)).length
    } of ${CATALOGUE_CODES.length} catalogued error codes reached`,
  );
  for (const t of report.targets) {
    if (t.work === undefined) continue;
    out.push(
      `${t.target}: ${fmtInt(t.work.count)} ${t.work.unit}, ${
        fmtInt(t.work.perSecond)
      } ${t.work.unit}/s per worker`,
    );
  }
  for (const t of report.targets) {
    if (t.crash !== undefined) out.push("", `CRASH ${t.target}: ${t.crash}`);
    for (const f of t.failures) {
      out.push(
        "",
        `FAIL ${t.target} [${f.signature.oracle} / ${f.signature.code}]${
          f.isNew ? "" : " (already in corpus)"
        }`,
        `  ${f.message.split("\n")[0]}`,
        `  shrunk input: ${
          f.inputText.length > 300 ? f.inputText.slice(0, 300) + "..." : f.inputText
        }`,
        f.corpusFile !== null
          ? `  replay: deno task fuzz --replay ${f.corpusFile}`
          : `  replay: deno task fuzz --target ${t.target} --replay-seed ${f.seed} --replay-path ${f.path}`,
      );
    }
  }
  return out.join("\n");
}

function xml(s: string): string {
  return s.replace(
    /[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;" })[c]!,
    // deno-lint-ignore no-control-regex
  ).replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/g, ""); // not allowed in XML 1.0
}

/**
 * JUnit XML: one `<testcase>` per target with at most one `<failure>` (all of the target's
 * distinct failures, by signature, in its message and body), crashes as `<error>`, and the
 * campaign's seed, shards, Deno and fast-check versions as suite `<properties>`.
 */
export function formatJunit(report: FuzzReport): string {
  const tot = report.totals;
  const failed = report.targets.filter((t) => t.failures.length > 0).length;
  const time = tot.seconds.toFixed(3);
  const c = report.campaigns;
  const props: [string, string][] = [
    ["seed", [...new Set(c.map((x) => x.seed))].join(",")],
    ["shard", c.map((x) => `${x.shard.index}/${x.shard.count}`).join(",")],
    ["deno", report.denoVersion],
    ["fast-check", report.fastCheckVersion],
  ];
  const out = [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<testsuites name="virtq-lab fuzz" tests="${tot.targets}" failures="${failed}" errors="${tot.crashes}" time="${time}">`,
    `  <testsuite name="fuzz" tests="${tot.targets}" failures="${failed}" errors="${tot.crashes}" skipped="0" time="${time}" timestamp="${
      xml(report.campaigns[0].date)
    }">`,
    `    <properties>`,
    ...props.map(([k, v]) => `      <property name="${xml(k)}" value="${xml(v)}"/>`),
    `    </properties>`,
  ];
  for (const t of report.targets) {
    out.push(
      `    <testcase classname="fuzz" name="${xml(t.target)}" time="${t.seconds.toFixed(3)}">`,
    );
    if (t.failures.length > 0) {
      const bodies = t.failures.map((f) =>
        `[${f.signature.oracle} / ${f.signature.code}] ${f.message}\nshrunk input: ${f.inputText}\n` +
        (f.corpusFile
          ? `replay: deno task fuzz --replay ${f.corpusFile}`
          : `replay: deno task fuzz --target ${t.target} --replay-seed ${f.seed} --replay-path ${f.path}`)
      );
      const first = t.failures[0].signature;
      const message = t.failures.length === 1
        ? first.text
        : `${t.failures.length} distinct failures: ${
          t.failures.map((f) => f.signature.text).join("; ")
        }`;
      out.push(
        `      <failure message="${xml(message)}" type="${
          xml(t.failures.length === 1 ? first.oracle : "multiple")
        }">${xml(bodies.join("\n\n"))}</failure>`,
      );
    }
    if (t.crash !== undefined) {
      out.push(`      <error message="target crashed" type="crash">${xml(t.crash)}</error>`);
    }
    out.push(
      `      <system-out>${
        xml(
          `${t.description}\nruns=${t.runs} runs/s=${t.runsPerSecond} units=${t.units} error codes: ${
            t.errorCodes.join(" ") || "-"
          }`,
        )
      }</system-out>`,
      `    </testcase>`,
    );
  }
  out.push(`  </testsuite>`, `</testsuites>`, "");
  return out.join("\n");
}

/**
 * The campaigns of `reports` in order, each once: a campaign whose `keyOf` was already seen is a
 * {@link ReportError} naming both files, with `duplicate(key, otherFile)` as the message.
 */
export function collectCampaigns(
  reports: readonly { file: string; report: FuzzReport }[],
  keyOf: (c: CampaignInfo) => string,
  duplicate: (key: string, otherFile: string) => string,
): CampaignInfo[] {
  const seen = new Map<string, string>();
  const campaigns: CampaignInfo[] = [];
  for (const { file, report } of reports) {
    for (const c of report.campaigns) {
      const key = keyOf(c);
      const other = seen.get(key);
      if (other !== undefined) throw new ReportError(file, duplicate(key, other));
      seen.set(key, file);
      campaigns.push(c);
    }
  }
  return campaigns;
}

/**
 * Adds line `t` to `m`, the merged line of the same target: units, runs and seconds summed (the
 * rate recomputed), error codes united, crash texts joined, failures de-duplicated by signature.
 */
export function addTargetReport(m: TargetReport, t: TargetReport): void {
  m.units += t.units;
  m.runs += t.runs;
  m.seconds += t.seconds;
  m.runsPerSecond = rate(m.runs, m.seconds);
  m.errorCodes = sortedUnion([m.errorCodes, t.errorCodes]);
  if (t.crash !== undefined) {
    m.crash = m.crash === undefined ? t.crash : `${m.crash}\n${t.crash}`;
  }
  for (const f of t.failures) {
    if (!m.failures.some((g) => g.signature.hash === f.signature.hash)) m.failures.push(f);
  }
}

/** The merged report: `first`'s versions, `campaigns`, and the merged lines sorted by target. */
export function mergedReport(
  first: FuzzReport,
  campaigns: CampaignInfo[],
  lines: Iterable<TargetReport>,
): FuzzReport {
  return withTotals({
    format: REPORT_FORMAT,
    fastCheckVersion: first.fastCheckVersion,
    denoVersion: first.denoVersion,
    campaigns,
    targets: [...lines].sort((a, b) => a.target.localeCompare(b.target)),
  });
}
