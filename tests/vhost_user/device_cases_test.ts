// Device campaign cases without a back-end: packed and real-ring classes are drawn only where
// they apply, classify as documented, and round-trip through the corpus schema; the packed
// hostile-driver target's ring image puts the lists where the device starts.

import { assert, assertEquals } from "@std/assert";
import fc from "fast-check";
import {
  classOf,
  deviceCaseArbitrary,
  deviceCaseSchema,
  realRingSeedsFor,
} from "../../fuzz/device/cases.ts";
import {
  PACKED_HOSTILE_MAP,
  packedHostileImage,
} from "../../fuzz/targets/packed_hostile_driver.ts";

Deno.test("device cases: packed classes only with packed, real rings from the captures", () => {
  const kinds = (packed: boolean) =>
    new Set(
      fc.sample(deviceCaseArbitrary("net", false, packed), { seed: 5, numRuns: 400 })
        .map((c) => c.kind),
    );
  assert(kinds(true).has("packed-ring"));
  assert(!kinds(false).has("packed-ring"));
  assert(kinds(false).has("real-ring"));
  assert(realRingSeedsFor("net").every((s) => s.name.includes("virtio-net")));
  assert(realRingSeedsFor("blk").every((s) => s.layout === "split"));
  for (const c of fc.sample(deviceCaseArbitrary("net", true, true), { seed: 9, numRuns: 300 })) {
    const back = deviceCaseSchema.parse(JSON.parse(JSON.stringify(c)));
    assertEquals(classOf(back), classOf(c));
    if (c.kind === "packed-ring") assert(classOf(c).startsWith("packed-"));
  }
});

Deno.test("packedHostileImage: lists from the pre-roll slot with wrap counter 1, room left", () => {
  const img = packedHostileImage({
    size: 4,
    indirect: false,
    inOrder: false,
    eventIdx: true,
    drvEvent: null,
    policy: {
      zeroLength: "reject",
      indirectWithNext: "reject",
      unknownFlags: "ignore",
      maxSegments: 65536,
    },
    preroll: 3,
    hold: false,
    reoffer: false,
    chains: [{ readable: [16], writable: [32], indirect: false, id: 7 }],
    corruption: null,
    raw: [],
  }, 16);
  assertEquals(img.start, 3);
  assertEquals([img.next, img.nextWrap], [5, 1]);
  assertEquals(img.features, 1n << 29n);
  const v = new DataView(img.bytes.buffer);
  const slot = (i: number) => PACKED_HOSTILE_MAP.ring + 16 * i;
  assertEquals(v.getUint16(slot(3) + 12, true), 7); // id
  assertEquals(v.getUint16(slot(3) + 14, true), 0x80 | 1); // AVAIL, NEXT
  assertEquals(v.getUint16(slot(4) + 14, true), 0x80 | 2); // AVAIL, WRITE
  assertEquals(v.getUint32(slot(4) + 8, true), 32);
  assertEquals(v.getBigUint64(slot(2), true), 0n); // before the start: empty
});
