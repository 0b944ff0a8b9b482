import { assert, assertEquals } from "@std/assert";
import { BASE, caseName, type CaseParams } from "../../bench/cases.ts";
import { isolateKey, type Measurer, type RawStats, WorkerMeasurer } from "../../bench/measurer.ts";
import { checkIsolation } from "../../bench/isolation.ts";
import { runCases } from "../../bench/runner.ts";

// A measurer that models an isolate whose type feedback every built case pollutes: a case is
// 1.8x slower when another case was built in the same isolate before it (the event-idx symptom).
class FeedbackModel implements Measurer {
  readonly #seen: string[] = [];
  #slow(p: CaseParams): boolean {
    const n = caseName(p);
    if (!this.#seen.includes(n)) this.#seen.push(n);
    return this.#seen.indexOf(n) > 0;
  }
  prepare(p: CaseParams) {
    this.#slow(p);
    return Promise.resolve({ chainsPerCall: 1, descriptorsPerCall: 1, bytesPerCall: 64 });
  }
  measure(p: CaseParams): Promise<RawStats> {
    const ns = 100 * (this.#slow(p) ? 1.8 : 1);
    return Promise.resolve({ min: ns, p25: ns, p50: ns, p75: ns, avg: ns, n: 8 });
  }
  counters() {
    return Promise.resolve({});
  }
  alloc(): never {
    throw new Error("unused");
  }
  close() {}
}

// Routes each case to a FeedbackModel per isolate key, as WorkerMeasurer routes to Workers.
class Keyed implements Measurer {
  readonly #by = new Map<string, FeedbackModel>();
  constructor(readonly key: (p: CaseParams) => string) {}
  #m(p: CaseParams) {
    const k = this.key(p);
    if (!this.#by.has(k)) this.#by.set(k, new FeedbackModel());
    return this.#by.get(k)!;
  }
  prepare(p: CaseParams) {
    return this.#m(p).prepare(p);
  }
  measure(p: CaseParams) {
    return this.#m(p).measure(p);
  }
  counters() {
    return Promise.resolve({});
  }
  alloc(): never {
    throw new Error("unused");
  }
  close() {}
}

const CASES: CaseParams[] = [
  { ...BASE },
  { ...BASE, size: 1024 },
  { ...BASE, eventIdx: true },
];
const opts = { rounds: 2, timeMs: 1, noise: 0.08, progress: () => {} };

Deno.test("isolation check: shared type feedback (one isolate per family) is caught", async () => {
  const m = new Keyed((p) => isolateKey(p, "family"));
  const run = await runCases(CASES, m, opts);
  const c = await checkIsolation(run, m, { ...opts, fresh: () => new FeedbackModel() });
  assertEquals(c.rows.map((r) => r.ok), [true, false, false]);
  assertEquals(c.target.status, "missed");
  assert(c.target.detail.includes(caseName({ ...BASE, eventIdx: true })));
});

Deno.test("isolation check: one isolate per case measures the same as alone", async () => {
  const m = new Keyed((p) => isolateKey(p, "case"));
  const run = await runCases(CASES, m, opts);
  const c = await checkIsolation(run, m, { ...opts, fresh: () => new FeedbackModel() });
  assertEquals(c.rows.map((r) => r.ratio), [1, 1, 1]);
  assertEquals(c.target.status, "met");
});

Deno.test("WorkerMeasurer: --isolate case starts one Worker per case, family one per family", async () => {
  const sol: CaseParams = { ...BASE, engine: "sol", batch: 4 };
  const cases = [sol, { ...sol, size: 1024 }, { ...sol, payload: 1500 }];
  for (const [mode, workers] of [["case", 3], ["family", 1]] as const) {
    const m = new WorkerMeasurer((p) => isolateKey(p, mode));
    try {
      for (const p of cases) await m.prepare(p, 1);
      assertEquals(m.workerCount, workers);
    } finally {
      m.close();
    }
  }
});
