// The engine / hand-laid ratio of `deno task bench:vhost-user`: median of the per-round ratios
// (a round disturbed by load does not move it) and min-of-N, per layout.

import { assertAlmostEquals, assertEquals } from "@std/assert";
import { engineHandRatios, formatRatios } from "../../bench/vhost_user.ts";
import { CAN_RUN, skipWithout } from "./_rig.ts";

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

// The two ways the bench keeps the comparison fair on a shared machine, against real testpmd:
// `--isolate layout` (each layout in its own process) and `--paired` (engine and hand-laid ring
// in one session on two queue pairs). Both must give every layout an engine and a hand-laid
// round trip of every frame, and the per-round pairs the ratio is made of.
for (const extra of [[], ["--paired"], ["--paired", "--isolate", "none"]]) {
  Deno.test({
    name: `bench vhost-user on testpmd ${extra.join(" ") || "(default: --isolate layout)"}: ` +
      `engine and hand-laid rows for both layouts`,
    ignore: !CAN_RUN,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async () => {
      if (skipWithout("testpmd")) return;
      const dir = await Deno.makeTempDir({ prefix: "bench-vhost-" });
      try {
        const json = `${dir}/r.json`;
        const r = await new Deno.Command(Deno.execPath(), {
          args: [
            "run",
            "--allow-all",
            new URL("../../bench/vhost_user.ts", import.meta.url).pathname,
            "--backend",
            "testpmd",
            "--identity-only",
            "--rounds",
            "1",
            "--frames",
            "300",
            "--json",
            json,
            ...extra,
          ],
          stdout: "piped",
          stderr: "piped",
        }).output();
        assertEquals(r.code, 0, new TextDecoder().decode(r.stderr));
        const rep = JSON.parse(await Deno.readTextFile(json));
        for (const layout of ["split", "packed"]) {
          for (const driver of ["engine", "hand"]) {
            const row = rep.rows.find((x: Record<string, unknown>) =>
              x.layout === layout && x.driver === driver && x.op === "round-trip"
            );
            assertEquals(row?.failure, null, `${layout} ${driver}: ${JSON.stringify(row)}`);
            assertEquals(row.n, 300);
          }
          assertEquals(
            rep.ratioRounds.filter((x: { layout: string }) => x.layout === layout).length,
            1,
          );
        }
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}
