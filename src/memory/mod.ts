/**
 * Guest memory: GPA regions over typed arrays, exact 64-bit accessors, `MemoryFault`.
 *
 * @module
 */

export * from "./u64.ts";
export * from "./fault.ts";
export * from "./guest_memory.ts";
