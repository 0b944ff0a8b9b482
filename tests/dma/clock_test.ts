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
