/**
 * Platform topologies: zod schema, real-platform presets, resolution of the driver's and the device's address views, the end-to-end verdict and its explanation.
 *
 * @module
 */

export * from "./topology.ts";
export * from "./topology_types.ts";
export {
  defaultRingGpa,
  requesterId,
  RUN_RING_BYTES,
  type RunLayout,
  runLayout,
} from "./topology_layout.ts";
export * from "./policy.ts";
export * from "./policy_types.ts";
export { versionAtLeast } from "./policy_guest.ts";
export { firmwareCoverage, hostIommu } from "./policy_coverage.ts";
export * from "./sparse_memory.ts";
export * from "./models.ts";
export * from "./resolve.ts";
export type { Outcome, TraceStep } from "./outcome.ts";
export { RUN_QUEUE_SIZE } from "./ring_run.ts";
export * from "./assembly.ts";
export * from "./explain.ts";
export * from "./presets/mod.ts";
