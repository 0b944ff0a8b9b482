/**
 * Fuzz target `model-packed`: the queue model of `fuzz/support/queue_model.ts` over a packed
 * pair, including Queue Sizes that are not powers of 2.
 *
 * @module
 */

import type { FuzzTarget } from "../target.ts";
import { type ModelSplitInput, QueueModelTarget } from "../support/queue_model.ts";

/** The `model-packed` target instance: the same model over the packed layout. */
export const modelPacked: FuzzTarget<ModelSplitInput> = new QueueModelTarget("packed");
