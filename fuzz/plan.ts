/**
 * Campaign planning: which units (target, seed slice) a shard runs, and each unit's time budget.
 * Deterministic: the same targets, seed and shard count always give the same partition.
 * @module
 */

import { deriveSeed } from "./signature.ts";

/** One planned unit of work. */
export interface PlannedUnit {
  /** Target name. */
  target: string;
  /** Slice of the target (0-based); targets have several slices when shards outnumber them. */
  slice: number;
  /** Seed of this unit, derived from the campaign seed, the target name and the slice. */
  seed: number;
}

/**
 * The units of shard `index` (1-based) of `count`. Every target is cut into
 * `ceil(count / targets)` slices with distinct derived seeds (so all shards have work even with
 * few targets); the slices, in target order, are dealt round-robin to the shards. The union of
 * all shards is every slice exactly once.
 */
export function planShard(
  targets: readonly string[],
  seed: number,
  shard: { index: number; count: number },
): PlannedUnit[] {
  if (targets.length === 0) return [];
  const slices = Math.max(1, Math.ceil(shard.count / targets.length));
  const out: PlannedUnit[] = [];
  let u = 0;
  for (const target of targets) {
    for (let slice = 0; slice < slices; slice++, u++) {
      if (u % shard.count === shard.index - 1) {
        out.push({ target, slice, seed: deriveSeed(seed, target, slice) });
      }
    }
  }
  return out;
}

/**
 * Seconds each unit gets so that `units` units on `workers` parallel workers finish within
 * `totalSeconds` of wall time: `total / ceil(units / workers)` (0 workers counts as 1).
 */
export function secondsPerUnit(totalSeconds: number, units: number, workers: number): number {
  if (units === 0) return 0;
  return totalSeconds / Math.ceil(units / Math.max(1, workers));
}
