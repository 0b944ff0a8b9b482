// The engine / hand-laid ratio of `deno task bench:vhost-user`: median of the per-round ratios
// (a round disturbed by load does not move it) and min-of-N, per layout.

import { assertAlmostEquals, assertEquals } from "@std/assert";
import { engineHandRatios, formatRatios } from "../../bench/vhost_user.ts";

Deno.test("engine/hand ratios: median of rounds ignores one disturbed round; min-of-N", () => {
  const r = engineHandRatios([
    { layout: "split", engineUs: 1.0, handUs: 1.0 },
    { layout: "split", engineUs: 9.0, handUs: 1.0 }, // a round under load
    { layout: "split", engineUs: 1.1, handUs: 1.0 },
    { layout: "packed", engineUs: 2.0, handUs: 1.6 },
    { layout: "packed", engineUs: 1.5, handUs: 0 }, // the hand-laid side failed: skipped
  ]);
  assertEquals(r.map((x) => x.layout), ["split", "packed"]);
  assertAlmostEquals(r[0].medianOfRounds, 1.1, 1e-9);
  assertAlmostEquals(r[0].minOfN, 1.0, 1e-9);
  assertEquals(r[1].perRound.length, 1);
  assertAlmostEquals(r[1].medianOfRounds, 1.25, 1e-9);
  const text = formatRatios(r);
  assertEquals(text.split("\n").length, 2);
  assertEquals(/split: median of 3 rounds 1\.100x, min-of-N 1\.000x/.test(text), true, text);
});

Deno.test("engine/hand ratios: even number of rounds takes the middle pair's mean", () => {
  const [s] = engineHandRatios([
    { layout: "split", engineUs: 1, handUs: 1 },
    { layout: "split", engineUs: 2, handUs: 1 },
  ]);
  assertAlmostEquals(s.medianOfRounds, 1.5, 1e-9);
  assertEquals(engineHandRatios([]), []);
});
