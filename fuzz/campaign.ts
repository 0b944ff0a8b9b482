/**
 * Runs a campaign: the planned units of this shard on a pool of Web Workers (or in the main
 * thread), with a live progress line, collecting the unit results.
 * @module
 */

import type { FuzzTarget } from "./target.ts";
import { IN_FLIGHT, runUnit, type UnitProgress, type UnitResult, type UnitSpec } from "./runner.ts";
import type { WorkerRequest } from "./worker.ts";
import { fmtSeconds } from "./report.ts";

/** Runs units somewhere (worker pool, main thread). */
export interface Executor {
  /** Number of units it runs at once. */
  readonly parallelism: number;
  /** Runs one unit. */
  run(unit: UnitSpec, onProgress: (p: UnitProgress) => void): Promise<UnitResult>;
  /** Releases workers. */
  close(): void;
}

/** Runs units in the main thread, one at a time (tests, `--workers 0`). */
export class InProcessExecutor implements Executor {
  /** Always 1. */
  readonly parallelism = 1;
  #targets: readonly FuzzTarget<unknown>[];
  /**
   * Creates an executor over `targets`.
   * @param targets the targets units may name.
   */
  constructor(targets: readonly FuzzTarget<unknown>[]) {
    this.#targets = targets;
  }
  /** Runs one unit synchronously (progress is reported, but nothing else runs meanwhile). */
  run(unit: UnitSpec, onProgress: (p: UnitProgress) => void): Promise<UnitResult> {
    const t = this.#targets.find((x) => x.name === unit.target);
    if (t === undefined) return Promise.reject(new Error(`no target "${unit.target}"`));
    return Promise.resolve(runUnit(t, unit, onProgress));
  }
  /** Nothing to release. */
  close(): void {}
}

/** Runs units on `n` Web Workers that load the registry module `registryUrl`. */
export class WorkerExecutor implements Executor {
  /** Number of workers. */
  readonly parallelism: number;
  #registry: string;
  #idle: Worker[] = [];
  #all: Worker[] = [];
  #progressMs: number;
  #hangSeconds: number;
  /**
   * Creates a pool; workers start on first use.
   * @param registryUrl URL of a module exporting `TARGETS`.
   * @param n number of workers (at least 1).
   * @param options `progressMs`: progress message interval (500); `hangSeconds`: how long past
   *   120% of its budget a time-bounded unit may take before its worker is killed (30).
   */
  constructor(
    registryUrl: string,
    n: number,
    options: { progressMs?: number; hangSeconds?: number } = {},
  ) {
    this.parallelism = Math.max(1, n);
    this.#registry = registryUrl;
    this.#progressMs = options.progressMs ?? 500;
    this.#hangSeconds = options.hangSeconds ?? 30;
  }
  #take(): Worker {
    const w = this.#idle.pop();
    if (w !== undefined) return w;
    const nw = new Worker(new URL("./worker.ts", import.meta.url).href, { type: "module" });
    this.#all.push(nw);
    return nw;
  }
  /**
   * Runs one unit on an idle worker (the scheduler never asks for more than `parallelism`).
   * Never rejects: a worker that fails, crashes or hangs past the unit's budget plus
   * `hangSeconds` (time-bounded units only) yields a result with `crash` set, and a hung worker
   * is terminated, so the campaign always ends with a report.
   */
  run(unit: UnitSpec, onProgress: (p: UnitProgress) => void): Promise<UnitResult> {
    const w = this.#take();
    const start = performance.now();
    const shared = new SharedArrayBuffer(IN_FLIGHT.length * 4);
    const inFlight = new Int32Array(shared).fill(-1);
    return new Promise<UnitResult>((resolve) => {
      let runs = 0;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const finish = (result: UnitResult, kill: boolean) => {
        clearTimeout(timer);
        w.onmessage = null;
        w.onerror = null;
        if (kill) {
          this.#all = this.#all.filter((x) => x !== w);
          w.terminate();
        } else this.#idle.push(w);
        resolve(result);
      };
      const crash = (why: string, kill: boolean) =>
        finish({
          target: unit.target,
          slice: unit.slice,
          seed: unit.seed,
          runs,
          seconds: (performance.now() - start) / 1000,
          failures: [],
          errorCodes: [],
          crash: why,
        }, kill);
      if (unit.seconds !== undefined) {
        const limit = unit.seconds * 1.2 + this.#hangSeconds;
        timer = setTimeout(
          () =>
            crash(
              `no result after ${limit.toFixed(1)} s (budget ${unit.seconds!.toFixed(1)} s): ` +
                `target.run hangs or an engine loop is unbounded (last progress: ${runs} runs)` +
                hungInput(unit.target, inFlight),
              true,
            ),
          limit * 1000,
        );
      }
      w.onmessage = (ev: MessageEvent) => {
        const m = ev.data;
        if (m.type === "progress") {
          runs = m.runs;
          onProgress({ runs: m.runs, failures: m.failures });
        } else if (m.type === "done") finish(m.result as UnitResult, false);
        else crash(`worker failed: ${m.message}`, false);
      };
      w.onerror = (ev: ErrorEvent) => {
        ev.preventDefault();
        crash(`worker crashed: ${ev.message}`, true);
      };
      const req: WorkerRequest = {
        registry: this.#registry,
        unit,
        progressMs: this.#progressMs,
        inFlight: shared,
      };
      w.postMessage(req);
    });
  }
  /** Terminates every worker. */
  close(): void {
    for (const w of this.#all) w.terminate();
    this.#all = [];
    this.#idle = [];
  }
}

