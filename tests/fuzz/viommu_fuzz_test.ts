import fc from "fast-check";
import { TARGETS } from "../../fuzz/targets/mod.ts";
import { viommuRequestsTarget } from "../../fuzz/targets/viommu_requests.ts";
import { viommuStackTarget } from "../../fuzz/targets/viommu_stack.ts";
import { assertEquals } from "@std/assert";

Deno.test("fuzz viommu-requests: fixed seed, model oracle holds", () => {
  fc.assert(fc.property(viommuRequestsTarget.arbitrary(), (i) => viommuRequestsTarget.run(i)), {
    seed: 0x5eed,
    numRuns: 300,
  });
});

Deno.test("fuzz viommu-stack: fixed seed, data intact and faults outside mappings", () => {
  fc.assert(fc.property(viommuStackTarget.arbitrary(), (i) => viommuStackTarget.run(i)), {
    seed: 0x5eed,
    numRuns: 200,
  });
});

Deno.test("fuzz registry lists the viommu targets once", () => {
  const names = TARGETS.map((t) => t.name);
  assertEquals(names.filter((n) => n.startsWith("viommu-")).sort(), [
    "viommu-hostile-device",
    "viommu-requests",
    "viommu-stack",
  ]);
});
