/**
 * Where cases are measured: in this isolate, or in one Worker (a separate V8 isolate) per
 * engine family (layout + DMA mode; the speed-of-light loop and memcpy share one).
 *
 * Why isolates: V8 keeps type feedback per call site. Once several queue or DMA classes have run
 * through the same engine code (`driver.add`, `space.translate`), those sites turn polymorphic or
 * megamorphic and every later case pays for it, so a case measured early (before the others ran)
 * would look faster than one measured late. One isolate per family is not enough: the cases of
 * a family (queue sizes, batches, chain lengths, event-idx) differ in shape, and event-idx cases
 * read 1.6-2x slower after their family's other cases than alone. One isolate per case (the
 * default) gives every case the monomorphic code a real single-device deployment has, and the
 * same figure in the full run as alone.
 *
 * @module
 */

import { measure } from "mitata";
import { caseName, type CaseParams } from "./cases.ts";
import type { Benchable } from "./roundtrip.ts";
import type { AllocResult } from "./results.ts";
import { allocFor } from "./alloc.ts";

/** Raw statistics of one measurement (ns per call). */
export interface RawStats {
  min: number;
  p25: number;
  p50: number;
  p75: number;
  avg: number;
  /** Samples. */
  n: number;
}

/** Shape of a case's round trip. */
export interface CaseShape {
  chainsPerCall: number;
  descriptorsPerCall: number;
  bytesPerCall: number;
}

/** Measuring options. */
export interface MeasureOptions {
  /** Minimum measured time, ms. */
  timeMs: number;
}

/** Measures cases somewhere. */
export interface Measurer {
  /**
   * Builds the case (once), checks one round trip completes every chain, then runs it for
   * `warmMs` so the optimising compiler has tiered it up before the first timed round.
   */
  prepare(p: CaseParams, warmMs: number): Promise<CaseShape>;
  /** Times the case with mitata. */
  measure(p: CaseParams, opts: MeasureOptions): Promise<RawStats>;
  /** Event counters per call over `calls` extra round trips. */
  counters(p: CaseParams, calls: number): Promise<Record<string, number>>;
  /** Heap bytes allocated per chain. */
  alloc(p: CaseParams): Promise<AllocResult>;
  /**
   * Ends every isolate the timed cases ran in, so that the next `prepare` of a case starts it
   * in a fresh one (the runner's `--isolates K` blocks). Optional: a measurer without it can
   * only run one isolate per case.
   */
  renew?(): void;
  /**
   * Starts the isolates of `cases` at once and resolves when each has loaded its code, so that
   * they load in parallel while nothing is being timed (optional; `prepare` starts one otherwise).
   */
  start?(cases: readonly CaseParams[]): Promise<void>;
  /** Ends workers, if any. */
  close(): void;
}

/** mitata options used for every case. */
export function mitataOptions(timeMs: number) {
  return { min_cpu_time: timeMs * 1e6, min_samples: 8, batch_samples: 64, warmup_samples: 4 };
}

