/**
 * Runs one campaign unit (one target, one seed slice) under fast-check for a time and/or run
 * budget. After a failure is found and shrunk, the unit continues with a new derived seed while
 * budget remains, so one run can find several distinct bugs (de-duplicated by signature).
 * Synchronous: it runs inside a Web Worker (`fuzz/worker.ts`) or in-process (tests).
 * @module
 */

import fc from "fast-check";
import { type FuzzTarget, OracleFailure } from "./target.ts";
import { observedErrorCodes, resetObserved } from "./observe.ts";
import { observeCatalogueErrors } from "./catalogue.ts";
import { deriveSeed, type FailureSignature, messageOf, signatureOf } from "./signature.ts";

/** One unit of a campaign: a target and a seed slice, with its budget. */
export interface UnitSpec {
  /** Target name. */
  target: string;
  /** Slice number (a target is split into slices when there are more shards than targets). */
  slice: number;
  /** Base seed of the unit. */
  seed: number;
  /** Time budget in seconds (undefined: no time limit). */
  seconds?: number;
  /**
   * Run budget (undefined: no run limit). At least one of the two must be set. Shrinking a
   * failure found near the deadline may overrun `seconds` by 20% (1 s to 10 s).
   */
  runs?: number;
  /** Grace for shrinking past the deadline, seconds (default 20% of `seconds`, 1 to 10). */
  shrinkGraceSeconds?: number;
  /** Stop after this many distinct failures (default 3). */
  maxFailures?: number;
}

/** One failure found and shrunk by fast-check. */
export interface FailureRecord {
  /** Its signature (de-duplication key). */
  signature: FailureSignature;
  /** The error message of the shrunk counterexample. */
  message: string;
  /** fast-check seed of the failing `fc.check`. */
  seed: number;
  /** fast-check path of the shrunk counterexample. */
  path: string;
  /** `fc.commands` replay path, when the target uses commands. */
  replayPath?: string;
  /** `target.encode(input)` of the shrunk input, when the target encodes. */
  input?: unknown;
  /** `fc.stringify` of the shrunk input (for people). */
  inputText: string;
  /** Number of shrink steps fast-check took. */
  shrinks: number;
}

/** What one unit did. */
export interface UnitResult {
  /** Target name. */
  target: string;
  /** Slice number. */
  slice: number;
  /** Base seed. */
  seed: number;
  /** Property runs executed (fast-check `numRuns`, summed over the unit's checks). */
  runs: number;
  /** Wall time in seconds. */
  seconds: number;
  /** Distinct failures (by signature). */
  failures: FailureRecord[];
  /** Catalogue error codes raised by the engine or noted by the target (`fuzz/observe.ts`). */
  errorCodes: string[];
  /** Work done, when the target counts it ({@link FuzzTarget.workUnit}, e.g. chains). */
  work?: { unit: string; count: number };
  /** Set when the target could not run at all (e.g. its arbitrary threw). */
  crash?: string;
}

/**
 * Slots of the in-flight record a unit keeps in shared memory (an `Int32Array` over a
 * `SharedArrayBuffer`), so a watchdog on another thread can name the input that hangs: the
 * fast-check seed of the current check, the index of the run inside it (its fast-check path while
 * generating), and 1 while shrinking.
 */
export const IN_FLIGHT = { seed: 0, index: 1, shrinking: 2, length: 3 } as const;

/** Live counters, passed to the progress callback. */
export interface UnitProgress {
  /** Property executions so far (including shrink steps). */
  runs: number;
  /** Distinct failures so far. */
  failures: number;
}

const MAX_RUNS = 0x7fff_ffff;

/** Extracts the `replayPath` fast-check prints in the `toString` of an `fc.commands` value. */
export function extractReplayPath(text: string): string | undefined {
  return /replayPath="([^"]*)"/.exec(text)?.[1];
}

/** How far shrinking a failure found just before the deadline may overrun it, in ms. */
function shrinkGrace(spec: UnitSpec): number {
  return spec.seconds === undefined
    ? 0
    : spec.shrinkGraceSeconds !== undefined
    ? spec.shrinkGraceSeconds * 1000
    : Math.min(10_000, Math.max(1000, spec.seconds * 200));
}

