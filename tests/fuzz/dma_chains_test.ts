/**
 * `dma-chains` fires on DMA bugs of its classes planted from the outside: a strict IOMMU unmap
 * that skips the IOTLB invalidation (a buffer unmapped while in flight stays reachable), and an
 * IOMMU page walk that ignores the entry's permission bits.
 * @module
 */

import fc from "fast-check";
import { assert, assertEquals } from "@std/assert";
import { dmaChainsTarget } from "../../fuzz/targets/dma_chains.ts";
import { patchMethod, plantedTarget } from "../../fuzz/plant.ts";
import { IoPageTable, Iotlb } from "../../src/dma/mod.ts";
import type { FuzzTarget } from "../../fuzz/target.ts";

function firstFailure<I>(target: FuzzTarget<I>, runs = 3000): string | null {
  const r = fc.check(fc.property(target.arbitrary(), (i) => target.run(i)), {
    seed: 1,
    numRuns: runs,
  });
  return r.failed ? String(r.errorInstance) : null;
}

Deno.test("dma-chains: the real engine passes (seed 1)", () => {
  assertEquals(firstFailure(dmaChainsTarget, 1000), null);
});

Deno.test("dma-chains: a strict unmap that skips the IOTLB invalidation is caught", () => {
  // Both invalidation entry points: by byte range and by page number (the unmap fast path).
  const broken = plantedTarget(dmaChainsTarget, () => {
    const a = patchMethod(Iotlb.prototype, "invalidateRange", () => function () {});
    const b = patchMethod(Iotlb.prototype, "invalidatePages", () => function () {});
    return () => {
      b();
      a();
    };
  });
  const f = firstFailure(broken);
  assert(f !== null && f.includes("dma-outcome"), String(f));
});

Deno.test("dma-chains: a page walk that grants read and write is caught", () => {
  // Both walk entry points: by IOVA and by page number (the IOTLB-miss fast path).
  const broken = plantedTarget(dmaChainsTarget, () => {
    const a = patchMethod(
      IoPageTable.prototype,
      "walk",
      (orig) =>
        function (this: IoPageTable, ...a: Parameters<IoPageTable["walk"]>) {
          const ok = orig.apply(this, a);
          if (ok) a[1].perm = 3;
          return ok;
        },
    );
    const b = patchMethod(
      IoPageTable.prototype,
      "walkPage",
      (orig) =>
        function (this: IoPageTable, ...a: Parameters<IoPageTable["walkPage"]>) {
          const ok = orig.apply(this, a);
          if (ok) a[1].perm = 3;
          return ok;
        },
    );
    return () => {
      b();
      a();
    };
  });
  const f = firstFailure(broken);
  assert(f !== null && f.includes("dma-outcome"), String(f));
});
