/**
 * `--isolates K`: the runner starts K isolates per case, and the paired lines take each case's
 * best round in each isolate, then the median over isolates, so one isolate's steady state (or
 * one lucky round) cannot decide a line. No real Workers: a fake worker answers in-process and counts what it is asked.
 */

import { assert, assertEquals, assertRejects, assertThrows } from "@std/assert";
import fc from "fast-check";
import { BASE, caseName, type CaseParams } from "../../bench/cases.ts";
import {
  type CaseShape,
  type Measurer,
  type RawStats,
  type WorkerLike,
  WorkerMeasurer,
  type WorkerRequest,
  type WorkerResponse,
} from "../../bench/measurer.ts";
import { blockSizes, foldRounds, runCases } from "../../bench/runner.ts";
import { median, pairedOf, pairedRatio } from "../../bench/paired.ts";
import { computeTargets } from "../../bench/targets.ts";
import { parseResults } from "../../bench/results.ts";
import { parseBenchArgs } from "../../bench/args.ts";
import { caseResult, results } from "./bench_fixture.ts";
import type { CaseResult, Target } from "../../bench/results.ts";

/** A fake bench worker: answers every op in-process; its serial number is its p50. */
class FakeWorker implements WorkerLike {
  onmessage: ((e: MessageEvent<WorkerResponse>) => void) | null = null;
  onerror: ((e: ErrorEvent) => void) | null = null;
  terminated = false;
  readonly ops: string[] = [];
  constructor(readonly key: string, readonly serial: number) {}
  postMessage(req: WorkerRequest): void {
    this.ops.push(req.op);
    let value: unknown;
    if (this.terminated) throw new Error(`${this.key}: message to a terminated worker`);
    if (req.op === "prepare") {
      value = { chainsPerCall: 1, descriptorsPerCall: 1, bytesPerCall: 64 } satisfies CaseShape;
    } else if (req.op === "measure") {
      const p50 = 100 * this.serial;
      value = { min: p50, p25: p50, p50, p75: p50, avg: p50, n: 8 } satisfies RawStats;
    } else value = {};
    queueMicrotask(() =>
      this.onmessage?.(new MessageEvent("message", { data: { id: req.id, ok: true, value } }))
    );
  }
  terminate(): void {
    this.terminated = true;
  }
}

const A: CaseParams = { ...BASE, chainLen: 2, size: 1024 };
const B: CaseParams = { ...BASE, chainLen: 4, size: 1024 };

function fakeRun() {
  const spawned: FakeWorker[] = [];
  const m = new WorkerMeasurer(caseName, (key) => {
    // the previous isolate of this case must be gone before its next one starts
    for (const w of spawned) {
      if (w.key === key) assert(w.terminated, `${key}: new isolate while the old one lives`);
    }
    const w = new FakeWorker(key, spawned.length + 1);
    spawned.push(w);
    return w;
  });
  return { m, spawned };
}

Deno.test("isolates: blocks of consecutive rounds, earlier ones larger, clamped to rounds", () => {
  assertEquals(blockSizes(30, 3), [10, 10, 10]);
  assertEquals(blockSizes(7, 3), [3, 2, 2]);
  assertEquals(blockSizes(2, 5), [1, 1]);
  assertEquals(blockSizes(5, 1), [5]);
});

Deno.test("isolates: the runner starts K workers per case, each prepared once and measured in its block", async () => {
  const { m, spawned } = fakeRun();
  try {
    const lines: string[] = [];
    const rs = await runCases([A, B], m, {
      rounds: 7,
      timeMs: 1,
      isolates: 3,
      progress: (l) => lines.push(l),
    });
    for (const p of [A, B]) {
      const ws = spawned.filter((w) => w.key === caseName(p));
      assertEquals(ws.length, 3, `${caseName(p)}: isolates started`);
      // each isolate: one prepare, then its block's rounds (3, 2, 2); counters on the last one
      assertEquals(ws.map((w) => w.ops.filter((o) => o === "prepare").length), [1, 1, 1]);
      assertEquals(ws.map((w) => w.ops.filter((o) => o === "measure").length), [3, 2, 2]);
      assertEquals(ws.map((w) => w.ops.includes("counters")), [false, false, true]);
      assertEquals(ws.map((w) => w.terminated), [true, true, false]);
      // each started (loaded) before any case of its block was prepared
      assertEquals(ws.map((w) => w.ops[0]), ["ping", "ping", "ping"]);
    }
    assertEquals(m.spawnedCount, 6);
    assertEquals(m.workerCount, 2);
    // each round's time came from the worker of its block, and the block is recorded
    for (const r of rs) {
      const serials = spawned.filter((w) => w.key === r.name).map((w) => 100 * w.serial);
      assertEquals(r.stats.roundIsolates, [0, 0, 0, 1, 1, 2, 2]);
      assertEquals(r.stats.roundP50s, [0, 0, 0, 1, 1, 2, 2].map((i) => serials[i]));
    }
    parseResults(results(rs), "run");
    assertEquals(lines.filter((l) => l.includes("fresh isolates")).length, 2);
    assert(lines.some((l) => l.includes("iso 3/3")));
  } finally {
    m.close();
  }
});

