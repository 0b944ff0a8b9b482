/**
 * The real ring fixtures are bundled (tests/fixtures/): the fuzz seeds load from there by default,
 * and a campaign refuses to start (loudly, exit 2) when they cannot be loaded.
 */
import { assert, assertEquals, assertRejects, assertStringIncludes } from "@std/assert";
import fc from "fast-check";
import type { FuzzTarget } from "../../fuzz/target.ts";
import { fuzzMain } from "../../fuzz/main.ts";
import {
  loadRealRingSeeds,
  REAL_RING_SEEDS,
  REAL_RING_SEEDS_ERROR,
} from "../../fuzz/support/real_ring_seeds.ts";
import { DEFAULT_FIXTURES_DIR, fixturesDir, repoRoot } from "../../src/inspect/fixture_files.ts";
import { InspectInputError } from "../../src/inspect/inspect_error.ts";

Deno.test("real ring seeds load from the bundled fixtures (or VIRTQ_FIXTURES_DIR)", () => {
  assertEquals(REAL_RING_SEEDS_ERROR, null);
  assert(REAL_RING_SEEDS.some((s) => s.layout === "split"));
  assert(REAL_RING_SEEDS.some((s) => s.layout === "packed"));
  assertEquals(DEFAULT_FIXTURES_DIR, `${repoRoot()}/tests/fixtures/qemu-7.2-linux-6.1`);
  const env = Deno.env.get("VIRTQ_FIXTURES_DIR");
  assertEquals(fixturesDir(), env ? env : DEFAULT_FIXTURES_DIR);
});

Deno.test("loadRealRingSeeds: a directory without fixtures is an error naming the file", async () => {
  const e = await assertRejects(
    () => loadRealRingSeeds("/nonexistent-fixtures"),
    InspectInputError,
  );
  assertStringIncludes(e.message, "/nonexistent-fixtures/scenarioA.index.json");
});

Deno.test("fuzz: a campaign with a setup error (fixtures missing) refuses to start, exit 2", async () => {
  let runs = 0;
  const target: FuzzTarget<number> = {
    name: "t",
    description: "counts",
    arbitrary: () => fc.integer(),
    run: () => void runs++,
    plantedFaults: [],
  };
  const out: string[] = [];
  const err: string[] = [];
  const env = {
    targets: [target as FuzzTarget<unknown>],
    registryUrl: "file:///nonexistent.ts",
    out: (s: string) => void out.push(s),
    err: (s: string) => void err.push(s),
    isTty: false,
    cores: 1,
    setupError: "real ring fixtures not loaded from /x: gone",
  };
  assertEquals(await fuzzMain(["--runs", "3", "--workers", "0", "--seed", "1"], env), 2);
  assertEquals(runs, 0);
  assertStringIncludes(
    err.join(""),
    "refusing to start the campaign: real ring fixtures not loaded",
  );
  assertStringIncludes(err.join(""), "VIRTQ_FIXTURES_DIR");
  // --list still works.
  assertEquals(await fuzzMain(["--list"], env), 0);
});
