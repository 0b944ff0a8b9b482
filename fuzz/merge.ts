/**
 * `deno task fuzz:merge a.json b.json ... [--json OUT] [--junit OUT]`: merges the JSON reports
 * of campaign shards (`deno task fuzz --shard I/N --seed S --json FILE`), or of device campaigns
 * (`deno task fuzz --device NAME --json FILE`), into one, validating each with zod, prints the
 * merged summary and exits 1 when the merged campaign has failures.
 * @module
 */

import { formatJunit, formatSummary, type FuzzReport, parseReport, ReportError } from "./report.ts";
import { mergeReports } from "./shards.ts";
import { isDeviceReport, mergeDeviceReports } from "./device/merge.ts";
import { messageOf } from "./signature.ts";
import { outputPathsProblem } from "./output_paths.ts";

/** `--help` text of `deno task fuzz:merge`. */
export const MERGE_HELP = `deno task fuzz:merge REPORT.json... [--json OUT] [--junit OUT]

Merges shard reports written by \`deno task fuzz --shard I/N --seed S --json FILE\` into one campaign
report: runs and time are summed per target, failures de-duplicated by signature. Device campaign
reports (\`deno task fuzz --device NAME --json FILE\`, one per back-end or seed) merge too: every
campaign is kept and the verdicts of each back-end and class are summed. Prints the merged
summary; exits 1 when the merged campaign has failures, 2 on a usage or report error.

Options:
  --json OUT     write the merged JSON report
  --junit OUT    write the merged JUnit XML report
  -h, --help     this help
`;

/** Runs the merge CLI; returns the exit status. */
export function mergeMain(
  args: readonly string[],
  out: (s: string) => void,
  err: (s: string) => void,
): number {
  const files: string[] = [];
  let json: string | undefined;
  let junit: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--help" || a === "-h") {
      out(MERGE_HELP);
      return 0;
    }
    if (a === "--json" || a === "--junit") {
      const v = args[i + 1];
      if (v === undefined || v.startsWith("--")) {
        err(`fuzz:merge: ${a}: needs a value. Fix: write ${a} OUT (see --help)\n`);
        return 2;
      }
      if (a === "--json") json = v;
      else junit = v;
      i++;
    } else if (a.startsWith("-")) {
      err(`fuzz:merge: ${a}: unknown flag. Fix: use --json, --junit or --help\n`);
      return 2;
    } else files.push(a);
  }
  if (files.length === 0) {
    err(
      "fuzz:merge: no reports given. Fix: pass the shard reports, e.g. a.json b.json (see --help)\n",
    );
    return 2;
  }
  const pathProblem = outputPathsProblem([["--json", json], ["--junit", junit]]);
  if (pathProblem !== null) {
    err(`fuzz:merge: ${pathProblem}\n`);
    return 2;
  }
  let merged: FuzzReport;
  try {
    const reports = files.map((file) => {
      let parsed: unknown;
      try {
        parsed = JSON.parse(Deno.readTextFileSync(file));
      } catch (e) {
        throw new ReportError(file, `cannot read JSON (${messageOf(e)}). Fix: pass a report file`);
      }
      return { file, report: parseReport(file, parsed) };
    });
    // device campaigns (`fuzz --device`) are not shards of one campaign: they merge by line
    merged = reports.some((r) => isDeviceReport(r.report))
      ? mergeDeviceReports(reports)
      : mergeReports(reports);
  } catch (e) {
    if (e instanceof ReportError) {
      err(`fuzz:merge: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
  out(`fuzz:merge: ${files.length} report(s), ${merged.campaigns.length} campaign shard(s)\n`);
  out(formatSummary(merged) + "\n");
  if (json !== undefined) {
    Deno.writeTextFileSync(json, JSON.stringify(merged, null, 2) + "\n");
    out(`fuzz:merge: JSON report written to ${json}\n`);
  }
  if (junit !== undefined) {
    Deno.writeTextFileSync(junit, formatJunit(merged));
    out(`fuzz:merge: JUnit report written to ${junit}\n`);
  }
  return merged.totals.failures + merged.totals.crashes > 0 ? 1 : 0;
}

if (import.meta.main) {
  const enc = new TextEncoder();
  Deno.exit(mergeMain(
    Deno.args,
    (s) => Deno.stdout.writeSync(enc.encode(s)),
    (s) => Deno.stderr.writeSync(enc.encode(s)),
  ));
}
