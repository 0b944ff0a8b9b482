import { assert, assertEquals } from "@std/assert";
import fc from "fast-check";
import { ScratchMemory } from "../../fuzz/support/scratch_memory.ts";
import {
  runHostileDriver,
  splitHostileDriver,
  splitHostileDriverScratch,
} from "../../fuzz/targets/split_hostile_driver.ts";
import {
  packedHostileDriver,
  packedHostileDriverScratch,
} from "../../fuzz/targets/packed_hostile_driver.ts";
import type { FuzzTarget } from "../../fuzz/target.ts";

Deno.test("ScratchMemory.clean zeroes the fixed range and noted writes across regions", () => {
  const s = new ScratchMemory([{ gpa: 0, size: 0x2000 }, { gpa: 0x2000, size: 0x2000 }], 0x100);
  s.memory.write(0x10, new Uint8Array([1, 2, 3]));
  s.memory.write(0x1ff0, new Uint8Array(0x10).fill(7));
  s.memory.write(0x2000, new Uint8Array(0x10).fill(7));
  s.noteWrite(0x1ff0, 0x20); // one noted range across the two regions
  assert(!s.isClean());
  s.clean();
  assert(s.isClean());
  s.memory.write(0x3000, new Uint8Array([9])); // neither fixed nor noted: stays dirty
  s.clean();
  assertEquals(s.memory.readU8(0x3000), 9);
});

for (
  const [target, scratch] of [
    [splitHostileDriver, splitHostileDriverScratch],
    [packedHostileDriver, packedHostileDriverScratch],
  ] as [FuzzTarget<unknown>, ScratchMemory][]
) {
  Deno.test(`${target.name}: every run leaves its scratch memory all-zero`, () => {
    const before = target.workDone!();
    for (const input of fc.sample(target.arbitrary(), { numRuns: 150, seed: 7 })) {
      target.run(input);
      assert(scratch.isClean(), `dirty after ${JSON.stringify(input)}`);
    }
    assert(target.workDone!() > before, "workDone counts chains");
    assertEquals(target.workUnit, "chains");
  });
}

Deno.test("split-hostile-driver: a thrown oracle failure still cleans the scratch memory", () => {
  // An input whose build fails is impossible; instead check clean() runs on the normal path
  // for a run with payload copies (writable segments), the bytes most likely to leak.
  runHostileDriver({
    size: 4,
    indirect: false,
    inOrder: false,
    eventIdx: false,
    usedEvent: 0,
    wide: false,
    policy: {
      zeroLength: "reject",
      indirectWithNext: "reject",
      unknownFlags: "ignore",
      maxSegments: 65536,
    },
    permSeed: 1,
    chains: [{ readable: [64], writable: [64], indirectAt: -1 }],
    corruption: { kind: "none", chain: 0, at: 0, value: 0 },
    raw: null,
  });
  assert(splitHostileDriverScratch.isClean());
});
