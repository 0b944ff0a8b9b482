import {
  assert,
  assertEquals,
  assertMatch,
  assertRejects,
  assertStringIncludes,
  assertThrows,
} from "@std/assert";
import fc from "fast-check";
import { DMA_ACCESS_READ, DmaFault, DmaMapError, VirtqError } from "../../src/mod.ts";
import { type FuzzTarget, OracleFailure } from "../../fuzz/target.ts";
import { CliError, DEFAULT_SECONDS, HELP, parseFuzzArgs } from "../../fuzz/cli.ts";
import { planShard, secondsPerUnit } from "../../fuzz/plan.ts";
import { extractReplayPath, runUnit, type UnitResult } from "../../fuzz/runner.ts";
import { deriveSeed, fnv1a64, signatureOf } from "../../fuzz/signature.ts";
import {
  buildReport,
  formatJunit,
  formatSummary,
  type FuzzReport,
  FuzzReportSchema,
  parseReport,
  ReportError,
  targetReports,
} from "../../fuzz/report.ts";
import { mergeReports } from "../../fuzz/shards.ts";
import { CorpusError, loadCorpus, replayEntry, writeCorpusEntry } from "../../fuzz/corpus.ts";
import { type FuzzEnv, fuzzMain } from "../../fuzz/main.ts";
import {
  consoleProgress,
  InProcessExecutor,
  runUnits,
  WorkerExecutor,
} from "../../fuzz/campaign.ts";
import { registryProblems, unregisteredTargets } from "../../fuzz/registry.ts";
import { describeValue, hexDump } from "../../fuzz/describe.ts";
import { mergeMain } from "../../fuzz/merge.ts";
import {
  coverageTable,
  estimateUnloaded,
  NOT_ENGINE,
  parseLcov,
  summarizeCoverage,
  unreachedCodes,
} from "../../fuzz/coverage.ts";
import { CATALOGUE_CODES, observeCatalogueErrors } from "../../fuzz/catalogue.ts";
import { noteErrorCode, observedErrorCodes, resetObserved } from "../../fuzz/observe.ts";
import {
  COPY_FAULTS,
  INDEX_FAULTS,
  makeCopyTarget,
  makeIndexTarget,
  TARGETS,
} from "./fuzz_examples.ts";

const EXAMPLES_URL = new URL("./fuzz_examples.ts", import.meta.url).href;

/** A target with two distinct planted bugs (different oracles) and a crash-free happy path. */
function twoBugs(): FuzzTarget<number> {
  return {
    name: "two-bugs",
    description: "two distinct bugs",
    arbitrary: () => fc.integer({ min: 0, max: 1000 }),
    run(n) {
      if (n >= 500) throw new OracleFailure("too-big", `n=${n}`);
      if (n % 7 === 3) throw new VirtqError("AVAIL_HEAD_OUT_OF_RANGE", `head ${n}`);
    },
  };
}

function captureEnv(targets: readonly FuzzTarget<unknown>[], extra: Partial<FuzzEnv> = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const env: FuzzEnv = {
    targets,
    registryUrl: EXAMPLES_URL,
    out: (s) => void out.push(s),
    err: (s) => void err.push(s),
    isTty: false,
    cores: 2,
    ...extra,
  };
  return { env, out: () => out.join(""), err: () => err.join("") };
}

// ---- CLI ---------------------------------------------------------------------------------

Deno.test("cli: defaults, comma and repeated targets, budgets", () => {
  const d = parseFuzzArgs([], 4);
  assertEquals([d.seconds, d.runs, d.workers, d.shard, d.corpus], [
    DEFAULT_SECONDS,
    undefined,
    4,
    { index: 1, count: 1 },
    "fuzz/corpus",
  ]);
  const o = parseFuzzArgs(["--target", "a,b", "--target=c", "--seed", "0", "--shard", "2/3"]);
  assertEquals(o.targets, ["a", "b", "c"]);
  assertEquals([o.seed, o.shard], [0, { index: 2, count: 3 }]);
  assertEquals(parseFuzzArgs(["--runs", "100"]).seconds, undefined, "--runs alone: no time limit");
  assertEquals(parseFuzzArgs(["--runs", "100", "--seconds", "1.5"]).seconds, 1.5);
  assertEquals(parseFuzzArgs(["--workers", "0"]).workers, 0);
  assert(parseFuzzArgs(["--help"]).help && parseFuzzArgs(["-h"]).help);
});

Deno.test("cli: bad flags name the flag and the fix", () => {
  const cases: [string[], RegExp][] = [
    [["--bogus"], /^--bogus: unknown flag\. Fix: use one of --target/],
    [["stray"], /^stray: unexpected argument/],
    [
      ["--seconds", "abc"],
      /^--seconds: "abc" is not a positive number\. Fix: pass e\.g\. --seconds 30/,
    ],
    [["--seconds", "-1"], /^--seconds: "-1" is not a positive number/],
    [["--seconds=0"], /^--seconds: "0" is not a positive number/],
    [["--runs", "1.5"], /^--runs: "1\.5" is not a positive integer/],
    [["--seed", "x"], /^--seed: "x" is not an integer in 0\.\.2147483647/],
    [
      ["--shard", "3/2"],
      /^--shard: "3\/2" is not I\/N with 1 <= I <= N\. Fix: pass e\.g\. --shard 1\/4/,
    ],
    [["--shard", "0/2"], /^--shard:/],
    [["--workers", "many"], /^--workers:/],
    [["--json"], /^--json: needs a value\. Fix: write --json VALUE/],
    [["--list=yes"], /^--list: takes no value/],
    [["--replay", "f.json", "--target", "a"], /^--replay: cannot be combined/],
  ];
  for (const [args, re] of cases) {
    const e = assertThrows(() => parseFuzzArgs(args), CliError);
    assertMatch(e.message, re, args.join(" "));
    assertStringIncludes(e.message, "(see --help)");
  }
});

