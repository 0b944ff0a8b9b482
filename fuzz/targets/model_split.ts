/**
 * Fuzz target `model-split`: the queue model of `fuzz/support/queue_model.ts` (add / kick / pop /
 * push / flush / get-used / reset against a model of outstanding tokens) over a split pair.
 *
 * @module
 */

import type { FuzzTarget } from "../target.ts";
import { type ModelSplitInput, QueueModelTarget } from "../support/queue_model.ts";

/** The `model-split` target instance. */
export const modelSplit: FuzzTarget<ModelSplitInput> = new QueueModelTarget("split");
