/**
 * Time sources for the DMA models that act on time (the lazy-invalidation flush queue's timeout).
 *
 * Models never sleep: they read a {@link Clock} when an operation happens (map, unmap, an explicit
 * poll) and act on elapsed time. Tests and fuzzers inject a {@link FakeClock} and advance it by
 * hand, so a 10 ms timeout is deterministic and instant.
 *
 * @module
 */

/** A time source in milliseconds. */
export interface Clock {
  /**
   * Current time in milliseconds (arbitrary origin; may be fractional). Models only compare
   * differences against timeouts; a clock stepping backwards merely delays a timer.
   */
  now(): number;
}

/**
 * The real clock (`performance.now()`: fractional milliseconds since the isolate started), for
 * interactive runs and benches. The flush queue reads it on every map and unmap, so it must not
 * allocate: `Date.now()` returns a fresh heap number each call (a wall-clock value above 2^31, 16 B
 * per read, 32 B per lazy unmap+map, measured with heap deltas), while `performance.now()` is a
 * fast call returning an unboxed double (0 B). It costs more CPU per read than `Date.now()` on this
 * machine (~110 vs ~60 ns), the price of an allocation-free mapping path.
 */
export const SYSTEM_CLOCK: Clock = Object.freeze({ now: () => performance.now() });

/** Reads of {@link TICK_CLOCK} between two reads of the real clock. */
export const TICK_CLOCK_READS = 256;

/**
 * A coarse real clock, the default of the flush queue (which, given this clock, keeps the same
 * tick itself, counting its own timer checks, to save the call per check): like Linux's `jiffies` (a tick-updated
 * counter, read with a load) it is cheap to read and lags real time a little. It reads
 * `performance.now()` once every {@link TICK_CLOCK_READS} calls and returns the last value in
 * between, so a lazy map+unmap pays a hundred-and-twenty-eighth of a clock read instead of two
 * (~130-270 ns each on this machine; at 16 reads the clock was still ~4% of a lazy-mode round
 * trip, at 64 ~2%, ~6 ns of a ~280 ns chain, profiled). A timed flush comes at most
 * `TICK_CLOCK_READS - 1` operations late (~40-75 us at ~150-300 ns per operation, against a
 * 10 ms timeout; Linux's own timer runs on jiffies of 1-4 ms); deterministic runs inject a
 * {@link FakeClock} anyway.
 */
export const TICK_CLOCK: Clock = (() => {
  let n = 0;
  let t = performance.now();
  return Object.freeze({
    now: () => {
      n = (n + 1) & (TICK_CLOCK_READS - 1);
      if (n === 0) t = performance.now();
      return t;
    },
  });
})();

/** A clock that only moves when told to, for deterministic tests and fuzzing. */
export class FakeClock implements Clock {
  #now: number;
  /** Creates a fake clock.
   * @param start initial time in milliseconds (default 0). */
  constructor(start = 0) {
    this.#now = start;
  }
  /** Current fake time in milliseconds. */
  now(): number {
    return this.#now;
  }
  /**
   * Moves time forward.
   * @param ms milliseconds to add, a finite number >= 0.
   * @throws RangeError when `ms` is negative or not finite (time never goes back).
   */
  advance(ms: number): void {
    if (!(ms >= 0) || !Number.isFinite(ms)) throw new RangeError(`cannot advance by ${ms} ms`);
    this.#now += ms;
  }
}