Deno.test("cli: --help prints usage and every flag; a bad flag exits 2 on stderr", async () => {
  const c = captureEnv(TARGETS);
  assertEquals(await fuzzMain(["--help"], c.env), 0);
  assertEquals(c.out(), HELP);
  for (
    const f of [
      "--target",
      "--seconds",
      "--runs",
      "--seed",
      "--replay",
      "--json",
      "--junit",
      "--list",
      "--workers",
      "--shard",
    ]
  ) {
    assertStringIncludes(HELP, f);
  }
  const b = captureEnv(TARGETS);
  assertEquals(await fuzzMain(["--seconds", "soon"], b.env), 2);
  assertStringIncludes(b.err(), '--seconds: "soon" is not a positive number');
  const u = captureEnv(TARGETS);
  assertEquals(await fuzzMain(["--target", "nope"], u.env), 2);
  assertStringIncludes(
    u.err(),
    'unknown target "nope". Fix: use one of example-copy, example-index',
  );
});

Deno.test("cli: --list shows each target with its one-line description", async () => {
  const c = captureEnv(TARGETS);
  assertEquals(await fuzzMain(["--list"], c.env), 0);
  assertEquals(c.out().trimEnd().split("\n"), [
    "example-copy   example: GuestMemory write/read round-trip at hostile offsets",
    "example-index  example: 16-bit ring index against a bigint model (fc.commands)",
  ]);
});

// ---- plan ---------------------------------------------------------------------------------

Deno.test("plan: time budget is split so units on workers fit the wall budget", () => {
  assertEquals(secondsPerUnit(60, 5, 2), 20); // 3 rounds of 2 workers
  assertEquals(secondsPerUnit(60, 4, 2), 30);
  assertEquals(secondsPerUnit(60, 1, 8), 60);
  assertEquals(secondsPerUnit(60, 3, 0), 20, "0 workers = main thread, one at a time");
  assertEquals(secondsPerUnit(60, 0, 2), 0);
});

Deno.test("plan: shards partition the campaign deterministically, every slice exactly once", () => {
  const names = ["a", "b", "c", "d", "e"];
  for (const n of [1, 2, 3, 5, 7, 12]) {
    const shards = Array.from(
      { length: n },
      (_, i) => planShard(names, 42, { index: i + 1, count: n }),
    );
    assertEquals(
      shards,
      Array.from({ length: n }, (_, i) => planShard(names, 42, { index: i + 1, count: n })),
    );
    const all = shards.flat().map((u) => `${u.target}#${u.slice}`);
    assertEquals(new Set(all).size, all.length, `n=${n}: disjoint`);
    const slices = Math.max(1, Math.ceil(n / names.length));
    assertEquals(all.length, names.length * slices, `n=${n}: complete`);
    assert(shards.every((s) => s.length > 0), `n=${n}: no idle shard`);
    for (const u of shards.flat()) assertEquals(u.seed, deriveSeed(42, u.target, u.slice));
  }
  assertEquals(planShard(["a", "b", "c"], 1, { index: 2, count: 2 }).map((u) => u.target), ["b"]);
  assertEquals(planShard([], 1, { index: 1, count: 1 }), []);
  assert(
    planShard(["a"], 1, { index: 1, count: 1 })[0].seed !==
      planShard(["a"], 2, { index: 1, count: 1 })[0].seed,
  );
});

// ---- signatures, runner -------------------------------------------------------------------

Deno.test("signature: FNV-1a 64 known answers; oracle + code + target", () => {
  assertEquals(fnv1a64(""), "cbf29ce484222325");
  assertEquals(fnv1a64("a"), "af63dc4c8601ec8c");
  const s = signatureOf(
    "t",
    new OracleFailure("accepted-bad", "x", new VirtqError("DESC_CHAIN_LOOP", "d")),
  );
  assertEquals([s.oracle, s.code, s.text], [
    "accepted-bad",
    "DESC_CHAIN_LOOP",
    "t/accepted-bad/DESC_CHAIN_LOOP",
  ]);
  assertEquals(signatureOf("t", new TypeError("boom")).text, "t/uncaught-exception/TypeError");
  assertEquals(
    signatureOf("t", new VirtqError("RING_FULL", "x")).text,
    "t/uncaught-exception/RING_FULL",
  );
  assertEquals(signatureOf("t", { code: "DMA_FAULT", reason: "wrap" }).code, "DMA_FAULT(wrap)");
});

Deno.test("runner: a run-bounded unit on a sound target runs exactly N and notes error codes", () => {
  const r = runUnit(makeCopyTarget(), { target: "example-copy", slice: 0, seed: 3, runs: 2000 });
  assertEquals([r.runs, r.failures.length, r.crash], [2000, 0, undefined]);
  assertEquals(r.errorCodes, ["MEMORY_FAULT(straddle)", "MEMORY_FAULT(unmapped)"]);
});

Deno.test("runner: distinct bugs are all reported, shrunk, once each", () => {
  const r = runUnit(twoBugs(), { target: "two-bugs", slice: 0, seed: 9, runs: 20_000 });
  const byOracle = new Map(r.failures.map((f) => [f.signature.text, f]));
  assertEquals([...byOracle.keys()].sort(), [
    "two-bugs/too-big/-",
    "two-bugs/uncaught-exception/AVAIL_HEAD_OUT_OF_RANGE",
  ]);
  assertEquals(byOracle.get("two-bugs/too-big/-")!.inputText, "500", "shrunk to the boundary");
  const head = Number(
    byOracle.get("two-bugs/uncaught-exception/AVAIL_HEAD_OUT_OF_RANGE")!.inputText,
  );
  assert(head % 7 === 3 && head < 500, `${head} triggers the second bug only`);
  assertEquals(r.errorCodes, ["AVAIL_HEAD_OUT_OF_RANGE"], "raised VirtqErrors are recorded");
});