/** Names the input a hung unit was running (from its shared in-flight record), with a replay. */
export function hungInput(target: string, inFlight: Int32Array): string {
  const seed = Atomics.load(inFlight, IN_FLIGHT.seed);
  const index = Atomics.load(inFlight, IN_FLIGHT.index);
  if (seed < 0 || index < 0) return "; it hung before its first input";
  if (Atomics.load(inFlight, IN_FLIGHT.shrinking) === 1) {
    return `; it hung while shrinking a failure of fast-check seed ${seed}`;
  }
  return `; hung input: fast-check seed ${seed}, path ${index} (replay: deno task fuzz --target ` +
    `${target} --replay-seed ${seed} --replay-path ${index})`;
}

/** Progress output: a rewritten line on a TTY, else a plain line every `plainEveryMs`. */
export interface ProgressSink {
  /** Shows the current state. */
  update(line: string): void;
  /** Ends the progress display (clears the TTY line). */
  done(): void;
}

/** A {@link ProgressSink} on stderr-like output. */
export function consoleProgress(
  write: (s: string) => void,
  isTty: boolean,
  plainEveryMs = 10_000,
): ProgressSink {
  let last = -Infinity;
  let shown = false;
  return {
    update(line: string) {
      if (isTty) {
        write(`\r\x1b[2K${line}`);
        shown = true;
      } else if (performance.now() - last >= plainEveryMs) {
        last = performance.now();
        write(`${line}\n`);
      }
    },
    done() {
      if (shown) write("\r\x1b[2K");
    },
  };
}

/** Runs `units` on `exec`, at most `exec.parallelism` at once, reporting progress. */
export async function runUnits(
  units: readonly UnitSpec[],
  exec: Executor,
  progress?: ProgressSink,
  tickMs = 1000,
): Promise<UnitResult[]> {
  const start = performance.now();
  const live = new Map<number, UnitProgress>();
  const results: UnitResult[] = new Array(units.length);
  let doneRuns = 0;
  let doneFailures = 0;
  let finished = 0;
  const budget = estimateWall(units, exec.parallelism);
  const render = () => {
    let runs = doneRuns;
    let failures = doneFailures;
    for (const p of live.values()) {
      runs += p.runs;
      failures += p.failures;
    }
    const el = (performance.now() - start) / 1000;
    const left = budget === undefined ? "" : `, ${fmtSeconds(Math.max(0, budget - el))} left`;
    progress?.update(
      `fuzz: ${finished}/${units.length} units, ${runs.toLocaleString("en-US")} runs, ${
        Math.round(runs / Math.max(el, 0.001)).toLocaleString("en-US")
      } runs/s, ${failures} failures, ${fmtSeconds(el)}${left}`,
    );
  };
  const timer = progress === undefined ? undefined : setInterval(render, tickMs);
  let next = 0;
  const lane = async () => {
    while (next < units.length) {
      const i = next++;
      results[i] = await exec.run(units[i], (p) => live.set(i, p));
      live.delete(i);
      doneRuns += results[i].runs;
      doneFailures += results[i].failures.length;
      finished++;
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(exec.parallelism, units.length) }, lane));
  } finally {
    if (timer !== undefined) clearInterval(timer);
    progress?.done();
  }
  return results;
}

function estimateWall(units: readonly UnitSpec[], parallelism: number): number | undefined {
  if (units.length === 0 || units.some((u) => u.seconds === undefined)) return undefined;
  const per = units[0].seconds!;
  return per * Math.ceil(units.length / Math.max(1, parallelism));
}
