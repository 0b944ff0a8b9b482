/**
 * The topology target's independent reference: it agrees with the rings and the plan on the
 * presets, and caught a plan that called an unattached virtio-iommu endpoint with boot bypass
 * "blocked" (views disagree) while its data passed untranslated (fixed in policy_device.ts).
 * @module
 */

import { assertEquals } from "@std/assert";
import { parseTopology, planTopology, PRESETS, type TopologyInput } from "../../src/mod.ts";
import { topologyTarget } from "../../fuzz/targets/topology.ts";
import { referenceVerdict } from "../../fuzz/support/topology_reference.ts";

Deno.test("topology reference: an unattached virtio-iommu endpoint with boot bypass passes", () => {
  for (const name of ["viommu-boot-bypass", "viommu-v0-9-driver-final-device"]) {
    const t = parseTopology(PRESETS[name], name);
    const net = planTopology(t).find((p) => p.device.id === "net0")!;
    assertEquals(referenceVerdict(t, net).intact, true);
    assertEquals(net.agree, true, `${name}: the plan must say the views agree`);
    topologyTarget.run(PRESETS[name] as TopologyInput);
  }
});

Deno.test("topology reference: agrees with every preset's plan", () => {
  for (const [name, input] of Object.entries(PRESETS)) {
    const t = parseTopology(input, name);
    for (const p of planTopology(t)) {
      if (p.probe.status !== "ok") continue;
      assertEquals(referenceVerdict(t, p).intact, p.agree, `${name}/${p.device.id}`);
    }
  }
});
