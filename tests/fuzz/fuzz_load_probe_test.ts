import { assert, assertEquals, assertStringIncludes } from "@std/assert";
import { probeLoad } from "../../fuzz/load_probe.ts";

Deno.test("load watchdog: a registry that hangs at module load is reported within the limit", async () => {
  const t0 = performance.now();
  const r = await probeLoad(new URL("./_hanging_registry.ts", import.meta.url).href, 2);
  if (r.ok) throw new Error("loaded");
  assertStringIncludes(r.why, "did not finish loading within 2 s");
  assert(performance.now() - t0 < 30_000);
});

Deno.test("load watchdog: a registry that throws at load is reported; the real one loads", async () => {
  const bad = await probeLoad(new URL("./_throwing_registry.ts", import.meta.url).href, 60);
  if (bad.ok) throw new Error("loaded");
  assertStringIncludes(bad.why, "seed build failed");
  const good = await probeLoad(new URL("./fuzz_examples.ts", import.meta.url).href, 60);
  assertEquals(good, { ok: true, targets: 2 });
});
