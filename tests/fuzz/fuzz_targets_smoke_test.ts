import { assert, assertEquals } from "@std/assert";
import fc from "fast-check";
import { TARGETS } from "../../fuzz/targets/mod.ts";

Deno.test("fuzz registry: names are unique kebab-case", () => {
  const names = TARGETS.map((t) => t.name);
  assertEquals(new Set(names).size, names.length);
  for (const n of names) assert(/^[a-z0-9]+(-[a-z0-9]+)*$/.test(n), n);
});

for (const t of TARGETS) {
  Deno.test(`fuzz target ${t.name}: 300 fixed-seed runs hold every oracle`, () => {
    fc.assert(fc.property(t.arbitrary(), (i) => t.run(i)), { seed: 42, numRuns: 300 });
  });
  if (t.encode && t.decode) {
    Deno.test(`fuzz target ${t.name}: encode/decode round-trips through JSON`, () => {
      for (const i of fc.sample(t.arbitrary(), { seed: 7, numRuns: 50 })) {
        const json = JSON.parse(JSON.stringify(t.encode!(i)));
        const back = t.decode!(json);
        assertEquals(JSON.stringify(t.encode!(back)), JSON.stringify(json));
        t.run(back);
      }
    });
  }
}
