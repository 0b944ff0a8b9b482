/**
 * Every oracle can fail: for each target offering planted bugs (`plantedFaults` +
 * `withPlantedFault`, see docs/FUZZING.md), a short fixed-seed campaign on the broken copy must
 * report a failure within RUNS runs (run-bounded, so the outcome never depends on machine speed),
 * while the example targets stay clean on the same budget.
 */
import { assert, assertEquals } from "@std/assert";
import type { FuzzTarget } from "../../fuzz/target.ts";
import { TARGETS } from "../../fuzz/targets/mod.ts";
import { runUnit } from "../../fuzz/runner.ts";
import { TARGETS as EXAMPLES } from "./fuzz_examples.ts";
import { patchMethod, plantedTarget } from "../../fuzz/plant.ts";
import { GuestMemory } from "../../src/memory/guest_memory.ts";
import type { Chain } from "../../src/virtio/chain.ts";
import { SplitDeviceQueue } from "../../src/virtio/split/device.ts";
import { SplitDriverQueue } from "../../src/virtio/split/driver.ts";
import { PackedDeviceQueue } from "../../src/virtio/packed/device.ts";
import { PackedDriverQueue } from "../../src/virtio/packed/driver.ts";

const RUNS = 3000;

function plantedCases(targets: readonly FuzzTarget<unknown>[], origin: string) {
  for (const target of targets) {
    for (const fault of target.plantedFaults ?? []) {
      Deno.test(`planted bug: ${origin} ${target.name} reports "${fault}"`, () => {
        if (target.withPlantedFault === undefined) {
          throw new Error(`${target.name} lists plantedFaults but has no withPlantedFault`);
        }
        const broken = target.withPlantedFault(fault);
        const r = runUnit(broken, {
          target: target.name,
          slice: 0,
          seed: 1,
          runs: RUNS,
          maxFailures: 1,
        });
        assertEquals(r.crash, undefined);
        assert(
          r.failures.length > 0,
          `${target.name}: planted bug "${fault}" went unnoticed in ${r.runs} runs`,
        );
      });
    }
  }
}

plantedCases(EXAMPLES, "example");
plantedCases(TARGETS, "registered");

Deno.test("planted bug: the example targets are clean without a planted bug", () => {
  for (const t of EXAMPLES) {
    const r = runUnit(t, { target: t.name, slice: 0, seed: 1, runs: RUNS });
    assertEquals([t.name, r.failures.length, r.runs], [t.name, 0, RUNS]);
  }
});

// Bugs planted from the outside (fuzz/plant.ts) into the engine under each registered target:
// the target needs no cooperation, the patch lives only for the duration of each run.
const swallowErrors = <T extends object>(proto: T, key: keyof T) => () =>
  patchMethod(proto, key, (original) =>
    function (this: unknown, ...args: unknown[]) {
      try {
        return (original as (...a: unknown[]) => unknown).apply(this, args);
      } catch {
        return null; // the planted bug: a hostile input is silently ignored, no NEEDS_RESET
      }
    } as T[keyof T]);
const shortUsedLen = () =>
  patchMethod(
    SplitDeviceQueue.prototype,
    "push",
    (original) =>
      function (this: SplitDeviceQueue, chain: Chain, written: number) {
        original.call(this, chain, written > 0 ? written - 1 : written); // one byte short
      },
  );
const shortPackedUsedLen = () =>
  patchMethod(
    PackedDeviceQueue.prototype,
    "push",
    (original) =>
      function (this: PackedDeviceQueue, chain: Chain, written: number) {
        original.call(this, chain, written > 0 ? written - 1 : written); // one byte short
      },
  );
const flipLastByteRead = () =>
  patchMethod(
    GuestMemory.prototype,
    "read",
    (original) =>
      function (this: GuestMemory, gpa: number, dst: Uint8Array) {
        original.call(this, gpa, dst);
        if (dst.length >= 2) dst[dst.length - 1] ^= 1; // a corrupting copy
      },
  );

const OUTSIDE: [string, string, () => () => void][] = [
  [
    "split-hostile-driver",
    "SplitDeviceQueue.pop swallows errors",
    swallowErrors(SplitDeviceQueue.prototype, "pop"),
  ],
  [
    "packed-hostile-driver",
    "PackedDeviceQueue.pop swallows errors",
    swallowErrors(PackedDeviceQueue.prototype, "pop"),
  ],
  [
    "split-hostile-device",
    "SplitDriverQueue.getUsed swallows errors",
    swallowErrors(SplitDriverQueue.prototype, "getUsed"),
  ],
  [
    "packed-hostile-device",
    "PackedDriverQueue.getUsed swallows errors",
    swallowErrors(PackedDriverQueue.prototype, "getUsed"),
  ],
  ["model-split", "split push reports one byte less", shortUsedLen],
  ["differential", "split push reports one byte less", shortUsedLen],
  ["model-packed", "packed push reports one byte less", shortPackedUsedLen],
  ["viommu-requests", "GuestMemory.read corrupts a byte", flipLastByteRead],
  ["viommu-stack", "GuestMemory.read corrupts a byte", flipLastByteRead],
  ["dma-modes", "GuestMemory.read corrupts a byte", flipLastByteRead],
];

for (const [name, bug, install] of OUTSIDE) {
  const target = TARGETS.find((t) => t.name === name);
  if (target === undefined) continue; // not registered (any more): nothing to show
  Deno.test(`planted bug: registered ${name} reports "${bug}" (patched from outside)`, () => {
    const before = [SplitDeviceQueue.prototype.pop, GuestMemory.prototype.read];
    const r = runUnit(plantedTarget(target, install), {
      target: name,
      slice: 0,
      seed: 1,
      runs: RUNS,
      maxFailures: 1,
    });
    assertEquals(r.crash, undefined);
    assert(r.failures.length > 0, `${name}: planted bug "${bug}" went unnoticed in ${r.runs} runs`);
    assertEquals([SplitDeviceQueue.prototype.pop, GuestMemory.prototype.read], before, "restored");
  });
}

Deno.test("planted bug: every registered target has at least one", () => {
  const covered = new Set(OUTSIDE.map(([name]) => name));
  const missing = TARGETS.filter((t) =>
    (t.plantedFaults ?? []).length === 0 && !covered.has(t.name)
  )
    .map((t) => t.name);
  assertEquals(
    missing,
    [],
    `targets without a planted bug: ${missing.join(", ")}. Fix: give the target plantedFaults + ` +
      "withPlantedFault (docs/FUZZING.md), or add an entry to OUTSIDE in tests/fuzz/fuzz_planted_test.ts",
  );
});
