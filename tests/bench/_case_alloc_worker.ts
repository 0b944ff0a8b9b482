/**
 * Worker for `bench_alloc_test.ts`: heap bytes per chain of one bench case (`bench/engines.ts`),
 * warmed up and measured in a fresh isolate, as `deno task bench` measures its allocation lines.
 * Message in: the case's parameters; message out: `bytesPerChain` (or `null` when inconclusive).
 *
 * @module
 */
import type { CaseParams } from "../../bench/cases.ts";
import { createBenchable } from "../../bench/engines.ts";
import { measureAlloc } from "../../bench/alloc.ts";

self.onmessage = (ev: MessageEvent<CaseParams>) => {
  const b = createBenchable(ev.data);
  // a long warm-up: code that is not optimised yet boxes every number above 2^31
  const t0 = performance.now();
  for (let n = 0; n < 100_000 || performance.now() - t0 < 400; n += b.chainsPerCall) b.run();
  self.postMessage(measureAlloc("case", b, 4096).bytesPerChain);
};
