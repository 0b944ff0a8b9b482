/**
 * A bench worker: measures the cases of one engine family in its own V8 isolate (see
 * `bench/measurer.ts`). Answers {@link WorkerRequest}s with {@link WorkerResponse}s.
 *
 * @module
 */

/// <reference lib="deno.worker" />

import { createBenchable } from "./engines.ts";
import { LocalMeasurer, type WorkerRequest, type WorkerResponse } from "./measurer.ts";

const local = new LocalMeasurer(createBenchable);

self.onmessage = async (e: MessageEvent<WorkerRequest>) => {
  const r = e.data;
  let msg: WorkerResponse;
  try {
    let value: unknown;
    switch (r.op) {
      case "prepare":
        value = await local.prepare(r.params, r.warmMs);
        break;
      case "measure":
        value = await local.measure(r.params, { timeMs: r.timeMs });
        break;
      case "counters":
        value = await local.counters(r.params, r.calls);
        break;
      case "alloc":
        value = await local.alloc(r.params);
        break;
      case "ping":
        value = true;
        break;
    }
    msg = { id: r.id, ok: true, value };
  } catch (err) {
    msg = { id: r.id, ok: false, error: (err as Error).message };
  }
  self.postMessage(msg);
};
