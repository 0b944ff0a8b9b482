import { assertEquals } from "@std/assert";
import fc from "fast-check";
import { DirectDmaApi, FlushQueue, IommuDmaApi, IoPageTable } from "../../src/mod.ts";
import { dmaModesTarget } from "../../fuzz/targets/dma_modes.ts";
import { type PageTableOp, runPageTableOp } from "../../fuzz/support/dma_ops/page_table_op.ts";
import { patchMethod } from "../../fuzz/plant.ts";
import { OracleFailure } from "../../fuzz/target.ts";
import {
  type FlushQueueOp,
  FQ_SIZES,
  FQ_STEP_KINDS,
  FQ_TIMEOUTS,
  runFlushQueueOp,
} from "../../fuzz/support/dma_ops/flush_queue_op.ts";
import {
  DIRECT_BUS_LIMITS,
  DIRECT_GPAS,
  DIRECT_LENGTHS,
  DIRECT_MASKS,
  type DirectOp,
  runDirectOp,
} from "../../fuzz/support/dma_ops/direct_op.ts";

const fqArb: fc.Arbitrary<FlushQueueOp> = fc.record({
  size: fc.nat(FQ_SIZES.length - 1),
  timeout: fc.nat(FQ_TIMEOUTS.length - 1),
  steps: fc.array(fc.tuple(fc.nat(FQ_STEP_KINDS - 1), fc.nat(40), fc.nat(3)), { maxLength: 32 }),
});
const directArb: fc.Arbitrary<DirectOp> = fc.record({
  mask: fc.nat(DIRECT_MASKS.length - 1),
  busLimit: fc.nat(DIRECT_BUS_LIMITS.length - 1),
  base: fc.nat(DIRECT_GPAS.length - 1),
  off: fc.oneof(fc.constantFrom(0, 4095, 4096, 8192), fc.nat(0x1_0000)),
  len: fc.nat(DIRECT_LENGTHS.length - 1),
  coherent: fc.boolean(),
});

// Only the refused calls (`edge`) of the page-table op, on small mappings.
const ptEdgeArb: fc.Arbitrary<PageTableOp> = fc.record({
  levels: fc.constantFrom(3 as const, 4 as const),
  sizes: fc.nat(3),
  iovaGiB: fc.nat(255),
  gpaGiB: fc.nat(4095),
  iovaPages: fc.oneof(fc.constantFrom(0, 1, 511, 512), fc.nat(262143)),
  skew: fc.constant(0),
  pages: fc.integer({ min: 1, max: 1024 }),
  cutAt: fc.nat(1100),
  cutPages: fc.nat(64),
  probes: fc.constant([]),
  edge: fc.integer({ min: 1, max: 6 }),
});

function oracleOf<T>(arb: fc.Arbitrary<T>, run: (x: T) => unknown): string | undefined {
  const d = fc.check(fc.property(arb, (x) => void run(x)), { seed: 1, numRuns: 3000 });
  const e = d.errorInstance;
  return d.failed ? (e instanceof OracleFailure ? e.oracle : String(e)) : undefined;
}

Deno.test("fuzz flushq / direct ops: the real engine agrees with the models (fixed seed)", () => {
  assertEquals(oracleOf(fqArb, runFlushQueueOp), undefined);
  assertEquals(oracleOf(directArb, runDirectOp), undefined);
});

Deno.test("fuzz flushq op: a full queue flushes before the push; the timer flushes later", () => {
  // size index 1 = 2 entries: the second push flushes the first; then 10 ms (timeout index 2).
  const steps: FlushQueueOp["steps"] = [[0, 5, 0], [0, 7, 1], [1, 10, 0], [2, 0, 0], [3, 0, 0]];
  assertEquals(runFlushQueueOp({ size: 1, timeout: 2, steps }), 2);
  assertEquals(runFlushQueueOp({ size: 5, timeout: 0, steps }), 0); // size 0: RangeError
});

const PLANTED: [string, () => () => void, fc.Arbitrary<unknown>, (x: never) => unknown][] = [
  [
    "FlushQueue.poll never times out",
    () => patchMethod(FlushQueue.prototype, "poll", () => () => false),
    fqArb,
    runFlushQueueOp,
  ],
  [
    "FlushQueue.flush reports false",
    () =>
      patchMethod(FlushQueue.prototype, "flush", (orig) =>
        function (this: FlushQueue) {
          orig.call(this);
          return false;
        }),
    fqArb,
    runFlushQueueOp,
  ],
  [
    "DirectDmaApi.map ignores the mask",
    () => patchMethod(DirectDmaApi.prototype, "map", () => (gpa: number) => gpa),
    directArb,
    runDirectOp,
  ],
  [
    "DirectDmaApi.mapCoherent skips the private check",
    () =>
      patchMethod(
        DirectDmaApi.prototype,
        "mapCoherent",
        () =>
          function (this: DirectDmaApi, gpa: number, len: number) {
            return this.map(gpa, len, 0);
          },
      ),
    directArb,
    runDirectOp,
  ],
  [
    "IoPageTable.map swallows its DmaMapError (a partial map stays)",
    () =>
      patchMethod(
        IoPageTable.prototype,
        "map",
        (orig) =>
          function (this: IoPageTable, ...a: Parameters<IoPageTable["map"]>) {
            try {
              orig.apply(this, a);
            } catch (e) {
              if (e instanceof RangeError) throw e;
            }
          },
      ),
    ptEdgeArb,
    runPageTableOp,
  ],
  [
    "IoPageTable.unmap accepts a misaligned IOVA",
    () =>
      patchMethod(
        IoPageTable.prototype,
        "unmap",
        (orig) =>
          function (this: IoPageTable, iova: number, size: number) {
            return orig.call(this, iova - (iova % 4096), size);
          },
      ),
    ptEdgeArb,
    runPageTableOp,
  ],
];

Deno.test("fuzz dma-modes tick: planted bug found: pendingIovas is off by one page", () => {
  const restore = patchMethod(
    IommuDmaApi.prototype,
    "pendingIovas",
    (orig) =>
      function (this: IommuDmaApi) {
        return orig.call(this).map((p) => ({ bus: p.bus + 4096, length: p.length }));
      },
  );
  try {
    assertEquals(oracleOf(dmaModesTarget.arbitrary(), dmaModesTarget.run), "lazy-window");
  } finally {
    restore();
  }
});

Deno.test("fuzz dma-modes tick: planted bug found: isStale forgets the flush queue", () => {
  const restore = patchMethod(IommuDmaApi.prototype, "isStale", () => () => false);
  try {
    assertEquals(oracleOf(dmaModesTarget.arbitrary(), dmaModesTarget.run), "lazy-window");
  } finally {
    restore();
  }
});

for (const [name, install, arb, run] of PLANTED) {
  Deno.test(`fuzz dma unit ops: planted bug found: ${name}`, () => {
    const restore = install();
    try {
      const oracle = oracleOf(arb, run as (x: unknown) => unknown);
      const known = ["flush-queue-model", "dma-direct-model", "page-table"];
      assertEquals(known.includes(oracle ?? ""), true, oracle);
    } finally {
      restore();
    }
  });
}
