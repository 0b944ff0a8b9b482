// `deno task fuzz:merge` on device-campaign reports (`fuzz --device NAME --json FILE`): two
// reports (two back-ends, or one back-end with two seeds) merge into one zod-valid report with
// the verdicts of each back-end and class summed; a device report mixed with a shard report,
// the same campaign twice, and a line without verdicts are one-line errors (exit 2).

import { assertEquals, assertMatch } from "@std/assert";
import { mergeMain } from "../../fuzz/merge.ts";
import { buildReport, type FuzzReport, parseReport, type TargetReport } from "../../fuzz/report.ts";

type V = { PASS: number; REJECT: number; WEDGED: number; CORRUPT: number; CRASH: number };

function line(backend: string, cls: string, v: V, failureHash?: string): TargetReport {
  const runs = v.PASS + v.REJECT + v.WEDGED + v.CORRUPT + v.CRASH;
  return {
    target: `device-${backend}-${cls}`,
    description: `${cls} on ${backend}: PASS ${v.PASS}, REJECT ${v.REJECT}, WEDGED ${v.WEDGED}, ` +
      `CORRUPT ${v.CORRUPT}, CRASH ${v.CRASH}`,
    units: 1,
    runs,
    seconds: runs / 10,
    runsPerSecond: 10,
    failures: failureHash === undefined ? [] : [{
      signature: {
        target: `device-${backend}-${cls}`,
        oracle: "CORRUPT",
        code: "CORRUPT",
        text: `CORRUPT ${cls}`,
        hash: failureHash,
      },
      message: "device wrote outside its buffers",
      seed: 1,
      path: "7",
      inputText: "{}",
      shrinks: 0,
      corpusFile: null,
      isNew: true,
    }],
    errorCodes: [],
    verdicts: v,
  };
}

function deviceReport(seed: number, devices: string[], targets: TargetReport[]): FuzzReport {
  return buildReport(
    {
      seed,
      shard: { index: 1, count: 1 },
      targets: targets.map((t) => t.target),
      date: `2026-12-06T08:00:0${seed}.000Z`,
      wallSeconds: 5,
      workers: 0,
      budget: { seconds: 5, runs: null },
      devices,
    },
    targets,
    { fastCheck: "4.0.0", deno: "2.9.6" },
  );
}

const v = (PASS: number, REJECT: number, WEDGED = 0, CORRUPT = 0): V => ({
  PASS,
  REJECT,
  WEDGED,
  CORRUPT,
  CRASH: 0,
});

function runMerge(reports: FuzzReport[], extra: string[] = []) {
  const dir = Deno.makeTempDirSync();
  const files = reports.map((r, i) => {
    const f = `${dir}/r${i}.json`;
    Deno.writeTextFileSync(f, JSON.stringify(r));
    return f;
  });
  let out = "", err = "";
  const code = mergeMain([...files, ...extra, "--json", `${dir}/merged.json`], (s) => (out += s), (
    s,
  ) => (err += s));
  let merged: FuzzReport | null = null;
  try {
    merged = parseReport("merged", JSON.parse(Deno.readTextFileSync(`${dir}/merged.json`)));
  } catch { /* not written */ }
  Deno.removeSync(dir, { recursive: true });
  return { code, out, err, merged: merged as FuzzReport | null };
}

Deno.test("fuzz:merge: a testpmd and a qsd device report merge into one valid report", () => {
  const a = deviceReport(1, ["testpmd"], [
    line("testpmd", "desc-table", v(19, 0, 18, 10), "00000000000000aa"),
    line("testpmd", "indirect", v(8, 0, 8, 5)),
  ]);
  const b = deviceReport(2, ["qsd"], [line("qsd", "desc-table", v(30, 12))]);
  const r = runMerge([a, b]);
  assertEquals(r.err, "");
  assertEquals(r.code, 1, "a CORRUPT finding is a failure of the merged campaign");
  const m = r.merged;
  if (m === null) throw new Error(`no merged report: ${r.err}`);
  assertEquals(m.campaigns.map((c) => c.devices), [["testpmd"], ["qsd"]]);
  assertEquals(m.targets.map((t) => t.target), [
    "device-qsd-desc-table",
    "device-testpmd-desc-table",
    "device-testpmd-indirect",
  ]);
  assertEquals(m.totals.runs, 47 + 21 + 42);
  assertMatch(r.out, /device-testpmd-desc-table/);
});

Deno.test("fuzz:merge: two seeds on one back-end sum the verdicts of each class", () => {
  const a = deviceReport(1, ["testpmd"], [
    line("testpmd", "real-ring", v(18, 0, 2), "00000000000000bb"),
  ]);
  const b = deviceReport(2, ["testpmd"], [
    line("testpmd", "real-ring", v(20, 1), "00000000000000bb"),
    line("testpmd", "activation", v(3, 4)),
  ]);
  const r = runMerge([a, b]);
  assertEquals(r.err, "");
  const m = r.merged;
  if (m === null) throw new Error(`no merged report: ${r.err}`);
  const rr = m.targets.find((t) => t.target === "device-testpmd-real-ring")!;
  assertEquals(rr.verdicts, { PASS: 38, REJECT: 1, WEDGED: 2, CORRUPT: 0, CRASH: 0 });
  assertEquals(rr.runs, 41);
  assertEquals(rr.units, 2);
  assertEquals(
    rr.description,
    "real-ring on testpmd: PASS 38, REJECT 1, WEDGED 2, CORRUPT 0, CRASH 0",
  );
  assertEquals(rr.failures.length, 1, "the same signature once");
  assertEquals(m.campaigns.map((c) => c.seed), [1, 2]);
});

Deno.test("fuzz:merge: device reports refuse a shard report, a repeat and a line without verdicts", () => {
  const a = deviceReport(1, ["testpmd"], [line("testpmd", "indices", v(5, 0))]);
  const shard = buildReport(
    {
      seed: 1,
      shard: { index: 1, count: 1 },
      targets: [],
      date: "2026-12-06T08:00:00.000Z",
      wallSeconds: 1,
      workers: 1,
      budget: { seconds: 1, runs: null },
    },
    [],
    { fastCheck: "4.0.0", deno: "2.9.6" },
  );
  let r = runMerge([a, shard]);
  assertEquals(r.code, 2);
  assertMatch(r.err, /r1\.json: campaigns: not a device campaign .*Fix: merge device reports/);
  assertEquals(r.err.trim().split("\n").length, 1);
  r = runMerge([a, a]);
  assertEquals(r.code, 2);
  assertMatch(r.err, /r1\.json: campaign seed 1 on testpmd .* is already in .*r0\.json/);
  const old = structuredClone(a);
  delete old.targets[0].verdicts;
  r = runMerge([old, deviceReport(2, ["qsd"], [])]);
  assertEquals(r.code, 2);
  assertMatch(r.err, /"device-testpmd-indices" has no verdicts field/);
});