/** Measures benchables of this isolate (the core of both measurers). */
export class LocalMeasurer implements Measurer {
  readonly #make: (p: CaseParams) => Benchable;
  readonly #built = new Map<string, Benchable>();
  /** @param make builds the benchable of a case. */
  constructor(make: (p: CaseParams) => Benchable) {
    this.#make = make;
  }
  #get(p: CaseParams): Benchable {
    const name = caseName(p);
    let b = this.#built.get(name);
    if (!b) {
      b = this.#make(p);
      const got = b.run();
      if (got !== b.chainsPerCall) {
        throw new Error(`${name}: round trip completed ${got} chains, not ${b.chainsPerCall}`);
      }
      this.#built.set(name, b);
    }
    return b;
  }
  prepare(p: CaseParams, warmMs: number): Promise<CaseShape> {
    const b = this.#get(p);
    const t0 = performance.now();
    while (performance.now() - t0 < warmMs) b.run();
    return Promise.resolve({
      chainsPerCall: b.chainsPerCall,
      descriptorsPerCall: b.descriptorsPerCall,
      bytesPerCall: b.bytesPerCall,
    });
  }
  async measure(p: CaseParams, opts: MeasureOptions): Promise<RawStats> {
    const b = this.#get(p);
    const s = await measure(() => b.run(), mitataOptions(opts.timeMs));
    return { min: s.min, p25: s.p25, p50: s.p50, p75: s.p75, avg: s.avg, n: s.samples.length };
  }
  counters(p: CaseParams, calls: number): Promise<Record<string, number>> {
    const b = this.#get(p);
    if (!b.counters) return Promise.resolve({});
    const c0 = b.counters();
    for (let i = 0; i < calls; i++) b.run();
    const c1 = b.counters();
    const out: Record<string, number> = {};
    for (const k of Object.keys(c1)) out[k] = (c1[k] - (c0[k] ?? 0)) / calls;
    return Promise.resolve(out);
  }
  alloc(p: CaseParams): Promise<AllocResult> {
    // a fresh instance: the timed one may have grown pools in ways the check should see
    return Promise.resolve(allocFor(p, this.#make(p)));
  }
  close(): void {}
}

/** An operation for a bench worker. */
export type WorkerOp =
  | { op: "prepare"; params: CaseParams; warmMs: number }
  | { op: "measure"; params: CaseParams; timeMs: number }
  | { op: "counters"; params: CaseParams; calls: number }
  | { op: "alloc"; params: CaseParams }
  | { op: "ping" };

/** A request to a bench worker: an operation and its correlation id. */
export type WorkerRequest = WorkerOp & { id: number };

/** A worker's answer. */
export type WorkerResponse = { id: number; ok: true; value: unknown } | {
  id: number;
  ok: false;
  error: string;
};

/** Family of a case: the isolate it runs in. */
export function familyOf(p: CaseParams): string {
  return p.engine === "sol" || p.engine === "memcpy" ? "reference" : `${p.engine}/${p.dma}`;
}

/** Isolation of the cases: one isolate per case, per family, or none (this isolate). */
export type IsolateMode = "case" | "family" | "none";

/** The isolate key of a case under `mode` (cases with equal keys share a Worker). */
export function isolateKey(p: CaseParams, mode: Exclude<IsolateMode, "none">): string {
  return mode === "case" ? caseName(p) : familyOf(p);
}

/** What {@link WorkerMeasurer} needs of a Worker (tests pass a fake that runs in-process). */
export interface WorkerLike {
  /** Receives each {@link WorkerResponse}. */
  onmessage: ((e: MessageEvent<WorkerResponse>) => void) | null;
  /** Receives an uncaught error of the worker (the measurer rejects every pending call). */
  onerror: ((e: ErrorEvent) => void) | null;
  /** Sends one {@link WorkerRequest}. */
  postMessage(req: WorkerRequest): void;
  /** Ends the worker (its isolate is gone). */
  terminate(): void;
}

/** Starts a bench worker for isolate key `key` (default: a real Worker on `bench/worker.ts`). */
export type SpawnWorker = (key: string) => WorkerLike;

function spawnWorker(): WorkerLike {
  return new Worker(new URL("./worker.ts", import.meta.url).href, {
    type: "module",
  }) as unknown as WorkerLike;
}

/**
 * Measures cases in Workers: one per isolate key ({@link isolateKey}; by default one per engine
 * family). With `case` keys every case gets a fresh V8 isolate, so what it measures cannot depend
 * on which other cases ran before it (the check: `deno task bench --check-isolation`).
 * {@link WorkerMeasurer.renew} ends them all, so the next call for a case starts a new one.
 */
export class WorkerMeasurer implements Measurer {
  readonly #key: (p: CaseParams) => string;
  readonly #spawn: SpawnWorker;
  /**
   * @param key the isolate key of a case, default {@link familyOf}.
   * @param spawn starts a worker, default a real `Worker` running `bench/worker.ts`.
   */
  constructor(key: (p: CaseParams) => string = familyOf, spawn: SpawnWorker = spawnWorker) {
    this.#key = key;
    this.#spawn = spawn;
  }
  readonly #workers = new Map<string, WorkerLike>();
  #spawned = 0;
  readonly #pending = new Map<
    number,
    { resolve: (v: unknown) => void; reject: (e: Error) => void }
  >();
  #next = 1;

  #worker(fam: string): WorkerLike {
    let w = this.#workers.get(fam);
    if (!w) {
      w = this.#spawn(fam);
      this.#spawned++;
      w.onmessage = (e: MessageEvent<WorkerResponse>) => {
        const r = e.data;
        const h = this.#pending.get(r.id);
        if (!h) return;
        this.#pending.delete(r.id);
        if (r.ok) h.resolve(r.value);
        else h.reject(new Error(r.error));
      };
      w.onerror = (e: ErrorEvent) => {
        e.preventDefault();
        for (const h of this.#pending.values()) {
          h.reject(new Error(`bench worker ${fam}: ${e.message}`));
        }
        this.#pending.clear();
      };
      this.#workers.set(fam, w);
    }
    return w;
  }

  #call<T>(req: WorkerOp, key = "params" in req ? this.#key(req.params) : ""): Promise<T> {
    const id = this.#next++;
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.#worker(key).postMessage({ ...req, id });
    });
  }

  /**
   * Starts a worker for every case's isolate key not running yet, all at once, and resolves when
   * each has loaded `bench/worker.ts` (answered a ping): the loads overlap, and no case is being
   * timed or warmed while they run.
   */
  async start(cases: readonly CaseParams[]): Promise<void> {
    const keys = [...new Set(cases.map(this.#key))].filter((k) => !this.#workers.has(k));
    await Promise.all(keys.map((k) => this.#call({ op: "ping" }, k)));
  }
  prepare(p: CaseParams, warmMs: number): Promise<CaseShape> {
    return this.#call({ op: "prepare", params: p, warmMs });
  }
  measure(p: CaseParams, opts: MeasureOptions): Promise<RawStats> {
    return this.#call({ op: "measure", params: p, timeMs: opts.timeMs });
  }
  counters(p: CaseParams, calls: number): Promise<Record<string, number>> {
    return this.#call({ op: "counters", params: p, calls });
  }
  /**
   * Allocation per chain, in a fresh isolate of its own (closed afterwards): a second instance
   * of a layered stack built in the timed case's isolate deprecates maps the first one's
   * optimised code depends on, and the re-optimised code then boxes a number per chain (16 B
   * seen on virtio-iommu-long). The check measures one instance in steady state, as the timed
   * case does.
   */
  async alloc(p: CaseParams): Promise<AllocResult> {
    const key = `alloc ${caseName(p)}`;
    try {
      return await this.#call<AllocResult>({ op: "alloc", params: p }, key);
    } finally {
      this.#workers.get(key)?.terminate();
      this.#workers.delete(key);
    }
  }
  /** Workers alive now (one per isolate key seen since the last renew). */
  get workerCount(): number {
    return this.#workers.size;
  }
  /** Workers started so far, including ended ones (alloc checks and renewed isolates). */
  get spawnedCount(): number {
    return this.#spawned;
  }
  /**
   * Ends every worker: the next call for a case starts a fresh isolate for it. Requests still
   * pending are rejected (the runner calls this between blocks, when none are).
   */
  renew(): void {
    for (const h of this.#pending.values()) h.reject(new Error("bench worker renewed"));
    this.#pending.clear();
    this.close();
  }
  close(): void {
    for (const w of this.#workers.values()) w.terminate();
    this.#workers.clear();
  }
}
