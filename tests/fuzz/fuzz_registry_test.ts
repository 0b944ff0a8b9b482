import { assertEquals } from "@std/assert";
import { TARGETS } from "../../fuzz/targets/mod.ts";
import { registryProblems, unregisteredTargets } from "../../fuzz/registry.ts";

Deno.test("registry: every target in fuzz/targets/ is registered once, kebab-case, described", async () => {
  assertEquals(registryProblems(TARGETS), []);
  assertEquals(
    await unregisteredTargets(new URL("../../fuzz/targets/", import.meta.url), TARGETS),
    [],
  );
});
