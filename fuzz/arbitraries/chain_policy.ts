/**
 * The device's {@link ChainPolicy} as a fuzz input: its zod schema (corpus files), the type
 * inferred from it and its arbitrary, side by side so they cannot drift.
 *
 * @module
 */

import fc from "fast-check";
import { z } from "zod";
import type { ChainPolicy } from "../../src/virtio/mod.ts";

/** zod schema of a {@link ChainPolicy} in a corpus file. */
export const chainPolicySchema = z.strictObject({
  zeroLength: z.enum(["reject", "allow"]),
  indirectWithNext: z.enum(["reject", "ignore-next"]),
  unknownFlags: z.enum(["ignore", "reject"]),
  maxSegments: z.number().int().min(1).max(65536),
});

/** A chain policy drawn by a fuzz target (JSON-safe); assignable to {@link ChainPolicy}. */
export type FuzzChainPolicy = z.infer<typeof chainPolicySchema>;

// The inferred type must stay a ChainPolicy: fails `deno check` if either drifts.
const _isChainPolicy = (p: FuzzChainPolicy): ChainPolicy => p;

/**
 * Every policy choice uniformly, with `maxSegments` drawn from `maxSegments` (repeat a value to
 * weight it: a small limit makes `CHAIN_TOO_MANY_SEGMENTS` reachable).
 */
export function chainPolicyArbitrary(
  maxSegments: readonly number[],
): fc.Arbitrary<FuzzChainPolicy> {
  return fc.record({
    zeroLength: fc.constantFrom("reject" as const, "allow" as const),
    indirectWithNext: fc.constantFrom("reject" as const, "ignore-next" as const),
    unknownFlags: fc.constantFrom("ignore" as const, "reject" as const),
    maxSegments: fc.constantFrom(...maxSegments),
  }, { noNullPrototype: true });
}
