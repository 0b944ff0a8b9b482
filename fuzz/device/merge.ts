/**
 * Merging device-campaign reports (`deno task fuzz --device ... --json FILE`) with
 * `deno task fuzz:merge`: campaigns against different back-ends, or against one back-end with
 * different seeds, become one report. Unlike shard reports they are not a partition of one
 * campaign: every campaign is kept, lines of the same back-end and hostile class are summed
 * (cases, time, verdicts), failures de-duplicated by signature.
 * @module
 */

import {
  addTargetReport,
  collectCampaigns,
  type FuzzReport,
  mergedReport,
  ReportError,
  type TargetReport,
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
  const campaigns = collectCampaigns(
    reports,
    (c) => `seed ${c.seed} on ${c.devices!.join(",")} at ${c.date}`,
    (key, other) => `campaign ${key} is already in ${other}. Fix: pass it once`,
  );
  const by = new Map<string, TargetReport>();
  for (const { file, report } of reports) {
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
      addTargetReport(m, t);
      for (const v of VERDICT_ORDER) m.verdicts![v] += t.verdicts[v];
      // "<class> on <back-end>: PASS n, ..." as the runner writes it, with the summed counts
      m.description = m.description.replace(
        /:[^:]*$/,
        ": " + VERDICT_ORDER.map((v) => `${v} ${m.verdicts![v]}`).join(", "),
      );
    }
  }
  return mergedReport(reports[0].report, campaigns, by.values());
}
