/**
 * The DMA models' clocks: TICK_CLOCK's read-every-N contract (the cost the lazy flush queue's
 * default clock is built for) and FakeClock.
 */
import { assert, assertEquals, assertThrows } from "@std/assert";
import { FakeClock, TICK_CLOCK, TICK_CLOCK_READS } from "../../src/dma/mod.ts";

Deno.test("TICK_CLOCK reads the real clock once every TICK_CLOCK_READS reads", () => {
  // Real time moves between every two reads (spin until performance.now() changes), so a clock
  // that read it each time would give a new value each time; TICK_CLOCK's value may change
  // only at the one read in TICK_CLOCK_READS that refreshes it.
  const reads = 4 * TICK_CLOCK_READS;
  const values: number[] = [];
  for (let i = 0; i < reads; i++) {
    values.push(TICK_CLOCK.now());
    const t = performance.now();
    while (performance.now() === t) { /* spin: real time moves on */ }
  }
  const changes = values.filter((v, i) => i > 0 && v !== values[i - 1]).length;
  assert(changes >= 3 && changes <= 4, `${changes} changes in ${reads} reads`);
  for (let i = 1; i < reads; i++) assert(values[i] >= values[i - 1], "never steps back");
});

Deno.test("FakeClock moves only when advanced, never back", () => {
  const c = new FakeClock(5);
  assertEquals(c.now(), 5);
  c.advance(2.5);
  assertEquals(c.now(), 7.5);
  assertThrows(() => c.advance(-1), RangeError);
  assertThrows(() => c.advance(Infinity), RangeError);
});

Deno.test("flush queue on the default TICK_CLOCK: a timed flush within TICK_CLOCK_READS checks", async () => {
  const { FlushQueue } = await import("../../src/dma/mod.ts");
  let flushes = 0;
  const fq = new FlushQueue(() => flushes++, { timeoutMs: 2 }); // default clock: TICK_CLOCK
  fq.push(1, 1);
  assertEquals(fq.poll(), false); // armed, not expired
  const t0 = performance.now();
  while (performance.now() - t0 < 4) { /* spin past the timeout */ }
  // the queue reads the real clock once every TICK_CLOCK_READS checks: the flush comes at the
  // latest then, once
  let checks = 0;
  while (!fq.poll()) {
    checks++;
    assert(checks < TICK_CLOCK_READS, `no timed flush after ${checks} checks`);
  }
  assertEquals([flushes, fq.stats.timeoutFlushes, fq.length, fq.deadline], [1, 1, 0, -1]);
  assertEquals(fq.poll(), false); // disarmed
  // a zero timeout reads the clock at every check: the next check flushes
  const fq0 = new FlushQueue(() => flushes++, { timeoutMs: 0 });
  fq0.push(1, 1);
  assertEquals(fq0.poll(), true);
});
