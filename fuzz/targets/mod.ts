/**
 * The registry of fuzz targets: every target in `fuzz/targets/` is listed here exactly once.
 * @module
 */

import type { FuzzTarget } from "../target.ts";
import { topologyTarget } from "./topology.ts";

/** All registered targets, in `--list` order. */
// deno-lint-ignore no-explicit-any
export const TARGETS: readonly FuzzTarget<any>[] = [topologyTarget];
