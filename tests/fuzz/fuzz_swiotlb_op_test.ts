import { assertEquals } from "@std/assert";
import fc from "fast-check";
import { SwiotlbDmaApi } from "../../src/mod.ts";
import { patchMethod } from "../../fuzz/plant.ts";
import { OracleFailure } from "../../fuzz/target.ts";
import {
  runSwiotlbOp,
  SWIOTLB_STEP_KINDS,
  type SwiotlbOp,
} from "../../fuzz/support/dma_ops/swiotlb_op.ts";

const arb: fc.Arbitrary<SwiotlbOp> = fc.record({
  force: fc.boolean(),
  steps: fc.array(
    fc.tuple(fc.nat(SWIOTLB_STEP_KINDS - 1), fc.nat(7), fc.nat(0xffff), fc.nat(0xffff)),
    { maxLength: 32 },
  ),
});

function oracleOf(): string | undefined {
  const d = fc.check(fc.property(arb, (x) => void runSwiotlbOp(x)), { seed: 1, numRuns: 2000 });
  const e = d.errorInstance;
  return d.failed ? (e instanceof OracleFailure ? e.oracle : String(e)) : undefined;
}

Deno.test("fuzz swiotlb op: the real swiotlb agrees with the byte model (fixed seed)", () => {
  assertEquals(oracleOf(), undefined);
});

Deno.test("fuzz swiotlb op: a partial syncForCpu copies back exactly its bytes", () => {
  // map 2049 bytes (bidirectional), device writes, sync 10 bytes at +5, sync past the end, unmap
  const steps: SwiotlbOp["steps"] = [[0, 0, 3, 0], [1, 0, 0, 0], [2, 0, 5, 9], [2, 0, 2000, 60], [
    4,
    0,
    0,
    0,
  ]];
  assertEquals(runSwiotlbOp({ force: true, steps }) > 0, true);
});

const PLANTED: [string, () => () => void][] = [
  [
    "syncForCpu copies nothing",
    () => patchMethod(SwiotlbDmaApi.prototype, "syncForCpu", () => () => {}),
  ],
  [
    "syncForDevice copies one byte too many",
    () =>
      patchMethod(
        SwiotlbDmaApi.prototype,
        "syncForDevice",
        (orig) =>
          function (this: SwiotlbDmaApi, bus, length, dir) {
            orig.call(this, bus, length, dir);
            const gpa = this.originalOf(bus);
            if (gpa >= 0 && dir !== 2) {
              try {
                orig.call(this, bus, length + 1, dir);
              } catch {
                /* past the end: refused */
              }
            }
          },
      ),
  ],
  [
    "unmap never copies back",
    () =>
      patchMethod(
        SwiotlbDmaApi.prototype,
        "unmap",
        (orig) =>
          function (this: SwiotlbDmaApi, bus, length, _dir) {
            orig.call(this, bus, length, 1);
          },
      ),
  ],
];

for (const [name, install] of PLANTED) {
  Deno.test(`fuzz swiotlb op: planted bug found: ${name}`, () => {
    const restore = install();
    try {
      assertEquals(oracleOf(), "swiotlb-model");
    } finally {
      restore();
    }
  });
}
