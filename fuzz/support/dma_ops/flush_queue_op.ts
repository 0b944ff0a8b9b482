/**
 * A lazy-flush operation for the `dma-modes` target: drives one {@link FlushQueue}
 * (`src/dma/flush_queue.ts`, Linux's per-domain IOVA flush queue) with pushes, time passing on a
 * {@link FakeClock}, polls and explicit flushes, and checks it against a plain model of Linux's
 * rules (`fq_full`: a ring of `size` holds `size - 1` entries before a push forces a flush; the
 * timer arms at the first queued entry and flushes `timeoutMs` later; an explicit flush of an
 * empty queue does nothing): the batches handed to the flush callback (every pfn and page count,
 * in order), `length`, `deadline`, `containsPfn` and the counters. Invalid sizes and timeouts
 * must be `RangeError`s.
 * @module
 */

import { FakeClock, FlushQueue } from "../../../src/mod.ts";
import { OracleFailure } from "../../target.ts";

/** One flush-queue operation: a size, a timeout and steps `[kind, a, b]` (naturals). */
export interface FlushQueueOp {
  /** Index into {@link FQ_SIZES} (0 and 1.5 are invalid on purpose). */
  size: number;
  /** Index into {@link FQ_TIMEOUTS} (-1 is invalid on purpose). */
  timeout: number;
  /** Steps: 0 push(pfn a, 1 + b % 4 pages), 1 tick(a % 12 ms), 2 poll, 3 flush, 4 containsPfn(a). */
  steps: [number, number, number][];
}

/** Queue sizes drawn. */
export const FQ_SIZES = [1, 2, 3, 4, 8, 0, 1.5] as const;
/** Timeouts drawn, in ms. */
export const FQ_TIMEOUTS = [0, 1, 10, -1] as const;
/** Number of step kinds. */
export const FQ_STEP_KINDS = 5;

function fail(msg: string): never {
  throw new OracleFailure("flush-queue-model", msg);
}

/**
 * Runs one {@link FlushQueueOp} against the model.
 * @returns entries queued.
 * @throws OracleFailure `flush-queue-model` on any disagreement.
 */
export function runFlushQueueOp(op: FlushQueueOp): number {
  const size = FQ_SIZES[op.size % FQ_SIZES.length];
  const timeoutMs = FQ_TIMEOUTS[op.timeout % FQ_TIMEOUTS.length];
  const valid = Number.isInteger(size) && size >= 1 && timeoutMs >= 0;
  const clock = new FakeClock(1000);
  const got: string[] = [];
  let fq: FlushQueue;
  try {
    fq = new FlushQueue((q) => {
      const batch: string[] = [];
      for (let i = 0; i < q.length; i++) batch.push(`${q.pfn(i)}+${q.pages(i)}`);
      got.push(batch.join(","));
    }, { size, timeoutMs, clock });
  } catch (e) {
    if (valid || !(e instanceof RangeError)) {
      fail(`new FlushQueue(${size}, ${timeoutMs}) threw ${e}`);
    }
    return 0;
  }
  if (!valid) fail(`new FlushQueue(${size}, ${timeoutMs}) accepted`);
  // The model.
  const want: string[] = [];
  let queue: [number, number][] = [];
  let armedAt = -1;
  const stats = { queued: 0, fullFlushes: 0, timeoutFlushes: 0, explicitFlushes: 0 };
  const flushAll = () => {
    armedAt = -1;
    if (queue.length === 0) return;
    want.push(queue.map(([p, n]) => `${p}+${n}`).join(","));
    queue = [];
  };
  const poll = () => {
    if (armedAt >= 0 && clock.now() - armedAt >= timeoutMs) {
      stats.timeoutFlushes++;
      flushAll();
      return true;
    }
    return false;
  };
  for (const [kind, a, b] of op.steps) {
    const what = `step ${kind % FQ_STEP_KINDS} (${a}, ${b}) at ${clock.now()} ms`;
    let r: boolean | undefined, m: boolean | undefined;
    switch (kind % FQ_STEP_KINDS) {
      case 0: {
        const pages = 1 + (b % 4);
        m = poll();
        if (queue.length > 0 && queue.length >= size - 1) {
          stats.fullFlushes++;
          flushAll();
          m = true;
        }
        queue.push([a, pages]);
        stats.queued++;
        if (armedAt < 0) armedAt = clock.now();
        r = fq.push(a, pages);
        break;
      }
      case 1:
        clock.advance(a % 12);
        break;
      case 2:
        m = poll();
        r = fq.poll();
        break;
      case 3:
        m = queue.length > 0;
        if (m) { // an empty queue: nothing flushed, nothing counted
          stats.explicitFlushes++;
          flushAll();
        }
        r = fq.flush();
        break;
      default:
        m = queue.some(([p, n]) => a >= p && a < p + n);
        r = fq.containsPfn(a);
    }
    if (r !== m) fail(`${what}: returned ${r}, model ${m}`);
    if (got.join("|") !== want.join("|")) {
      fail(`${what}: flushed batches [${got.join(" | ")}], model [${want.join(" | ")}]`);
    }
    const deadline = armedAt < 0 ? -1 : armedAt + timeoutMs;
    if (fq.length !== queue.length || fq.deadline !== deadline) {
      fail(
        `${what}: length ${fq.length} deadline ${fq.deadline}, model ${queue.length} ${deadline}`,
      );
    }
    for (const k of Object.keys(stats) as (keyof typeof stats)[]) {
      if (fq.stats[k] !== stats[k]) fail(`${what}: stats.${k} ${fq.stats[k]}, model ${stats[k]}`);
    }
  }
  return stats.queued;
}
