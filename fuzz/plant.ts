/**
 * Test-only helpers to plant a bug in an engine from the outside, for "every oracle can fail"
 * tests of targets that do not offer `withPlantedFault`: patch one method of an engine class for
 * the duration of each run of a target. Never used by the campaign.
 * @module
 */

import type { FuzzTarget } from "./target.ts";

/**
 * Replaces `proto[key]` with `make(original)`; returns the function that restores it.
 * `original` must be called with `.call(this, ...)` from the replacement.
 */
export function patchMethod<T extends object, K extends keyof T>(
  proto: T,
  key: K,
  make: (original: T[K]) => T[K],
): () => void {
  const had = Object.prototype.hasOwnProperty.call(proto, key);
  const original = proto[key];
  proto[key] = make(original);
  return () => {
    if (had) proto[key] = original;
    else delete proto[key];
  };
}

/**
 * A copy of `target` (same name, arbitrary, encode/decode) whose every run happens with the bug
 * `install()` plants, removed again after the run (so the patch never leaks into other tests).
 */
export function plantedTarget<I>(target: FuzzTarget<I>, install: () => () => void): FuzzTarget<I> {
  return {
    name: target.name,
    description: `${target.description} (planted bug)`,
    arbitrary: () => target.arbitrary(),
    run(input: I) {
      const restore = install();
      try {
        target.run(input);
      } finally {
        restore();
      }
    },
    encode: target.encode?.bind(target),
    decode: target.decode?.bind(target),
    usesCommands: target.usesCommands,
    replayArbitrary: target.replayArbitrary?.bind(target),
  };
}