Deno.test("runner: a target whose arbitrary throws is a crash, not a hang", () => {
  const t: FuzzTarget<number> = {
    name: "broken",
    description: "d",
    arbitrary: () => {
      throw new Error("no arbitrary");
    },
    run() {},
  };
  const r = runUnit(t, { target: "broken", slice: 0, seed: 1, runs: 10 });
  assertStringIncludes(r.crash ?? "", "no arbitrary");
});

Deno.test("runner: fc.commands failures record the replayPath and replay exactly", () => {
  const bad = makeIndexTarget(INDEX_FAULTS["no-wrap"]);
  const r = runUnit(bad, { target: "example-index", slice: 0, seed: 5, runs: 5000 });
  assertEquals(r.failures.length, 1);
  const f = r.failures[0];
  assertMatch(f.replayPath ?? "", /^[A-Za-z0-9+/=:]+$/);
  assertStringIncludes(f.inputText, "advance(");
  // commands inside a record (as model-split has them): found in fast-check's rendering
  assertEquals(extractReplayPath('{"k":0,"cmds":c(6) /*replayPath="AAB:F"*/}'), "AAB:F");
  assertEquals(extractReplayPath("[object Object]"), undefined);
});

// ---- describe -----------------------------------------------------------------------------

Deno.test("describe: byte arrays and hex strings become hex dumps", () => {
  assertEquals(
    hexDump(Uint8Array.from([0x41, 0x42, 0, 255])),
    "00000000  41 42 00 ff                                       |AB..|",
  );
  const d = describeValue({ offset: 4096, hex: "000102030405060708090a0b0c0d0e0f10", n: 5 });
  assertStringIncludes(d, "offset: 4096 (0x1000)");
  assertStringIncludes(
    d,
    "hex(17 bytes)\n    00000000  00 01 02 03 04 05 06 07  08 09 0a 0b 0c 0d 0e 0f",
  );
  assertStringIncludes(d, "00000010  10");
  assertStringIncludes(describeValue([1n << 64n]), "18446744073709551616n (0x10000000000000000)");
  assertStringIncludes(
    describeValue({ raw: [{ offset: 3, bytes: [0x10, 0xff] }], lens: [1, 2] }),
    "bytes: bytes(2)\n        00000000  10 ff ",
  );
  assertEquals(describeValue({ lens: [1, 2] }), "{\n  lens: [1, 2]\n}");
  assertEquals(
    describeValue(Array(30).fill(1000)).split("\n").length,
    32,
    "long lists: one per line",
  );
  class Cmds {
    toString() {
      return "advance(3),advance(9)";
    }
  }
  assertEquals(describeValue({ cmds: new Cmds() }), "{\n  cmds: advance(3),advance(9)\n}");
});

// ---- reports ------------------------------------------------------------------------------

function unitsOf(target: FuzzTarget<unknown>, seed: number): UnitResult[] {
  return [runUnit(target, { target: target.name, slice: 0, seed, runs: 3000 })];
}

function reportOf(
  results: UnitResult[],
  shard = { index: 1, count: 1 },
  seed = 1,
  targets: string[] = [...new Set(results.map((r) => r.target))],
) {
  return buildReport(
    {
      seed,
      shard,
      targets,
      date: "2026-01-01T00:00:00.000Z",
      wallSeconds: 1,
      workers: 1,
      budget: { seconds: null, runs: 3000 },
    },
    targetReports(results, new Map([["two-bugs", "two distinct bugs"]]), new Map()),
    { fastCheck: fc.__version, deno: Deno.version.deno },
  );
}

Deno.test("report: JSON validates, summary has a row per target, JUnit one testcase per target", () => {
  const results = [...unitsOf(twoBugs(), 9), ...unitsOf(makeCopyTarget(), 1)];
  const rep = reportOf(results);
  FuzzReportSchema.parse(JSON.parse(JSON.stringify(rep)));
  assertEquals(rep.totals.targets, 2);
  assertEquals(rep.totals.failures, 2);
  assertEquals(rep.totals.runs, results[0].runs + results[1].runs);
  const sum = formatSummary(rep);
  assertMatch(sum, /^target\s+runs\s+runs\/s\s+failures\s+time\s+status$/m);
  assertMatch(sum, /^two-bugs\s+[\d,]+\s+[\d,]+\s+2\s+[\d.]+s\s+FAIL$/m);
  assertMatch(sum, /^example-copy\s+3,000\s+[\d,]+\s+0\s+[\d.]+s\s+ok$/m);
  assertStringIncludes(sum, "FAIL two-bugs [too-big / -]");
  assertMatch(
    sum,
    /^seed 1; shard 1\/1; wall 1\.0s, [\d,]+ runs\/s in all; 1 of \d+ catalogued error codes reached$/m,
  );
  const x = formatJunit(rep);
  assert(
    x.startsWith(
      '<?xml version="1.0" encoding="UTF-8"?>\n<testsuites name="virtq-lab fuzz" tests="2" failures="1" errors="0"',
    ),
  );
  assertEquals(x.match(/<testcase /g)?.length, 2);
  // one <failure> per testcase: the two signatures of two-bugs share one element
  assertEquals(x.match(/<failure /g)?.length, 1);
  assertStringIncludes(x, '<testcase classname="fuzz" name="example-copy"');
  assertMatch(x, /<failure message="2 distinct failures: two-bugs\/[^"]*" type="multiple">/);
  assertStringIncludes(x, "[too-big / -] too-big: n=500");
  assertStringIncludes(x, '<property name="seed" value="1"/>');
  assertStringIncludes(x, '<property name="shard" value="1/1"/>');
  assertStringIncludes(x, `<property name="deno" value="${rep.denoVersion}"/>`);
  const esc = formatJunit({ ...rep, targets: [{ ...rep.targets[1], description: `<a & "b">` }] });
  assertStringIncludes(esc, "&lt;a &amp; &quot;b&quot;&gt;");
});