/** State one unit's property predicate shares with its fc.check loop. */
interface UnitRun {
  /** The target under test. */
  readonly target: FuzzTarget<unknown>;
  /** The unit's seed and budget. */
  readonly spec: UnitSpec;
  /** `performance.now()` past which no new input is generated. */
  readonly deadline: number;
  /** Shared in-flight record for the watchdog ({@link IN_FLIGHT}), if any. */
  readonly inFlight: Int32Array | undefined;
  /** The current fc.check found a failure and is shrinking it. */
  failing: boolean;
  /** Runs of the current fc.check: the fast-check path of a generated input. */
  checkIndex: number;
  /** fast-check `numRuns`, summed over the unit's checks. */
  runs: number;
  /** Distinct failures so far. */
  readonly failures: FailureRecord[];
}

/**
 * The progress callback throttled to one call per `progressMs` (undefined without a
 * callback); the predicate calls it with the executed count every 32 inputs.
 */
function throttledProgress(
  onProgress: ((p: UnitProgress) => void) | undefined,
  progressMs: number,
  start: number,
  failures: readonly FailureRecord[],
): ((executed: number) => void) | undefined {
  if (onProgress === undefined) return undefined;
  let nextReport = start + progressMs;
  return (executed) => {
    const now = performance.now();
    if (now >= nextReport) {
      nextReport = now + progressMs;
      onProgress({ runs: executed, failures: failures.length });
    }
  };
}

/**
 * The fast-check property body: stops generating at the deadline, marks the in-flight input,
 * runs the target synchronously, and on its first real failure switches to shrinking with
 * full stack traces (`stackLimit`).
 */
function fuzzPredicate(
  run: UnitRun,
  stackLimit: number,
  progress: ((executed: number) => void) | undefined,
): (input: unknown) => void {
  const { target, deadline, inFlight } = run;
  let executed = 0;
  return (input: unknown): void => {
    executed++;
    if (inFlight !== undefined && !run.failing) {
      Atomics.store(inFlight, IN_FLIGHT.index, run.checkIndex++);
    }
    // Generation stops at the deadline (an interrupt, which fast-check counts as success);
    // shrinking a failure found before it may use the grace period (fc's own time limit).
    if (!run.failing && performance.now() >= deadline) throw new fc.PreconditionFailure(true);
    if (progress !== undefined && (executed & 31) === 0) progress(executed);
    try {
      const out: unknown = target.run(input);
      if (out instanceof Promise) {
        out.catch(() => {}); // never awaited: the contract is synchronous
        throw new OracleFailure(
          "async-run",
          `${target.name}.run returned a Promise: targets must be synchronous (FuzzTarget.run)`,
        );
      }
    } catch (e) {
      if (!fc.PreconditionFailure.isFailure(e) && !run.failing) {
        // fc.pre() in a target is a skip. A real failure: shrinking starts, with full stacks.
        run.failing = true;
        if (inFlight !== undefined) Atomics.store(inFlight, IN_FLIGHT.shrinking, 1);
        Error.stackTraceLimit = stackLimit;
      }
      throw e;
    }
  };
}

/** Resets the per-check state and the in-flight record before an fc.check at `seed`. */
function beginCheck(run: UnitRun, seed: number): void {
  run.failing = false;
  run.checkIndex = 0;
  if (run.inFlight !== undefined) {
    Atomics.store(run.inFlight, IN_FLIGHT.seed, seed);
    Atomics.store(run.inFlight, IN_FLIGHT.shrinking, 0);
  }
  Error.stackTraceLimit = 0;
}

/** The record of a new (not yet seen) failure fast-check found and shrank at `seed`. */
function failureRecord(
  target: FuzzTarget<unknown>,
  details: fc.RunDetails<[unknown]>,
  seed: number,
  signature: FailureSignature,
): FailureRecord {
  const input = details.counterexample![0];
  const inputText = fc.stringify(input);
  return {
    signature,
    message: messageOf(details.errorInstance),
    seed,
    path: details.counterexamplePath ?? "",
    replayPath: target.usesCommands
      ? extractReplayPath(String(input)) ?? extractReplayPath(inputText)
      : undefined,
    input: target.encode?.(input),
    inputText,
    shrinks: details.numShrinks,
  };
}

