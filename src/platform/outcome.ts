/**
 * What prediction and the ring run report (a verdict with its layer, a traced step), and what
 * they share: the data patterns, the segmentation of a buffer as the driver submits it, and the
 * reading of an error as a verdict.
 *
 * @module
 */

import { MemoryFault, type U64 } from "../memory/mod.ts";
import { DmaFault, DmaMapError, IO_TLB_SEGSIZE, IO_TLB_SIZE } from "../dma/mod.ts";
import { SgList, VirtqError } from "../virtio/mod.ts";
import type { DevicePlan } from "./policy_types.ts";
import type { Topology, Verdict } from "./topology_types.ts";

/** One step of a traced DMA: a layer and the address before and after it. */
export interface TraceStep {
  /** `driver` (mapping, GPA -> bus) or `device` (translation, bus -> GPA). */
  side: "driver" | "device";
  /** Layer name as it appears in faults (`"vt-d"`, `"swiotlb"`, `"address_space_memory"`). */
  layer: string;
  /** Address entering the layer. */
  from: U64;
  /** Address leaving it, or `null` when the layer failed. */
  to: U64 | null;
  /** What the layer did or why it failed. */
  note: string;
}

/** A verdict with the layer that caused it and a readable reason. */
export interface Outcome {
  /** The verdict. */
  verdict: Verdict;
  /** Faulting layer (`fault`), or the layer where data went astray (`corrupt`), else `null`. */
  layer: string | null;
  /** One line: what happened. */
  detail: string;
  /** For `fault`: the `DmaFault` / `DmaMapError` reason (`unmapped`, `too-large`, ...), if any. */
  reason?: string;
}

/** `n` bytes of a recognisable pattern (never zero). */
export function pattern(n: number, seed: number): Uint8Array {
  const p = new Uint8Array(n);
  for (let i = 0; i < n; i++) p[i] = ((i * 31 + seed) & 0xff) | 1;
  return p;
}

/** The buffer at `gpa` as the driver submits it (split at swiotlb's segment limit). */
export function segments(t: Topology, plan: DevicePlan, gpa: number): SgList {
  const bytes = t.workload.bufferBytes;
  const b = plan.driverLayers.find((l) => l.kind === "bounce");
  const max = b && b.kind === "bounce" && b.limitSegments ? IO_TLB_SIZE * IO_TLB_SEGSIZE : bytes;
  const l = new SgList();
  for (let off = 0; off < bytes; off += max) l.push(gpa + off, Math.min(max, bytes - off));
  return l;
}

/** `n` rounded up to whole 4 KiB pages. */
export const align4k = (n: number): number => Math.ceil(n / 4096) * 4096;

/** Byte-wise equality. */
export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The `fault` verdict an error (or its cause) stands for, or `null` when it is no DMA fault. */
export function outcomeOf(e: unknown): Outcome | null {
  let c: unknown = e;
  while (c instanceof VirtqError && c.cause !== undefined) c = c.cause;
  if (c instanceof DmaFault) {
    return { verdict: "fault", layer: c.layer, detail: c.message, reason: c.reason };
  }
  if (c instanceof DmaMapError) {
    return { verdict: "fault", layer: c.mode, detail: c.message, reason: c.reason };
  }
  if (c instanceof MemoryFault) {
    return { verdict: "fault", layer: "memory", detail: `${c.message} (unassigned: no RAM there)` };
  }
  if (c instanceof VirtqError && (c.code === "DESC_BUFFER_FAULT" || c.code === "RING_UNMAPPED")) {
    return { verdict: "fault", layer: "memory", detail: `${c.message} (unassigned: no RAM there)` };
  }
  return null;
}
