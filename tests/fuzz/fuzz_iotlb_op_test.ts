import { assertEquals, assertThrows } from "@std/assert";
import fc from "fast-check";
import { Iotlb } from "../../src/mod.ts";
import { patchMethod } from "../../fuzz/plant.ts";
import { OracleFailure } from "../../fuzz/target.ts";
import {
  IOTLB_CAPACITIES,
  IOTLB_STEP_KINDS,
  type IotlbOp,
  runIotlbOp,
} from "../../fuzz/support/dma_ops/iotlb_op.ts";

const opArb: fc.Arbitrary<IotlbOp> = fc.record({
  capacity: fc.nat(IOTLB_CAPACITIES.length - 1),
  steps: fc.array(
    fc.tuple(fc.nat(IOTLB_STEP_KINDS - 1), fc.nat(3), fc.nat(4), fc.nat(15), fc.nat(4095)),
    { maxLength: 48 },
  ),
});

Deno.test("fuzz iotlb op: the real IOTLB agrees with the model (fixed seed)", () => {
  fc.assert(fc.property(opArb, (op) => void runIotlbOp(op)), { seed: 11, numRuns: 2000 });
});

Deno.test("fuzz iotlb op: insert, overflow flush, lookup at every level, exact answers", () => {
  // capacity index 1 = 2 entries: the third distinct insert flushes everything first.
  const steps: IotlbOp["steps"] = [
    [0, 0, 0, 1, 0], // domain 0, page 1, level 1
    [0, 0, 1, 0, 1], // domain 0, page 511, level 2
    [1, 0, 0, 1, 0], // hit (4 KiB)
    [0, 1, 0, 2, 2], // domain 1, level 3: overflow flush
    [1, 0, 0, 1, 0], // miss now
    [7, 0, 0, 0, 0], // invalidate all
  ];
  assertEquals(runIotlbOp({ capacity: 1, steps }), steps.length);
  assertEquals(runIotlbOp({ capacity: 6, steps }), 0); // capacity 0: RangeError, expected
});

// Each planted IOTLB bug must be reported by the op's oracle within the fixed-seed budget.
const PLANTED: [string, () => () => void][] = [
  [
    "invalidateRange does nothing",
    () => patchMethod(Iotlb.prototype, "invalidateRange", () => () => {}),
  ],
  [
    "invalidatePage ignores the address mask",
    () =>
      patchMethod(
        Iotlb.prototype,
        "invalidatePage",
        (orig) =>
          function (this: Iotlb, d: number, iova: number, _am?: number) {
            orig.call(this, d, iova, 0);
          },
      ),
  ],
  [
    "invalidateDomain does nothing",
    () => patchMethod(Iotlb.prototype, "invalidateDomain", () => () => {}),
  ],
  [
    "lookupPage reports a miss for every page",
    () =>
      patchMethod(Iotlb.prototype, "lookupPage", () =>
        function (this: Iotlb) {
          this.stats.misses++;
          return false;
        }),
  ],
];

for (const [name, install] of PLANTED) {
  Deno.test(`fuzz iotlb op: planted bug found: ${name}`, () => {
    const restore = install();
    try {
      const d = fc.check(fc.property(opArb, (op) => void runIotlbOp(op)), {
        seed: 1,
        numRuns: 3000,
      });
      const e = d.errorInstance;
      assertEquals(d.failed, true);
      assertEquals(e instanceof OracleFailure && e.oracle, "iotlb-model");
    } finally {
      restore();
    }
  });
}

Deno.test("fuzz iotlb op: failures are OracleFailure iotlb-model", () => {
  const restore = patchMethod(Iotlb.prototype, "invalidateAll", () => () => {});
  try {
    const e = assertThrows(() =>
      runIotlbOp({ capacity: 4, steps: [[0, 0, 0, 0, 0], [7, 0, 0, 0, 0]] })
    );
    assertEquals(e instanceof OracleFailure && e.oracle, "iotlb-model");
  } finally {
    restore();
  }
});
