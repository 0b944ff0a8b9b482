/**
 * Merging device-campaign reports (`deno task fuzz --device ... --json FILE`) with
 * `deno task fuzz:merge`: campaigns against different back-ends, or against one back-end with
 * different seeds, become one report. Unlike shard reports they are not a partition of one
 * campaign: every campaign is kept, lines of the same back-end and hostile class are summed
 * (cases, time, verdicts), failures de-duplicated by signature.
 * @module
 */

import {
  type CampaignInfo,
  type FuzzReport,
  rate,
  REPORT_FORMAT,
  ReportError,
  sortedUnion,
  type TargetReport,
  withTotals,
} from "../report.ts";

/** True when `report` was written by a device campaign (its campaigns name their back-ends). */
export function isDeviceReport(report: FuzzReport): boolean {
  return report.campaigns.every((c) => c.devices !== undefined);
}

const VERDICT_ORDER = ["PASS", "REJECT", "WEDGED", "CORRUPT", "CRASH"] as const;

/**
 * Merges device-campaign reports. @throws {ReportError} when one of them is not a device report
 * (shard reports merge separately), when a campaign appears twice (same seed, date and
 * targets: the same file passed twice), or when a line has no verdict counts.
 */
export function mergeDeviceReports(
  reports: readonly { file: string; report: FuzzReport }[],
): FuzzReport {
  if (reports.length === 0) throw new ReportError("(none)", "no reports to merge");
  for (const { file, report } of reports) {
    if (!isDeviceReport(report)) {
      throw new ReportError(
        file,
        "campaigns: not a device campaign (no devices field), but " +
          `${reports.find((r) => isDeviceReport(r.report))?.file} is. Fix: merge device ` +
          "reports (`fuzz --device ... --json FILE`) and shard reports separately",
      );
    }
  }
  const seen = new Map<string, string>();
  const campaigns: CampaignInfo[] = [];
  const by = new Map<string, TargetReport>();
  for (const { file, report } of reports) {
    for (const c of report.campaigns) {
      const key = `seed ${c.seed} on ${c.devices!.join(",")} at ${c.date}`;
      const other = seen.get(key);
      if (other !== undefined) {
        throw new ReportError(file, `campaign ${key} is already in ${other}. Fix: pass it once`);
      }
      seen.set(key, file);
      campaigns.push(c);
    }
    for (const t of report.targets) {
      if (t.verdicts === undefined) {
        throw new ReportError(
          file,
          `targets: "${t.target}" has no verdicts field (written by an older runner). ` +
            "Fix: rerun the device campaign with this version",
        );
      }
      const m = by.get(t.target);
      if (m === undefined) {
        by.set(t.target, structuredClone(t));
        continue;
      }
      m.units += t.units;
      m.runs += t.runs;
      m.seconds += t.seconds;
      m.runsPerSecond = rate(m.runs, m.seconds);
      m.errorCodes = sortedUnion([m.errorCodes, t.errorCodes]);
      for (const v of VERDICT_ORDER) m.verdicts![v] += t.verdicts[v];
      // "<class> on <back-end>: PASS n, ..." as the runner writes it, with the summed counts
      m.description = m.description.replace(
        /:[^:]*$/,
        ": " + VERDICT_ORDER.map((v) => `${v} ${m.verdicts![v]}`).join(", "),
      );
      if (t.crash !== undefined) {
        m.crash = m.crash === undefined ? t.crash : `${m.crash}\n${t.crash}`;
      }
      for (const f of t.failures) {
        if (!m.failures.some((g) => g.signature.hash === f.signature.hash)) m.failures.push(f);
      }
    }
  }
  return withTotals({
    format: REPORT_FORMAT,
    fastCheckVersion: reports[0].report.fastCheckVersion,
    denoVersion: reports[0].report.denoVersion,
    campaigns,
    targets: [...by.values()].sort((a, b) => a.target.localeCompare(b.target)),
  });
}