Deno.test("isolates: one isolate keeps one worker per case and records no isolates", async () => {
  const { m, spawned } = fakeRun();
  try {
    const rs = await runCases([A, B], m, { rounds: 4, timeMs: 1, progress: () => {} });
    assertEquals(spawned.length, 2);
    assertEquals(rs[0].stats.roundIsolates, undefined);
    assertEquals(rs[0].stats.roundP50s?.length, 4);
  } finally {
    m.close();
  }
});

Deno.test("isolates: K > 1 needs a measurer that can renew its isolates", async () => {
  const { m } = fakeRun();
  const noRenew: Measurer = {
    prepare: (p, w) => m.prepare(p, w),
    measure: (p, o) => m.measure(p, o),
    counters: (p, c) => m.counters(p, c),
    alloc: (p) => m.alloc(p),
    close: () => m.close(),
  };
  await assertRejects(
    () => runCases([A], noRenew, { rounds: 4, timeMs: 1, isolates: 2, progress: () => {} }),
    Error,
    "renew",
  );
  m.close();
});

// ---- statistics -------------------------------------------------------------------------------

/** Deterministic noise in [-1, 1) (a linear congruential generator). */
function noise(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  };
}

/**
 * Chain-length cases c1, c2, c4, c16 of `engine` with per-round times (ns per chain):
 * `ns(c)` plus +-`jitter` relative noise per round, times `off` in the isolates `offIn` of case
 * `offCase`. Rounds are split over `k` isolates.
 */
function chainRun(opts: {
  engine: "split" | "sol";
  rounds: number;
  k: number;
  jitter: number;
  offCase: number;
  off: number;
  offIn: number[];
  seed: number;
}): CaseResult[] {
  const rnd = noise(opts.seed);
  const isolates = blockSizes(opts.rounds, opts.k).flatMap((n, i) => new Array(n).fill(i));
  // a true marginal of 10 ns per added descriptor from c2 on
  const ns = (c: number) => (c === 1 ? 95 : 100 + 10 * (c - 2));
  return [1, 2, 4, 16].map((c) => {
    const base = caseResult({ engine: opts.engine, chainLen: c, size: 1024 }, 32 * ns(c));
    const p50s = isolates.map((iso) =>
      32 * ns(c) * (1 + opts.jitter * rnd()) *
      (c === opts.offCase && opts.offIn.includes(iso) ? opts.off : 1)
    );
    const raw = p50s.map((p50) => ({ min: p50, p25: p50, p50, p75: p50, avg: p50, n: 8 }));
    const stats = foldRounds(raw, isolates);
    return { ...base, stats, nsPerChain: stats.p50 / 32 };
  });
}

function marginalLine(rs: CaseResult[], engine: string): Target {
  const t = computeTargets(rs, [], { invalidationNs: 1000, requestNs: 5000 })
    .find((x) => x.name.startsWith(`${engine}: marginal`));
  if (!t) throw new Error("marginal line missing");
  return t;
}

/** The same rounds as if every one had come from one isolate (a K = 1 reading of them). */
function oneIsolate(rs: CaseResult[]): CaseResult[] {
  return rs.map((r) => ({ ...r, stats: { ...r.stats, roundIsolates: undefined } }));
}

