import { assert, assertEquals } from "@std/assert";
import { allocCases, isHotPath, measureAlloc } from "../bench/alloc.ts";
import { createBenchable } from "../bench/engines.ts";
import { BASE } from "../bench/cases.ts";

Deno.test("alloc: an allocating round trip is caught; the speed-of-light loop allocates nothing", () => {
  const sink: unknown[] = [];
  let k = 0;
  const allocating = {
    chainsPerCall: 32,
    descriptorsPerCall: 32,
    bytesPerCall: 0,
    run: () => {
      for (let i = 0; i < 32; i++) sink[(k++) & 1023] = { a: i, b: [i, i + 1, i + 2] };
      return 32;
    },
  };
  const bad = measureAlloc("allocating", allocating);
  assert(bad.bytesPerChain === null || bad.bytesPerChain > 16, String(bad.bytesPerChain));
  const sol = measureAlloc("sol", createBenchable({ ...BASE, engine: "sol" }));
  assert(sol.bytesPerChain !== null && sol.bytesPerChain < 1, String(sol.bytesPerChain));
});

Deno.test("alloc: hot-path cases are held to zero, per-buffer mapping modes are information", () => {
  assert(isHotPath({ ...BASE }) && isHotPath({ ...BASE, dma: "iommu-hit" }));
  assert(!isHotPath({ ...BASE, dma: "iommu-strict" }) && !isHotPath({ ...BASE, dma: "swiotlb" }));
  assertEquals(allocCases(true).length, 3);
  const full = allocCases(false);
  assert(full.some((p) => p.engine === "packed" && p.dma === "virtio-iommu"));
  assert(full.some((p) => p.engine === "split" && p.indirect));
});
