/**
 * Platform topologies, the top library layer: a zod-validated description of a machine (IOMMUs,
 * DMA windows, confidential memory, bridges, driver and device quirks), real-platform presets,
 * and their resolution: the driver's and the device's address views are assembled from the DMA
 * layer, one buffer is traced and run through real rings, and the end-to-end verdict (`ok`,
 * `fault`, `corrupt`) is explained layer by layer.
 *
 * @example Resolve a preset and read its verdict
 * ```ts
 * import { parseTopology, PRESETS, resolveTopology } from "@virtq-lab/virtq-lab/platform";
 * import { assertEquals } from "@std/assert";
 *
 * const topology = parseTopology(PRESETS["q35-kvm-no-viommu"], "q35-kvm-no-viommu");
 * const [device] = resolveTopology(topology).devices;
 * assertEquals(device.observed.verdict, device.predicted.verdict); // the two views agree
 * assertEquals(device.observed.verdict, "ok"); // no IOMMU, no bounce: bus address = GPA
 * ```
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
