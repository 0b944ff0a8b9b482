/**
 * A registry with a target that never returns, for the runner's hang watchdog test.
 * @module
 */

import fc from "fast-check";
import type { FuzzTarget } from "../../fuzz/target.ts";

/** `example-hang` spins forever on input 7 (a broken engine with an unbounded loop). */
export const TARGETS: readonly FuzzTarget<number>[] = [{
  name: "example-hang",
  description: "example: an unbounded loop on one input",
  arbitrary: () => fc.integer({ min: 0, max: 10 }),
  run(n) {
    // deno-lint-ignore no-empty
    while (n === 7) {}
  },
}];
