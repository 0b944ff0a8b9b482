/**
 * Merging shard reports (`deno task fuzz:merge`), after checking they are exactly one campaign's partition:
 * one seed, one shard count, one target selection, every shard index once, and each shard ran the
 * units its plan (`fuzz/plan.ts`) gives it.
 * @module
 */

import { planShard } from "./plan.ts";
import {
  addTargetReport,
  collectCampaigns,
  type FuzzReport,
  mergedReport,
  rate,
  ReportError,
  type TargetReport,
} from "./report.ts";

/**
 * Throws {@link ReportError} (naming the files, the field and the fix) unless the campaigns of
 * `reports` are the shards `1..N` of one campaign (same seed, same shard count `N`, same
 * targets), each exactly once, and every report's per-target unit counts are those of the
 * shards it claims (`planShard`).
 */
export function checkShardPartition(
  reports: readonly { file: string; report: FuzzReport }[],
): void {
  const all = reports.flatMap(({ file, report }) => report.campaigns.map((c) => ({ file, c })));
  const first = all[0];
  if (first === undefined) return;
  const fix = "Fix: merge the shards of one campaign, run with the same --seed, --shard I/N " +
    "and --target on every shard";
  for (const { file, c } of all) {
    if (c.seed !== first.c.seed) {
      throw new ReportError(
        file,
        `campaigns: seed ${c.seed}, but ${first.file} has seed ${first.c.seed}. ${fix}`,
      );
    }
    if (c.shard.count !== first.c.shard.count) {
      throw new ReportError(
        file,
        `campaigns: shard count ${c.shard.count}, but ${first.file} has ${first.c.shard.count}. ${fix}`,
      );
    }
    if (c.targets === undefined) {
      throw new ReportError(
        file,
        "campaigns: no targets field (written by an older runner), so its shard cannot be " +
          "checked. Fix: rerun the shard with this version",
      );
    }
    if (c.targets.join(",") !== first.c.targets?.join(",")) {
      throw new ReportError(
        file,
        `campaigns: targets [${c.targets.join(", ")}], but ${first.file} has ` +
          `[${first.c.targets?.join(", ")}]. ${fix}`,
      );
    }
  }
  const count = first.c.shard.count;
  const byIndex = new Map<number, string>();
  for (const { file, c } of all) {
    const other = byIndex.get(c.shard.index);
    if (other !== undefined) {
      throw new ReportError(
        file,
        `seed ${c.seed} shard ${c.shard.index}/${count} is already in ${other}. ` +
          "Fix: pass each shard once",
      );
    }
    byIndex.set(c.shard.index, file);
  }
  const missing = Array.from({ length: count }, (_, i) => i + 1).filter((i) => !byIndex.has(i));
  if (missing.length > 0) {
    throw new ReportError(
      reports.map((r) => r.file).join(", "),
      `shard(s) ${missing.map((i) => `${i}/${count}`).join(", ")} of seed ${first.c.seed} ` +
        "missing. Fix: pass the report of every shard",
    );
  }
  for (const { file, report } of reports) {
    const expected = new Map<string, number>();
    for (const c of report.campaigns) {
      for (const u of planShard(c.targets ?? [], c.seed, c.shard)) {
        expected.set(u.target, (expected.get(u.target) ?? 0) + 1);
      }
    }
    const actual = new Map(report.targets.map((t) => [t.target, t.units]));
    for (const name of new Set([...expected.keys(), ...actual.keys()])) {
      const want = expected.get(name) ?? 0;
      const got = actual.get(name) ?? 0;
      if (want !== got) {
        throw new ReportError(
          file,
          `targets: ran ${got} unit(s) of "${name}", but the shard(s) it claims (` +
            report.campaigns.map((c) => `${c.shard.index}/${c.shard.count}`).join(", ") +
            `, seed ${first.c.seed}) plan ${want}. Fix: merge unmodified reports of ` +
            "`deno task fuzz --shard I/N --seed S --json FILE`",
        );
      }
    }
  }
}

/**
 * Merges shard reports into one: targets are combined by name (runs and time summed, failures
 * de-duplicated by signature, error codes united). @throws {ReportError} unless the reports are
 * exactly the shards of one campaign ({@link checkShardPartition}: one seed, one
 * shard count, every index once, each shard's units those its plan gives it).
 */
export function mergeReports(reports: readonly { file: string; report: FuzzReport }[]): FuzzReport {
  if (reports.length === 0) throw new ReportError("(none)", "no reports to merge");
  checkShardPartition(reports);
  const campaigns = collectCampaigns(
    reports,
    (c) => `seed ${c.seed} shard ${c.shard.index}/${c.shard.count}`,
    (key, other) => `${key} is already in ${other}. Fix: pass each shard once`,
  );
  const by = new Map<string, TargetReport>();
  for (const { report } of reports) {
    for (const t of report.targets) {
      const m = by.get(t.target);
      if (m === undefined) {
        by.set(t.target, structuredClone(t));
        continue;
      }
      addTargetReport(m, t);
      if (t.slices !== undefined) {
        m.slices = [...(m.slices ?? []), ...t.slices].sort((a, b) => a.slice - b.slice);
      }
      if (t.work !== undefined) {
        m.work ??= { unit: t.work.unit, count: 0, perSecond: 0 };
        m.work.count += t.work.count;
      }
      if (m.work !== undefined) m.work.perSecond = rate(m.work.count, m.seconds);
    }
  }
  return mergedReport(reports[0].report, campaigns, by.values());
}
