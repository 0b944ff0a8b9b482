import { assertEquals } from "@std/assert";
import fc from "fast-check";
import { type DmaModesInput, dmaModesTarget, runDmaModes } from "../../fuzz/targets/dma_modes.ts";
import { TARGETS } from "../../fuzz/targets/mod.ts";

Deno.test("fuzz dma-modes: registered, and a fixed-seed campaign holds every oracle", () => {
  assertEquals(TARGETS.includes(dmaModesTarget), true);
  fc.assert(fc.property(dmaModesTarget.arbitrary(), (i) => dmaModesTarget.run(i)), {
    seed: 4,
    numRuns: 150,
  });
});

Deno.test("fuzz dma-modes: the lazy window is reported, not failed; strict faults at once", () => {
  const ops: DmaModesInput["ops"] = [
    { k: "map", slot: 1, off: 0, len: 64, dir: 0 },
    { k: "read", which: 0, off: 0, len: 8 }, // caches the IOTLB entry
    { k: "unmap", which: 0 },
    { k: "dead", which: 0, off: 0, unmap: false }, // device access after unmap
  ];
  const lazy = runDmaModes({ mode: "iommu-lazy", ops });
  assertEquals(lazy.staleAccesses, 1);
  const strict = runDmaModes({ mode: "iommu-strict", ops });
  assertEquals([strict.staleAccesses, strict.faults], [0, 1]);
  const later = runDmaModes({
    mode: "iommu-lazy",
    ops: [...ops.slice(0, 3), { k: "tick", ms: 10 }, ops[3]],
  });
  assertEquals([later.staleAccesses, later.faults], [0, 1]);
});

Deno.test("fuzz dma-modes: corpus entries round-trip through encode/decode", () => {
  const input: DmaModesInput = {
    mode: "confidential-iommu",
    ops: [{ k: "map", slot: 0, off: 5, len: 100, dir: 2 }, { k: "tick", ms: 1 }],
  };
  assertEquals(
    dmaModesTarget.decode!(JSON.parse(JSON.stringify(dmaModesTarget.encode!(input)))),
    input,
  );
});