/**
 * Runs fc.check after fc.check (a derived seed each) until the run or time budget is used up,
 * `maxFailures` distinct failures are recorded, or the same failure came back 3 times.
 * Adds to `run.runs` and `run.failures` as it goes (they survive a throw).
 */
function checkUntilBudget(run: UnitRun, predicate: (input: unknown) => void): void {
  const { target, spec, deadline } = run;
  const shrinkGraceMs = shrinkGrace(spec);
  const maxFailures = spec.maxFailures ?? 3;
  const seen = new Set<string>();
  let runsLeft = spec.runs ?? Infinity;
  let repeats = 0;
  const arb = target.arbitrary();
  for (let k = 0; runsLeft > 0; k++) {
    const remaining = deadline - performance.now();
    if (remaining <= 0) break;
    const seed = k === 0 ? spec.seed : deriveSeed(spec.seed, "retry", k);
    beginCheck(run, seed);
    const details = fc.check(fc.property(arb, predicate), {
      seed,
      numRuns: Math.min(runsLeft, MAX_RUNS),
      interruptAfterTimeLimit: Number.isFinite(remaining)
        ? Math.ceil(remaining + shrinkGraceMs)
        : undefined,
    });
    run.runs += details.numRuns;
    runsLeft -= Math.max(details.numRuns, 1);
    if (!details.failed) break; // budget used up, or interrupted (a time-bounded success)
    const signature = signatureOf(target.name, details.errorInstance);
    if (seen.has(signature.hash)) {
      if (++repeats >= 3) break; // the same bug keeps coming back: stop spending budget on it
      continue;
    }
    seen.add(signature.hash);
    run.failures.push(failureRecord(target, details, seed, signature));
    if (run.failures.length >= maxFailures) break;
  }
}

/**
 * Runs `target` for the unit's budget. `onProgress` is called about every `progressMs`
 * milliseconds from inside the property (the run is synchronous).
 */
export function runUnit(
  target: FuzzTarget<unknown>,
  spec: UnitSpec,
  onProgress?: (p: UnitProgress) => void,
  progressMs = 500,
  inFlight?: Int32Array,
): UnitResult {
  const start = performance.now();
  const deadline = spec.seconds === undefined ? Infinity : start + spec.seconds * 1000;
  let crash: string | undefined;
  observeCatalogueErrors();
  resetObserved();
  // Engine errors are constructed (and usually caught) by the thousand per second; capturing
  // their stack traces costs ~10% of a hostile-driver run. No stacks while generating; the full
  // limit comes back as soon as a run fails, so shrunk counterexamples and crashes keep theirs
  // (`--replay` does not go through here and always has full stacks).
  const stackLimit = Error.stackTraceLimit;
  const work0 = target.workDone?.() ?? 0;
  const run: UnitRun = {
    target,
    spec,
    deadline,
    inFlight,
    failing: false,
    checkIndex: 0,
    runs: 0,
    failures: [],
  };
  const progress = throttledProgress(onProgress, progressMs, start, run.failures);
  try {
    checkUntilBudget(run, fuzzPredicate(run, stackLimit, progress));
  } catch (e) {
    crash = e instanceof Error ? (e.stack ?? e.message) : String(e);
  } finally {
    Error.stackTraceLimit = stackLimit;
  }
  const result: UnitResult = {
    target: target.name,
    slice: spec.slice,
    seed: spec.seed,
    runs: run.runs,
    seconds: (performance.now() - start) / 1000,
    failures: run.failures,
    errorCodes: observedErrorCodes(),
  };
  if (target.workUnit !== undefined && target.workDone !== undefined) {
    result.work = { unit: target.workUnit, count: target.workDone() - work0 };
  }
  if (crash !== undefined) result.crash = crash;
  return result;
}
