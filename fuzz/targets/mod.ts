/**
 * The registry of fuzz targets: every target in `fuzz/targets/` is listed here exactly once.
 * @module
 */

import type { FuzzTarget } from "../target.ts";
import { splitHostileDriver } from "./split_hostile_driver.ts";
import { splitHostileDevice } from "./split_hostile_device.ts";
import { modelSplit } from "./model_split.ts";
import { modelPacked } from "./model_packed.ts";
import { packedHostileDriver } from "./packed_hostile_driver.ts";
import { packedHostileDevice } from "./packed_hostile_device.ts";
import { differential } from "./differential.ts";
import { dmaModesTarget } from "./dma_modes.ts";
import { viommuRequestsTarget } from "./viommu_requests.ts";
import { viommuStackTarget } from "./viommu_stack.ts";
import { topologyTarget } from "./topology.ts";
import { transportRegistersTarget } from "./transport_registers.ts";
import { notificationDataTarget } from "./notification_data.ts";
import { restoreTarget } from "./restore.ts";
import { dmaInvariantsTarget } from "./dma_invariants.ts";
import { viommuHostileDeviceTarget } from "./viommu_hostile_device.ts";
import { dmaChainsTarget } from "./dma_chains.ts";

/** All registered targets, in `--list` order. */
// deno-lint-ignore no-explicit-any
export const TARGETS: readonly FuzzTarget<any>[] = [
  splitHostileDriver,
  splitHostileDevice,
  modelSplit,
  modelPacked,
  packedHostileDriver,
  packedHostileDevice,
  differential,
  dmaModesTarget,
  viommuRequestsTarget,
  viommuStackTarget,
  topologyTarget,
  transportRegistersTarget,
  notificationDataTarget,
  restoreTarget,
  dmaInvariantsTarget,
  viommuHostileDeviceTarget,
  dmaChainsTarget,
];
