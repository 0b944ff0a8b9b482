/**
 * Web Worker entry of the fuzz runner: loads a target registry module (default
 * `fuzz/targets/mod.ts`, a test may pass its own) and runs the units it is sent, posting
 * progress while the synchronous fast-check run goes on.
 *
 * Protocol: in `{ registry, unit, progressMs }`; out `{ type: "progress", runs, failures }`,
 * then `{ type: "done", result }` or `{ type: "error", message }`.
 * @module
 */

/// <reference lib="deno.worker" />

import type { FuzzTarget } from "./target.ts";
import { runUnit, type UnitSpec } from "./runner.ts";

/** A request to the worker. */
export interface WorkerRequest {
  /** URL of a module exporting `TARGETS`. */
  registry: string;
  /** The unit to run. */
  unit: UnitSpec;
  /** Progress interval in milliseconds. */
  progressMs: number;
  /** Shared in-flight record (`IN_FLIGHT` slots of `runner.ts`), read by the hang watchdog. */
  inFlight?: SharedArrayBuffer;
}

const registries = new Map<string, readonly FuzzTarget<unknown>[]>();

self.onmessage = async (ev: MessageEvent<WorkerRequest>) => {
  const { registry, unit, progressMs, inFlight } = ev.data;
  try {
    let targets = registries.get(registry);
    if (targets === undefined) {
      targets = (await import(registry)).TARGETS as readonly FuzzTarget<unknown>[];
      registries.set(registry, targets);
    }
    const target = targets.find((t) => t.name === unit.target);
    if (target === undefined) throw new Error(`no target "${unit.target}" in ${registry}`);
    const result = runUnit(
      target,
      unit,
      (p) => self.postMessage({ type: "progress", ...p }),
      progressMs,
      inFlight === undefined ? undefined : new Int32Array(inFlight),
    );
    self.postMessage({ type: "done", result });
  } catch (e) {
    self.postMessage({
      type: "error",
      message: e instanceof Error ? (e.stack ?? e.message) : String(e),
    });
  }
};
