import { assert, assertEquals, assertMatch, assertStringIncludes } from "@std/assert";
import fc from "fast-check";
import { describeOutput, describeValue, isByteKey } from "../../fuzz/describe.ts";
import { splitHostileDriver } from "../../fuzz/targets/split_hostile_driver.ts";

Deno.test("describe: 'writable' and 'readable' lists are numbers, not hex dumps; descriptorTable is bytes", () => {
  assert(!isByteKey("writable"));
  assert(!isByteKey("readable"));
  assert(isByteKey("descriptorTable"));
  assert(isByteKey("raw_bytes"));
  assert(isByteKey("ring"));
  const s = describeValue({ writable: [1], descriptorTable: [1, 2, 3] });
  assertStringIncludes(s, "writable: [1]");
  assertMatch(s, /descriptorTable: bytes\(3\)\n\s+00000000 {2}01 02 03/);
});

Deno.test("describe: split-hostile-driver shows the ring the input builds, decoded and as hex", () => {
  assert(splitHostileDriver.describe !== undefined, "the ring target has describe");
  const describe = (i: unknown) => splitHostileDriver.describe!(i as never);
  const inputs = fc.sample(splitHostileDriver.arbitrary(), { seed: 3, numRuns: 30 })
    .filter((i) => typeof i === "object" && i !== null && "chains" in i);
  assert(inputs.length > 0);
  const text = describeOutput(describe(inputs[0]));
  assertStringIncludes(text, "inspected:");
  assertStringIncludes(text, "descriptorArea:");
  assertStringIncludes(text, "driverArea:");
  assertMatch(text, /layout: "split"/);
  assertMatch(text, /[0-9a-f]{2} [0-9a-f]{2} [0-9a-f]{2}/, "hex bytes");
  // describing twice gives the same text (the scratch memory is cleaned)
  assertEquals(describeOutput(describe(inputs[0])), text);
});

Deno.test("describe: packed-hostile-driver shows the packed ring as the run left it", async () => {
  const { packedHostileDriver } = await import("../../fuzz/targets/packed_hostile_driver.ts");
  assert(packedHostileDriver.describe !== undefined);
  const input = fc.sample(packedHostileDriver.arbitrary(), { seed: 5, numRuns: 30 })
    .find((i) => typeof i === "object" && i !== null && "preroll" in i);
  assert(input !== undefined);
  const text = describeOutput(packedHostileDriver.describe!(input as never));
  assertStringIncludes(text, "inspected:");
  assertMatch(text, /layout: "packed"/);
  assertStringIncludes(text, "descriptorArea:");
  assertEquals(describeOutput(packedHostileDriver.describe!(input as never)), text);
});