/** Only the rounds of isolate `k` (what a K = 1 run that got this isolate would have seen). */
function onlyIsolate(rs: CaseResult[], k: number): CaseResult[] {
  return rs.map((r) => {
    const keep = r.stats.roundIsolates!.map((x, i) => (x === k ? i : -1)).filter((i) => i >= 0);
    const p50s = keep.map((i) => r.stats.roundP50s![i]);
    const stats = foldRounds(
      p50s.map((p50) => ({ min: p50, p25: p50, p50, p75: p50, avg: p50, n: 8 })),
    );
    return { ...r, stats, nsPerChain: stats.p50 / r.chainsPerCall };
  });
}

Deno.test("isolates: one isolate 10% off does not move the marginal line past its goal", () => {
  // c4's steady state is 10% slow in every round of isolate 1 of 3 (as split c4 read 253-257
  // ns/chain in one isolate and 234 in another); every round also jitters +-4%. Over 100 runs:
  let combinedMissed = 0, singleMissed = 0, pooledMissed = 0;
  for (let seed = 1; seed <= 100; seed++) {
    const rs = chainRun({
      engine: "split",
      rounds: 30,
      k: 3,
      jitter: 0.04,
      offCase: 4,
      off: 1.1,
      offIn: [1],
      seed,
    });
    const combined = marginalLine(rs, "split");
    if (seed === 1) assert(combined.detail.includes("median over 3 isolates"), combined.detail);
    if (combined.status === "missed") combinedMissed++;
    // a K = 1 run whose one isolate was the slow one
    if (marginalLine(onlyIsolate(rs, 1), "split").status === "missed") singleMissed++;
    // the median over all 30 rounds, blind to their isolates: the ten slow rounds all fall on
    // one side and drag it to a quantile of the others
    if (marginalLine(oneIsolate(rs), "split").status === "missed") pooledMissed++;
  }
  assertEquals(singleMissed, 100);
  assert(combinedMissed <= 3, `combined missed ${combinedMissed} of 100`);
  assert(pooledMissed >= 15, `pooled missed only ${pooledMissed} of 100`);
});

Deno.test("isolates: the combined value is the median over isolates of each one's best-round figure", () => {
  const rs = chainRun({
    engine: "sol",
    rounds: 9,
    k: 3,
    jitter: 0.05,
    offCase: 2,
    off: 0.9,
    offIn: [2],
    seed: 7,
  });
  const [_, c2, c4] = rs;
  const best = (c: CaseResult, k: number) =>
    Math.min(...c.stats.roundP50s!.slice(3 * k, 3 * k + 3)) / 32;
  const mid = (xs: number[]) => [...xs].sort((x, y) => x - y)[1];
  const d = pairedOf([c2, c4], ([a, b]) => (b - a) / 2);
  const per = [0, 1, 2].map((k) => (best(c4, k) - best(c2, k)) / 2);
  assertEquals(d.perIsolate, per);
  assertEquals(d.value, mid(per));
  assertEquals([d.rounds, d.isolates], [9, 3]);
  const r = pairedRatio(c4, c2);
  const ratios = [0, 1, 2].map((k) => best(c4, k) / best(c2, k));
  assertEquals([r.value, r.lo, r.hi, r.isolates, r.rounds], [
    mid(ratios),
    Math.min(...ratios),
    Math.max(...ratios),
    3,
    9,
  ]);
  // one isolate: still the median over rounds of the paired per-round ratio
  const one = pairedRatio(oneIsolate([c4])[0], oneIsolate([c2])[0]);
  const perRound = c4.stats.roundP50s!.map((x, i) => x / c2.stats.roundP50s![i]);
  assertEquals([one.value, one.isolates], [median(perRound), 1]);
});

Deno.test("isolates: slow rounds in most of an isolate, and one lucky round, do not move the figure", () => {
  // a: 100 ns/chain, b: 200; three isolates of five rounds
  const isolates = [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2];
  const mk = (chainLen: number, ns: number[]) => {
    const c = caseResult({ chainLen }, 1);
    const stats = foldRounds(
      ns.map((x) => ({ min: 32 * x, p25: 32 * x, p50: 32 * x, p75: 32 * x, avg: 32 * x, n: 8 })),
      isolates,
    );
    return { ...c, stats, nsPerChain: stats.p50 / 32 };
  };
  const a = mk(2, isolates.map(() => 100));
  // b is slow (x1.3) in 3 of 5 rounds of isolate 0 and 1, and has one lucky round (x0.7) in 2
  const slow = [1.3, 1, 1.3, 1.3, 1, 1.3, 1.3, 1, 1, 1.3, 1, 1, 0.7, 1, 1];
  const b = mk(4, slow.map((x) => 200 * x));
  const r = pairedRatio(b, a);
  assertEquals(r.value, 2); // isolates 0 and 1 vote 2 (best rounds), isolate 2 votes 1.4
  assertEquals([r.lo, r.hi], [1.4, 2]);
  // each isolate's paired median would read 2.6, 2.6 and 2 (slow in 3 of 5 rounds), so 2.6
  // overall; read as one isolate, the median over all 15 rounds is 2 (8 of them are not slow)
  assertEquals(pairedRatio(oneIsolate([b])[0], oneIsolate([a])[0]).value, 2);
});

