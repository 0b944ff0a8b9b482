/**
 * Where a topology run puts things in guest-physical memory, and PCI requester IDs.
 *
 * @module
 */

import type { U64 } from "../memory/u64.ts";
import type { Topology } from "./topology_types.ts";

/** A PCI address `[dddd:]bb:dd.f` (the schema's `bdf` pattern). */
export const BDF_RE = /^(?:([0-9a-fA-F]{4}):)?([0-9a-fA-F]{2}):([0-1][0-9a-fA-F])\.([0-7])$/;

/** Guest-physical placement of what a resolution run uses (see {@link runLayout}). */
export interface RunLayout {
  /** The driver's ring memory (64 KiB reserved). */
  ringGpa: number;
  /** The driver's buffers: the device-readable one, then the device-writable one. */
  bufferGpa: number;
  /** The swiotlb / restricted-dma-pool bounce pool (shared memory). */
  poolGpa: number;
  /** The virtio-iommu driver's request staging area (16 KiB). */
  stagingGpa: number;
}

/** Bytes reserved for the rings at {@link RunLayout.ringGpa}. */
export const RUN_RING_BYTES = 64 * 1024;

/**
 * Where a run places rings, buffers, the bounce pool and the virtio-iommu staging area: rings at
 * `workload.ringGpa` (default 16 MiB into the first RAM range), buffers at `workload.bufferGpa`
 * (default 1 MiB after the rings), the pool 16 MiB after the rings, staging 8 MiB after them.
 */
export function runLayout(
  t: Pick<Topology, "memory" | "workload">,
): RunLayout {
  const ram = t.memory.find((m) => m.kind === "ram") ?? t.memory[0];
  const ringGpa = Number(t.workload.ringGpa ?? Number(ram.gpa) + 16 * 1024 * 1024);
  const bufferGpa = Number(t.workload.bufferGpa ?? ringGpa + 1024 * 1024);
  return {
    ringGpa,
    bufferGpa,
    poolGpa: ringGpa + 16 * 1024 * 1024,
    stagingGpa: ringGpa + 8 * 1024 * 1024,
  };
}

/**
 * The 16-bit PCI requester ID of `"bb:dd.f"` (`bus << 8 | dev << 3 | fn`), or `undefined` for a
 * non-PCI device.
 */
export function requesterId(bdfText: string | undefined): number | undefined {
  if (bdfText === undefined) return undefined;
  const m = BDF_RE.exec(bdfText);
  if (!m) return undefined;
  return (parseInt(m[2], 16) << 8) | (parseInt(m[3], 16) << 3) | parseInt(m[4], 10);
}

/** Default GPA of the driver's rings: 16 MiB into the first RAM range (see `runLayout`). */
export function defaultRingGpa(t: Topology): U64 {
  return runLayout({ ...t, workload: { ...t.workload, ringGpa: undefined } }).ringGpa;
}
