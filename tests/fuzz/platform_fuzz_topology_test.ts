import { assert, assertEquals, assertThrows } from "@std/assert";
import fc from "fast-check";
import { OracleFailure } from "../../fuzz/target.ts";
import { TARGETS } from "../../fuzz/targets/mod.ts";
import { findDisagreements, topologyTarget } from "../../fuzz/targets/topology.ts";
import { parseTopology, PRESETS, resolveTopology, type TopologyInput } from "../../src/mod.ts";

Deno.test("fuzz topology: registered, and its oracles hold on a fixed-seed campaign", () => {
  assert(TARGETS.includes(topologyTarget));
  fc.assert(fc.property(topologyTarget.arbitrary(), (t) => topologyTarget.run(t)), {
    seed: 20261121,
    numRuns: 250,
  });
});

Deno.test("fuzz topology: encode/decode round-trip; decode rejects an invalid topology", () => {
  const [input] = fc.sample(topologyTarget.arbitrary(), { seed: 3, numRuns: 1 });
  const json = JSON.parse(JSON.stringify(topologyTarget.encode!(input)));
  assertEquals(topologyTarget.decode!(json), input);
  assertThrows(() => topologyTarget.decode!({ name: "x", title: "t" }));
});

Deno.test("fuzz topology: the consistency oracle fires on a planted host bug", () => {
  const strict = PRESETS["q35-intel-iommu-platform-strict"] as TopologyInput;
  topologyTarget.run(strict); // clean
  const broken = topologyTarget.withPlantedFault!("device-ignores-iommu");
  const e = assertThrows(() => broken.run(strict), OracleFailure);
  assertEquals(e.oracle, "consistent-not-intact");
  // E25's injected UNMAP is a known disagreement, so the oracle stays quiet there.
  topologyTarget.run(PRESETS["viommu-split-unmap-qemu"] as TopologyInput);
});

Deno.test("fuzz topology: each kind of disagreement is written as a replayable counterexample", async () => {
  const found = findDisagreements(7, 150);
  assert(found.size >= 10, `only ${found.size} kinds`);
  const dir = await Deno.makeTempDir({ prefix: "virtq-topology-findings-" });
  try {
    for (const t of found.values()) {
      await Deno.writeTextFile(`${dir}/${t.name}.json`, JSON.stringify(t, null, 2));
    }
    // Replay from disk as `deno task explain <file>` does: each resolves to its recorded verdict.
    for (const t of found.values()) {
      const json = JSON.parse(await Deno.readTextFile(`${dir}/${t.name}.json`));
      const topo = parseTopology(json, `${t.name}.json`);
      const r = resolveTopology(topo);
      for (const [id, e] of Object.entries(topo.expect)) {
        const d = r.devices.find((x) => x.id === id)!;
        assertEquals(d.observed.verdict, e.verdict, `${t.name}: ${t.title}`);
        if (e.layer) assertEquals(d.observed.layer, e.layer);
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
