import { assertEquals, assertThrows } from "@std/assert";
import {
  isValidSplitQueueSize,
  splitAvailEventOffset,
  splitAvailRingSize,
  splitDescTableSize,
  splitDriverFootprint,
  splitDriverPlacement,
  splitRingLayout,
  splitUsedEventOffset,
  splitUsedRingSize,
  vringNeedEvent,
  vringSize,
} from "../../../src/mod.ts";

Deno.test("split layout: 256-entry known answers (spec §2.7 size table)", () => {
  assertEquals(splitDescTableSize(256), 4096);
  assertEquals(splitAvailRingSize(256), 518);
  assertEquals(splitUsedRingSize(256), 2054);
  assertEquals(splitUsedEventOffset(256), 516);
  assertEquals(splitAvailEventOffset(256), 2052);
  assertEquals(vringSize(256, 4096), 10246);
  const l = splitRingLayout(256, 4096);
  assertEquals([l.descOffset, l.availOffset, l.usedOffset, l.totalBytes], [0, 4096, 8192, 10246]);
  const m = splitRingLayout(256);
  assertEquals([m.availOffset, m.usedOffset, m.totalBytes], [4096, 4616, 6670]);
});

Deno.test("split layout: other known answers", () => {
  assertEquals(splitDescTableSize(1), 16);
  assertEquals(splitAvailRingSize(1), 8);
  assertEquals(splitUsedRingSize(1), 14);
  assertEquals(splitUsedRingSize(32768), 6 + 8 * 32768);
  // Linux vring_size(128, 4096): 2048 + 262 -> 4096, + 1030 = 5126.
  assertEquals(vringSize(128, 4096), 5126);
  // A used ring after an avail ring of odd length is 4-aligned: 16 + 8 = 24 (already aligned);
  // size 2: 32 + 10 = 42 -> 44.
  assertEquals(splitRingLayout(2).usedOffset, 44);
});

Deno.test("split layout: queue size rule (power of 2, 1..32768)", () => {
  for (const n of [1, 2, 4, 256, 1024, 32768]) assertEquals(isValidSplitQueueSize(n), true);
  for (const n of [0, 3, 6, 255, 32767, 65536, -2, 1.5, NaN]) {
    assertEquals(isValidSplitQueueSize(n), false, String(n));
  }
  assertThrows(() => splitRingLayout(3), RangeError);
});

Deno.test("split driver footprint: rings + indirect arena, page-rounded", () => {
  const p = splitDriverPlacement(256, 1n << 28n);
  assertEquals(p.arenaOffset, 6672); // 6670 -> 16-aligned
  assertEquals(p.indirectEntries, 16);
  assertEquals(p.totalBytes, Math.ceil((6672 + 256 * 16 * 16) / 4096) * 4096);
  assertEquals(splitDriverFootprint(256, 0n), 8192);
});

Deno.test("vringNeedEvent truth table (spec §2.7.10)", () => {
  // (event, new, old) -> notify iff old < event + 1 <= new, in u16 arithmetic.
  const cases: [number, number, number, boolean][] = [
    [0, 1, 0, true], // crossing event 0
    [0, 0, 0, false], // nothing new
    [1, 1, 0, false], // event 1 not yet reached (needs new > 1)
    [1, 2, 0, true],
    [5, 10, 6, false], // event already passed before old
    [5, 6, 5, true], // exactly event + 1
    [9, 10, 0, true],
    [10, 10, 0, false],
    [0xffff, 0, 0xffff, true], // wrap: event 65535 crossed going 65535 -> 0
    [0xffff, 1, 0xfffe, true],
    [0xfffe, 1, 0xffff, false],
    [3, 2, 0xfff0, false],
  ];
  for (const [e, n, o, want] of cases) {
    assertEquals(vringNeedEvent(e, n, o), want, `e=${e} new=${n} old=${o}`);
  }
});
