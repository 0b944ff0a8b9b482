import { assert, assertEquals, assertThrows } from "@std/assert";
import fc from "fast-check";
import { GuestMemory, Iommu } from "../../src/mod.ts";
import {
  activationArbitrary,
  checkActivation,
  predictActivation,
} from "../../fuzz/support/activation.ts";
import { DMA_EDGE_KINDS, DMA_EDGES, runDmaEdge } from "../../fuzz/support/dma_edges.ts";
import { patchMethod } from "../../fuzz/plant.ts";
import { OracleFailure } from "../../fuzz/target.ts";

const memories = {
  split: () => new GuestMemory([{ gpa: 0, size: 0x20000 }, { gpa: 0x20000, size: 0x20000 }]),
  packed: () => GuestMemory.flat(0x20000),
};

for (const layout of ["split", "packed"] as const) {
  Deno.test(`activation (${layout}): engine agrees with the reference; every outcome is drawn`, () => {
    const memory = memories[layout]();
    const seen = new Set<string>();
    const arb = activationArbitrary(layout, memory.regions.at(-1)!.end);
    for (const a of fc.sample(arb, { numRuns: 1500, seed: 11 })) {
      seen.add(JSON.stringify(predictActivation(layout, memory, a)));
      checkActivation(layout, memory, a);
    }
    for (
      const want of [
        '{"code":"OK"}',
        '{"code":"QUEUE_SIZE_INVALID"}',
        '{"code":"RING_MISALIGNED"}',
        '{"code":"RING_UNMAPPED","cause":"MEMORY_FAULT"}',
        '{"code":"RING_UNMAPPED","cause":"DMA_FAULT(unmapped)"}',
        '{"code":"RING_UNMAPPED","cause":"DMA_FAULT(not-contiguous)"}',
      ]
    ) assert(seen.has(want), `${want} never drawn`);
  });

  Deno.test(`activation (${layout}): a planted bug (resolve accepts any range) is reported`, () => {
    const memory = memories[layout]();
    // An area past the end of memory: the reference says RING_UNMAPPED (memory fault).
    const a = {
      size: 4,
      desc: 0x1f000,
      driver: 0x40000,
      device: 0x100,
      iommu: null,
      block: null,
      negotiation: {
        offered: "300000000",
        wanted: "100000000",
        deviceRequiresAccessPlatform: true,
        driverRequiresAccessPlatform: false,
        xen: false,
      },
    };
    assertEquals(predictActivation(layout, memory, a), {
      code: "RING_UNMAPPED",
      cause: "MEMORY_FAULT",
    });
    const restore = patchMethod(
      GuestMemory.prototype,
      "resolve",
      () =>
        function (this: GuestMemory) {
          return this.regions[0];
        },
    );
    try {
      // the engine then builds views past the region (uncatalogued throw) or accepts the ring
      assertThrows(() => checkActivation(layout, memory, a), OracleFailure, "activation-");
    } finally {
      restore();
    }
  });
}

Deno.test("dma edges: each kind fails with exactly its DmaMapError reason", () => {
  const got = new Set<string>();
  for (let k = 0; k < DMA_EDGE_KINDS; k++) {
    for (const n of [0, 1, 2, 4097, 0xffff]) got.add(runDmaEdge(k, n));
  }
  assertEquals([...got].sort(), DMA_EDGES.map(([, r]) => r as string).sort());
});

Deno.test("dma edges: a planted bug (no reserved regions) is reported", () => {
  const restore = patchMethod(Iommu.prototype, "overlapsReserved", () => () => false);
  try {
    assertThrows(() => runDmaEdge(4, 0), OracleFailure, "edge-outcome");
  } finally {
    restore();
  }
});
