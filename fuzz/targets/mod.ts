/**
 * The registry of fuzz targets: every target in `fuzz/targets/` is listed here exactly once.
 * @module
 */

import type { FuzzTarget } from "../target.ts";
import { dmaModesTarget } from "./dma_modes.ts";

/** All registered targets, in `--list` order. */
// deno-lint-ignore no-explicit-any
export const TARGETS: readonly FuzzTarget<any>[] = [dmaModesTarget];