Deno.test("report: merge sums shards, de-duplicates failures, rejects a repeated shard", () => {
  // two targets, 4 shards: 2 slices each, dealt two-bugs#0, two-bugs#1, example-copy#0, #1
  const names = ["two-bugs", "example-copy"];
  const shard = (index: number, results: UnitResult[]) =>
    reportOf(results, { index, count: 4 }, 1, names);
  const a = shard(1, unitsOf(twoBugs(), 9));
  const b = shard(2, unitsOf(twoBugs(), 10));
  const c = shard(3, unitsOf(makeCopyTarget(), 1));
  const d = shard(4, unitsOf(makeCopyTarget(), 2));
  const m = mergeReports([a, b, c, d].map((report, i) => ({ file: `${"abcd"[i]}.json`, report })));
  FuzzReportSchema.parse(m);
  assertEquals(m.campaigns.map((c) => c.shard.index), [1, 2, 3, 4]);
  assertEquals(m.targets.map((t) => t.target), ["example-copy", "two-bugs"]);
  const tb = m.targets[1];
  assertEquals(tb.runs, a.targets[0].runs + b.targets[0].runs);
  assertEquals(tb.units, 2);
  assertEquals(tb.failures.length, 2, "same signatures from both shards counted once");
  assertEquals(m.totals.runs, a.totals.runs + b.totals.runs + c.totals.runs + d.totals.runs);
  const e = assertThrows(
    () =>
      mergeReports([
        { file: "a.json", report: a },
        { file: "c.json", report: a },
        { file: "b.json", report: b },
      ]),
    ReportError,
  );
  assertStringIncludes(e.message, "c.json: seed 1 shard 1/4 is already in a.json");
  const bad = assertThrows(
    () => parseReport("x.json", { ...a, totals: { runs: "many" } }),
    ReportError,
  );
  assertStringIncludes(bad.message, "x.json: not a fuzz report");
  assertStringIncludes(bad.message, "totals");
});

Deno.test("report: merge rejects other seeds, shard counts or targets, missing shards, wrong units", () => {
  const names = ["two-bugs"];
  const one = unitsOf(twoBugs(), 9);
  const s1 = reportOf(one, { index: 1, count: 2 }, 7, names);
  const s2 = reportOf(one, { index: 2, count: 2 }, 7, names);
  assertEquals(
    mergeReports([{ file: "s1.json", report: s1 }, { file: "s2.json", report: s2 }]).totals.runs,
    2 * s1.totals.runs,
  );
  const reject = (b: FuzzReport, msg: string) => {
    const e = assertThrows(
      () => mergeReports([{ file: "s1.json", report: s1 }, { file: "x.json", report: b }]),
      ReportError,
    );
    assertStringIncludes(e.message, msg);
  };
  reject(
    reportOf(one, { index: 2, count: 2 }, 8, names),
    "x.json: campaigns: seed 8, but s1.json has seed 7",
  );
  reject(
    reportOf(one, { index: 2, count: 3 }, 7, names),
    "x.json: campaigns: shard count 3, but s1.json has 2",
  );
  reject(
    reportOf(one, { index: 2, count: 2 }, 7, ["two-bugs", "example-copy"]),
    "x.json: campaigns: targets [two-bugs, example-copy], but s1.json has [two-bugs]",
  );
  reject(
    reportOf([...one, ...unitsOf(twoBugs(), 3)], { index: 2, count: 2 }, 7, names),
    'x.json: targets: ran 2 unit(s) of "two-bugs", but the shard(s) it claims (2/2, seed 7) plan 1',
  );
  const missing = assertThrows(
    () => mergeReports([{ file: "s1.json", report: s1 }]),
    ReportError,
  );
  assertStringIncludes(missing.message, "s1.json: shard(s) 2/2 of seed 7 missing");
  const { targets: _, ...old } = s2.campaigns[0];
  reject({ ...s2, campaigns: [old] }, "x.json: campaigns: no targets field");
});

Deno.test("cli: --shard without --seed is a usage error naming the fix", async () => {
  assertThrows(
    () => parseFuzzArgs(["--shard", "2/4"]),
    CliError,
    "--shard: needs --seed so every CI job fuzzes a disjoint, reproducible part of one campaign",
  );
  assertThrows(
    () => parseFuzzArgs(["--shard", "2/4"]),
    CliError,
    "Fix: add --seed <N> (the same on every shard)",
  );
  assertEquals(parseFuzzArgs(["--shard", "2/4", "--seed", "5"]).shard, { index: 2, count: 4 });
  assertEquals(parseFuzzArgs(["--shard", "1/1"]).seed, undefined);
  const c = captureEnv(TARGETS);
  assertEquals(await fuzzMain(["--shard", "1/2", "--runs", "10", "--workers", "0"], c.env), 2);
  assertStringIncludes(c.err(), "fuzz: --shard: needs --seed");
});

/** A target whose failing input builds a 20-byte "descriptor table"; `describe` returns it. */
function ringBuilder(describe: (n: number) => unknown): FuzzTarget<number> {
  const table = (n: number) => Uint8Array.from({ length: 20 }, (_, i) => (n + i) & 0xff);
  return {
    name: "ring-builder",
    description: "builds a ring from a byte",
    arbitrary: () => fc.integer({ min: 0, max: 255 }),
    run(n) {
      if (table(n)[0] >= 0x40) throw new OracleFailure("bad-ring", `table[0]=${table(n)[0]}`);
    },
    encode: (n) => n,
    decode: (json) => {
      if (typeof json !== "number") throw new Error("not a number");
      return json;
    },
    describe,
  };
}