Deno.test("isolates: with one isolate off by any factor the line stays between the others'", () => {
  fc.assert(fc.property(
    fc.integer({ min: 1, max: 2 ** 31 }),
    fc.constantFrom(3, 5),
    fc.double({ min: 0.5, max: 2, noNaN: true }),
    fc.integer({ min: 0, max: 4 }),
    (seed, k, off, bad) => {
      const b = bad % k;
      const rs = chainRun({
        engine: "split",
        rounds: 6 * k,
        k,
        jitter: 0.03,
        offCase: 4,
        off,
        offIn: [b],
        seed,
      });
      const d = pairedOf([rs[1], rs[2]], ([x, y]) => (y - x) / 2);
      const others = d.perIsolate.filter((_, i) => i !== b);
      assert(d.value >= Math.min(...others) - 1e-9 && d.value <= Math.max(...others) + 1e-9);
    },
  ));
});

Deno.test("isolates: roundIsolates is optional in files and must match the rounds", () => {
  const [c] = chainRun({
    engine: "split",
    rounds: 4,
    k: 2,
    jitter: 0,
    offCase: 0,
    off: 1,
    offIn: [],
    seed: 1,
  });
  parseResults(results([c]), "new");
  parseResults(results(oneIsolate([c])), "old"); // files from before --isolates
  const bad = { ...c, stats: { ...c.stats, roundIsolates: [0, 1] } };
  assertThrows(() => parseResults(results([bad]), "bad.json"), Error, "roundIsolates");
});

Deno.test("isolates: --isolates defaults to 3 for the lines suite, 1 otherwise, and is checked", () => {
  assertEquals(parseBenchArgs([]).isolates, 1);
  assertEquals(parseBenchArgs(["--suite", "lines"]).isolates, 3);
  assertEquals(parseBenchArgs(["--suite", "lines", "--isolate", "none"]).isolates, 1);
  assertEquals(parseBenchArgs(["--suite", "lines", "--isolates", "1"]).isolates, 1);
  assertEquals(parseBenchArgs(["--isolates", "5"]).isolates, 5);
  assertThrows(() => parseBenchArgs(["--isolates", "0"]), Error, "--isolates 0");
  assertThrows(
    () => parseBenchArgs(["--isolates", "2", "--isolate", "none"]),
    Error,
    "--isolates 2",
  );
});

Deno.test("isolates: rounds from different isolates are not paired (min-of-rounds instead)", () => {
  const mk = (chainLen: number, ns: number[], isolates: number[]) => {
    const c = caseResult({ chainLen }, 1);
    const stats = foldRounds(
      ns.map((x) => ({ min: 32 * x, p25: 32 * x, p50: 32 * x, p75: 32 * x, avg: 32 * x, n: 8 })),
      isolates,
    );
    return { ...c, stats, nsPerChain: stats.p50 / 32 };
  };
  // hand-merged: a's rounds ran in isolates 0,0,1,1, b's in 0,1,1,1
  const a = mk(2, [100, 300, 100, 300], [0, 0, 1, 1]);
  const b = mk(4, [200, 200, 600, 600], [0, 1, 1, 1]);
  const r = pairedRatio(b, a);
  assertEquals([r.value, r.rounds, r.isolates], [2, 0, 0]); // 200 / 100, the min-of-rounds ratio
  // the same rounds in the same isolates pair: per isolate best rounds 200/100 and 600/100
  const b2 = mk(4, [200, 200, 600, 600], [0, 0, 1, 1]);
  assertEquals(pairedRatio(b2, a).isolates, 2);
});
