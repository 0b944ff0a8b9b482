import fc from "fast-check";
import { packedHostileDriver } from "../../fuzz/targets/packed_hostile_driver.ts";
import { packedHostileDevice } from "../../fuzz/targets/packed_hostile_device.ts";
import { differential } from "../../fuzz/targets/differential.ts";
import { modelPacked } from "../../fuzz/targets/model_packed.ts";

Deno.test("fuzz packed-hostile-driver: 300 runs, seed 42", () => {
  const t = packedHostileDriver;
  fc.assert(fc.property(t.arbitrary(), (i) => t.run(i)), { seed: 42, numRuns: 300 });
});

Deno.test("fuzz packed-hostile-driver: encode/decode round trip", () => {
  const t = packedHostileDriver;
  fc.assert(
    fc.property(t.arbitrary(), (i) => {
      const j = JSON.parse(JSON.stringify(t.encode!(i)));
      t.run(t.decode!(j));
    }),
    { seed: 7, numRuns: 50 },
  );
});

Deno.test("fuzz packed-hostile-device: 300 runs, seed 42", () => {
  const t = packedHostileDevice;
  fc.assert(fc.property(t.arbitrary(), (i) => t.run(i)), { seed: 42, numRuns: 300 });
});

Deno.test("fuzz differential (split vs packed): 300 runs, seed 42", () => {
  const t = differential;
  fc.assert(fc.property(t.arbitrary(), (i) => t.run(i)), { seed: 42, numRuns: 300 });
});

Deno.test("fuzz model-packed (fc.commands): 150 runs, seed 42", () => {
  const t = modelPacked;
  fc.assert(fc.property(t.arbitrary(), (i) => t.run(i)), { seed: 42, numRuns: 150 });
});