Deno.test("main: --replay prints the target's describe output, byte arrays as hex dumps", async () => {
  const dir = await Deno.makeTempDir({ prefix: "virtq-describe-" });
  try {
    const bytes = (n: number) => Uint8Array.from({ length: 20 }, (_, i) => (n + i) & 0xff);
    const t = ringBuilder((n) => ({ descriptorTable: bytes(n), note: "head 0" }));
    const [u] = unitsOf(t as FuzzTarget<unknown>, 5);
    assertEquals(u.failures.length, 1);
    const { file } = await writeCorpusEntry(dir, u.failures[0]);
    const r = captureEnv([t as FuzzTarget<unknown>]);
    assertEquals(await fuzzMain(["--replay", file], r.env), 1);
    const out = r.out();
    assertStringIncludes(out, "  input:\n    64\n  built state (ring-builder.describe):\n");
    assertStringIncludes(
      out,
      [
        "      descriptorTable: Uint8Array(20)",
        "        00000000  40 41 42 43 44 45 46 47  48 49 4a 4b 4c 4d 4e 4f  |@ABCDEFGHIJKLMNO|",
        "        00000010  50 51 52 53                                       |PQRS|,",
        '      note: "head 0"',
      ].join("\n"),
    );
    const str = captureEnv([ringBuilder((n) => `ring of ${n}`) as FuzzTarget<unknown>]);
    assertEquals(await fuzzMain(["--replay", file], str.env), 1);
    assertStringIncludes(str.out(), "  built state (ring-builder.describe):\n    ring of 64\n");
    const none = captureEnv([{ ...t, describe: undefined } as FuzzTarget<unknown>]);
    assertEquals(await fuzzMain(["--replay", file], none.env), 1);
    assert(!none.out().includes("built state"));
    const boom = ringBuilder(() => {
      throw new VirtqError("AVAIL_HEAD_OUT_OF_RANGE", "head 99");
    });
    const thrown = captureEnv([boom as FuzzTarget<unknown>]);
    assertEquals(await fuzzMain(["--replay", file], thrown.env), 1);
    assertStringIncludes(thrown.out(), "    (describe threw, the state is not shown: ");
    assertStringIncludes(thrown.out(), "STILL FAILS: ring-builder/bad-ring/-");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// ---- corpus -------------------------------------------------------------------------------

Deno.test("corpus: write once per signature, load validated, replay decoded and seed+path", async () => {
  const dir = await Deno.makeTempDir({ prefix: "virtq-corpus-" });
  try {
    const bad = makeCopyTarget(COPY_FAULTS["missed-fault"]);
    const r = runUnit(bad, { target: "example-copy", slice: 0, seed: 2, runs: 5000 });
    assertEquals(r.failures.length, 1);
    const f = r.failures[0];
    const w1 = await writeCorpusEntry(dir, f);
    assertEquals(w1, { file: `${dir}/example-copy/${f.signature.hash}.json`, isNew: true });
    const w2 = await writeCorpusEntry(dir, { ...f, seed: 77 });
    assertEquals(w2.isNew, false, "de-duplicated by signature");
    const loaded = await loadCorpus(dir);
    assertEquals(loaded.length, 1);
    const { entry } = loaded[0];
    assertEquals([entry.seed, entry.error.oracle, entry.fastCheckVersion], [
      f.seed,
      "missed-fault",
      fc.__version,
    ]);
    // decoded input: still failing on the broken engine, fixed on the real one
    assertEquals(replayEntry(bad, entry).fixed, false);
    const fixed = replayEntry(makeCopyTarget(), entry);
    assertEquals([fixed.fixed, fixed.mode], [true, "decoded-input"]);
    // seed + path, for a target without decode
    const noDecode = { ...bad, decode: undefined };
    const sp = replayEntry(noDecode, entry);
    assertEquals([sp.fixed, sp.mode, sp.signature], [false, "seed-path", entry.error.signature]);
    assertEquals(replayEntry({ ...makeCopyTarget(), decode: undefined }, entry).fixed, true);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("corpus: fc.commands entries replay with seed + path + replayPath", async () => {
  const dir = await Deno.makeTempDir({ prefix: "virtq-corpus-" });
  try {
    const bad = makeIndexTarget(INDEX_FAULTS["no-wrap"]);
    const f = runUnit(bad, { target: "example-index", slice: 0, seed: 5, runs: 5000 }).failures[0];
    await writeCorpusEntry(dir, f);
    const [{ entry }] = await loadCorpus(dir);
    assertEquals(entry.replayPath, f.replayPath);
    const again = replayEntry(bad, entry);
    assertEquals([again.fixed, again.mode], [false, "seed-path-replay-path"]);
    assertEquals(String(again.input), f.inputText, "the same shrunk command sequence");
    assertEquals(replayEntry(makeIndexTarget(), entry).fixed, true);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("corpus: bad files are rejected naming the file, the field and the fix", async () => {
  const dir = await Deno.makeTempDir({ prefix: "virtq-corpus-" });
  try {
    const f = runUnit(makeCopyTarget(COPY_FAULTS["missed-fault"]), {
      target: "example-copy",
      slice: 0,
      seed: 2,
      runs: 5000,
    }).failures[0];
    const { file } = await writeCorpusEntry(dir, f);
    const good = JSON.parse(await Deno.readTextFile(file));
    const expectBad = async (json: string, ...needles: string[]) => {
      await Deno.writeTextFile(file, json);
      const e = await assertRejects(() => loadCorpus(dir), CorpusError);
      assertStringIncludes(e.message, file);
      assertStringIncludes(e.message, "Fix:");
      for (const n of needles) assertStringIncludes(e.message, n);
    };
    await expectBad("{", "invalid JSON");
    await expectBad(JSON.stringify({ ...good, seed: "x" }), "seed");
    await expectBad(JSON.stringify({ ...good, path: "a:b" }), "path", "fast-check path");
    await expectBad(JSON.stringify({ ...good, extra: 1 }), "extra");
    await expectBad(JSON.stringify({ ...good, target: "other" }), 'field "target" is "other"');
    const { error: _, ...noError } = good;
    await expectBad(JSON.stringify(noError), "error");
    assertEquals(await loadCorpus(`${dir}/missing`), [], "no corpus directory: empty corpus");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// ---- the CLI end to end -------------------------------------------------------------------

Deno.test("main: a failing campaign exits 1, writes corpus + JSON + JUnit; --replay shows the input", async () => {
  const dir = await Deno.makeTempDir({ prefix: "virtq-fuzz-" });
  try {
    const targets = [makeCopyTarget(COPY_FAULTS["flip-byte-13"]), makeIndexTarget()];
    const c = captureEnv(targets);
    const code = await fuzzMain(
      [
        "--workers",
        "0",
        "--runs",
        "3000",
        "--seed",
        "11",
        "--corpus",
        `${dir}/corpus`,
        "--json",
        `${dir}/r.json`,
        "--junit",
        `${dir}/r.xml`,
      ],
      c.env,
    );
    assertEquals(code, 1, c.out());
    const rep = parseReport("r.json", JSON.parse(await Deno.readTextFile(`${dir}/r.json`)));
    assertEquals(rep.targets.map((t) => [t.target, t.failures.length]), [["example-copy", 1], [
      "example-index",
      0,
    ]]);
    const file = rep.targets[0].failures[0].corpusFile!;
    assert(file.startsWith(`${dir}/corpus/example-copy/`));
    assertStringIncludes(c.out(), `replay: deno task fuzz --replay ${file}`);
    assertStringIncludes(
      await Deno.readTextFile(`${dir}/r.xml`),
      '<failure message="example-copy/round-trip/-"',
    );

    const r = captureEnv(targets);
    assertEquals(await fuzzMain(["--replay", file], r.env), 1);
    assertStringIncludes(r.out(), "STILL FAILS: example-copy/round-trip/-");
    assertMatch(
      r.out(),
      /bytes: Uint8Array\(14\)\n\s+00000000 {2}(00 ){8} (00 ){6}/,
    );
    const missing = captureEnv(targets);
    assertEquals(await fuzzMain(["--replay", `${dir}/none.json`], missing.env), 2);
    assertStringIncludes(missing.err(), `fuzz: --replay: cannot read ${dir}/none.json`);
    assertStringIncludes(missing.err(), "Fix: pass a corpus file");
    const ok = captureEnv([makeCopyTarget(), makeIndexTarget()]);
    assertEquals(await fuzzMain(["--replay", file], ok.env), 0);
    assertStringIncludes(ok.out(), "FIXED");

    // the same bug found again is not written twice
    const again = captureEnv(targets);
    assertEquals(
      await fuzzMain([
        "--workers",
        "0",
        "--runs",
        "3000",
        "--seed",
        "12",
        "--corpus",
        `${dir}/corpus`,
      ], again.env),
      1,
    );
    assertStringIncludes(again.out(), "(already in corpus)");
    assertEquals((await loadCorpus(`${dir}/corpus`)).length, 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("main: a sound campaign on Web Workers passes and reports every target", async () => {
  const dir = await Deno.makeTempDir({ prefix: "virtq-fuzz-" });
  try {
    const c = captureEnv(TARGETS);
    const code = await fuzzMain([
      "--workers",
      "2",
      "--runs",
      "2000",
      "--seed",
      "5",
      "--json",
      `${dir}/r.json`,
      "--corpus",
      `${dir}/c`,
    ], c.env);
    assertEquals(code, 0, c.out() + c.err());
    const rep = parseReport("r.json", JSON.parse(await Deno.readTextFile(`${dir}/r.json`)));
    assertEquals(rep.targets.map((t) => [t.target, t.runs, t.failures.length]), [[
      "example-copy",
      2000,
      0,
    ], ["example-index", 2000, 0]]);
    assertEquals(rep.campaigns[0].workers, 2);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("campaign: worker and in-process executors give the same runs and failures", async () => {
  const units = [
    { target: "example-copy", slice: 0, seed: 4, runs: 1500 },
    { target: "example-index", slice: 0, seed: 4, runs: 1500 },
  ];
  const w = new WorkerExecutor(EXAMPLES_URL, 2);
  let viaWorkers;
  try {
    viaWorkers = await runUnits(units, w);
  } finally {
    w.close();
  }
  const inProc = await runUnits(units, new InProcessExecutor(TARGETS));
  const strip = (rs: UnitResult[]) =>
    rs.map((r) => [r.target, r.runs, r.failures.length, r.errorCodes]);
  assertEquals(strip(viaWorkers), strip(inProc));
});

// ---- registry -----------------------------------------------------------------------------

Deno.test("registry: unregistered targets in the targets directory stop the runner", async () => {
  const dir = await Deno.makeTempDir({ prefix: "virtq-targets-" });
  try {
    const src = (name: string) =>
      `export const t = { name: "${name}", description: "d", arbitrary() {}, run() {} };\n`;
    await Deno.writeTextFile(`${dir}/mod.ts`, "export const TARGETS = [];\n");
    await Deno.writeTextFile(`${dir}/helpers.ts`, "export const notATarget = { name: 'x' };\n");
    await Deno.mkdir(`${dir}/sub`);
    await Deno.writeTextFile(`${dir}/sub/lost.ts`, src("lost-target"));
    const url = new URL(`file://${dir}/`);
    const problems = await unregisteredTargets(url, []);
    assertEquals(problems, [
      'fuzz/targets/sub/lost.ts: target "lost-target" (export t) is not registered. Fix: add t to TARGETS in fuzz/targets/mod.ts',
    ]);
    const lost = (await import(`${url.href}sub/lost.ts`)).t as FuzzTarget<unknown>;
    assertEquals(await unregisteredTargets(url, [lost]), []);
    const c = captureEnv(TARGETS, { targetsDir: url });
    assertEquals(await fuzzMain(["--runs", "10"], c.env), 2);
    assertStringIncludes(c.err(), "refusing to start");
    assertStringIncludes(c.err(), "lost-target");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  assertEquals(registryProblems(TARGETS), []);
  assertEquals(registryProblems([...TARGETS, TARGETS[0]]), [
    'target "example-copy" is registered twice in TARGETS',
  ]);
  assertEquals(registryProblems([{ ...TARGETS[0], name: "Bad_Name", description: "a\nb" }]), [
    'target "Bad_Name": name must be kebab-case (e.g. "split-hostile-driver")',
    'target "Bad_Name": description must be one non-empty line (shown by --list)',
  ]);
});

Deno.test("merge CLI: shard reports merge into one; bad input names the file and the fix", async () => {
  const dir = await Deno.makeTempDir({ prefix: "virtq-merge-" });
  try {
    const runShard = async (i: number) => {
      const c = captureEnv(TARGETS);
      const args = ["--workers", "0", "--runs", "500", "--seed", "3", "--shard", `${i}/3`];
      assertEquals(
        await fuzzMain([...args, "--json", `${dir}/s${i}.json`, "--corpus", `${dir}/c`], c.env),
        0,
      );
      return `${dir}/s${i}.json`;
    };
    const files = [await runShard(1), await runShard(2), await runShard(3)];
    const out: string[] = [];
    const err: string[] = [];
    const o = (s: string) => void out.push(s);
    const e = (s: string) => void err.push(s);
    assertEquals(
      mergeMain([...files, "--json", `${dir}/m.json`, "--junit", `${dir}/m.xml`], o, e),
      0,
    );
    const m = parseReport("m.json", JSON.parse(await Deno.readTextFile(`${dir}/m.json`)));
    // 2 targets x 2 slices (3 shards > 2 targets), 500 runs each
    assertEquals(m.targets.map((t) => [t.target, t.units, t.runs]), [["example-copy", 2, 1000], [
      "example-index",
      2,
      1000,
    ]]);
    assertEquals(m.campaigns.map((c) => c.shard), [1, 2, 3].map((index) => ({ index, count: 3 })));
    assertEquals((await Deno.readTextFile(`${dir}/m.xml`)).match(/<testcase /g)?.length, 2);
    assertEquals(mergeMain(["--help"], o, e), 0);
    assertStringIncludes(out.join(""), "deno task fuzz:merge REPORT.json...");
    await Deno.writeTextFile(
      `${dir}/bad.json`,
      JSON.stringify({ format: "virtq-lab/fuzz-report@1" }),
    );
    assertEquals(mergeMain([files[0], `${dir}/bad.json`], o, e), 2);
    assertStringIncludes(err.join(""), `${dir}/bad.json: not a fuzz report`);
    assertStringIncludes(err.join(""), "campaigns");
    assertEquals(mergeMain([files[0], files[0]], o, e), 2);
    assertStringIncludes(err.join(""), "is already in");
    assertEquals(mergeMain(["--bogus"], o, e), 2);
    assertStringIncludes(err.join(""), "--bogus: unknown flag. Fix:");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("coverage: lcov parsing, the src/virtio + src/dma table, unreached codes", () => {
  const lcov = [
    "SF:/r/src/virtio/queue.ts",
    "FN:1,x",
    "BRF:4",
    "BRH:3",
    "LF:100",
    "LH:90",
    "end_of_record",
    "SF:/r/src/dma/errors.ts",
    "LF:10",
    "LH:10",
    "BRF:0",
    "BRH:0",
    "end_of_record",
    "SF:/r/src/memory/u64.ts",
    "LF:50",
    "LH:0",
    "end_of_record",
  ].join("\n");
  const files = parseLcov(lcov);
  assertEquals(files[0], {
    file: "/r/src/virtio/queue.ts",
    lines: 100,
    linesHit: 90,
    branches: 4,
    branchesHit: 3,
  });
  const t = coverageTable(files, "/r", ["src/virtio/", "src/dma/"]);
  assertEquals(t.linePct, 100 / 110 * 100);
  assertEquals(t.branchPct, 75);
  assertEquals(t.text.split("\n"), [
    "file                  lines  branches",
    "src/dma/errors.ts    100.0%     -  ",
    "src/virtio/queue.ts   90.0%   75.0%",
    "total                 90.9%   75.0%",
  ]);
  // a file that is not engine code is listed with its reason and left out of the totals
  const nc = coverageTable(
    files,
    "/r",
    ["src/virtio/", "src/dma/"],
    [],
    new Map([
      ["src/dma/errors.ts", "not engine"],
    ]),
  );
  assertEquals(nc.linePct, 90);
  assertEquals(
    nc.text.split("\n")[1],
    "src/dma/errors.ts    100.0%     -    not in the totals: not engine",
  );
  assertEquals(NOT_ENGINE.has("src/virtio/ring_builder.ts"), true);
  const missing = unreachedCodes(["QUEUE_SIZE_INVALID", "DMA_FAULT(wrap)", "NOT_A_CODE"]);
  assert(!missing.includes("QUEUE_SIZE_INVALID") && !missing.includes("DMA_FAULT(wrap)"));
  assert(missing.includes("RING_MISALIGNED") && missing.includes("DMA_MAP_ERROR(transport)"));
  assertEquals(missing.length, CATALOGUE_CODES.length - 2);
});

Deno.test("coverage: never-loaded files count in the totals with every line and branch unhit", () => {
  const lcov = [
    "SF:/r/src/virtio/queue.ts",
    "LF:10",
    "LH:10",
    "BRF:4",
    "BRH:4",
    "end_of_record",
    "SF:/r/src/memory/u64.ts",
    "LF:50",
    "LH:0",
    "end_of_record",
  ].join("\n");
  const untested = [
    "/** A module doc",
    " * spanning lines. */",
    "",
    "// a line comment",
    "export function f(x: number): number {",
    "  if (x > 1) return x && 2; // trailing comment",
    "  /* inline */ return 0;",
    "}",
  ].join("\n");
  assertEquals(estimateUnloaded("src/dma/untested.ts", untested), {
    file: "src/dma/untested.ts",
    lines: 4,
    linesHit: 0,
    branches: 4,
    branchesHit: 0,
  });
  const sources = new Map([
    ["src/virtio/queue.ts", "tested();\n"],
    ["src/dma/untested.ts", untested],
  ]);
  const s = summarizeCoverage(lcov, "/r", ["src/virtio/", "src/dma/"], sources);
  // Before the fix the untested file was left out: 100% lines. Now 10 of 14 lines, 4 of 8 branches.
  assertEquals(s.linePct, 100 * 10 / 14);
  assertEquals(s.branchPct, 50);
  assertEquals(s.files.map((f) => f.file), ["src/virtio/queue.ts"]);
  assertEquals(s.unloaded.map((f) => f.file), ["src/dma/untested.ts"]);
  assertEquals(s.text.split("\n"), [
    "file                  lines  branches",
    "src/virtio/queue.ts  100.0%  100.0%",
    "src/dma/untested.ts    0.0%    0.0%  never loaded by any target (~4 lines, ~4 branches, counted unhit)",
    "total                 71.4%   50.0%",
  ]);
  const all = summarizeCoverage(
    lcov,
    "/r",
    ["src/virtio/"],
    new Map([["src/virtio/queue.ts", ""]]),
  );
  assertEquals([all.linePct, all.unloaded.length], [100, 0]);
});

Deno.test("campaign: a hung target is killed after its budget and reported as a crash", async () => {
  const w = new WorkerExecutor(new URL("./fuzz_examples_hang.ts", import.meta.url).href, 1, {
    hangSeconds: 0.5,
  });
  try {
    const [r] = await runUnits([{ target: "example-hang", slice: 0, seed: 1, seconds: 0.2 }], w);
    assertStringIncludes(r.crash ?? "", "target.run hangs or an engine loop is unbounded");
    const [bad] = await runUnits([{ target: "nope", slice: 0, seed: 1, runs: 1 }], w);
    assertStringIncludes(bad.crash ?? "", 'no target "nope"');
  } finally {
    w.close();
  }
});

Deno.test("progress: a rewritten line on a TTY, plain periodic lines otherwise", async () => {
  const tty: string[] = [];
  const p = consoleProgress((s) => void tty.push(s), true);
  p.update("a");
  p.update("b");
  p.done();
  assertEquals(tty, ["\r\x1b[2Ka", "\r\x1b[2Kb", "\r\x1b[2K"]);
  const plain: string[] = [];
  const q = consoleProgress((s) => void plain.push(s), false, 60_000);
  q.update("first");
  q.update("too soon");
  q.done();
  assertEquals(plain, ["first\n"]);
  // runUnits feeds the sink with units done, runs, runs/s, failures, elapsed and time left
  const lines: string[] = [];
  const sink = { update: (l: string) => void lines.push(l), done: () => {} };
  const w = new WorkerExecutor(EXAMPLES_URL, 1, { progressMs: 20 });
  try {
    await runUnits([{ target: "example-copy", slice: 0, seed: 1, seconds: 0.5 }], w, sink, 100);
  } finally {
    w.close();
  }
  assert(lines.length >= 2, `progress lines: ${lines.length}`);
  assertMatch(
    lines.at(-1)!,
    /^fuzz: [01]\/1 units, [\d,]+ runs, [\d,]+ runs\/s, 0 failures, [\d.]+s, [\d.]+s left$/,
  );
});

Deno.test("observe: every catalogued error the engine constructs is recorded without target help", () => {
  observeCatalogueErrors();
  resetObserved();
  const v = new VirtqError("DESC_CHAIN_LOOP", "chain visits 17 descriptors");
  const f = new DmaFault("no-domain", 0x1000, 8, DMA_ACCESS_READ, "viommu");
  const m = new DmaMapError("pool-exhausted", 0x2000, 4096, "swiotlb");
  noteErrorCode("MEMORY_FAULT(unmapped)");
  assertEquals(observedErrorCodes(), [
    "DESC_CHAIN_LOOP",
    "DMA_FAULT(no-domain)",
    "DMA_MAP_ERROR(pool-exhausted)",
    "MEMORY_FAULT(unmapped)",
  ]);
  // the instances are unchanged: own enumerable name, fields, instanceof, message
  assertEquals([v.name, v.code, f.name, f.reason, m.name, m.reason], [
    "VirtqError",
    "DESC_CHAIN_LOOP",
    "DmaFault",
    "no-domain",
    "DmaMapError",
    "pool-exhausted",
  ]);
  assert(v instanceof Error && Object.keys(v).includes("name"));
  assertStringIncludes(String(v), "VirtqError: DESC_CHAIN_LOOP: chain visits 17 descriptors");
  for (const c of observedErrorCodes().slice(0, 3)) assert(CATALOGUE_CODES.includes(c), c);
  resetObserved();
});

Deno.test("runner: fc.pre skips in a target neither fail nor stall the deadline", () => {
  const t: FuzzTarget<number> = {
    name: "skips",
    description: "skips odd inputs",
    arbitrary: () => fc.integer(),
    run(n) {
      fc.pre(n % 2 === 0);
    },
  };
  // A skip is not a failure being shrunk: generation must stop at the deadline, not 30 s later.
  const spec = { target: "skips", slice: 0, seed: 1, seconds: 0.3, shrinkGraceSeconds: 30 };
  const r = runUnit(t, spec);
  assertEquals([r.failures.length, r.crash], [0, undefined]);
  assert(r.seconds < 15, `stopped at the deadline, not after the shrink grace (${r.seconds} s)`);
});

Deno.test("runner: a target whose run returns a Promise fails instead of passing unchecked", () => {
  const t = {
    name: "async",
    description: "returns a promise",
    arbitrary: () => fc.nat(),
    run: (n: number) => Promise.resolve(n),
  } as unknown as FuzzTarget<number>;
  const r = runUnit(t, { target: "async", slice: 0, seed: 1, runs: 10 });
  assertEquals(r.failures.map((f) => f.signature.text), ["async/async-run/-"]);
});
