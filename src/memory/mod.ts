/**
 * Guest memory, the lowest layer: guest-physical address (GPA) regions over typed arrays,
 * little-endian accessors that read 64-bit fields exactly (`U64` is a number below 2^53, else a
 * bigint), and {@link MemoryFault} for an access outside every region or across two.
 *
 * Everything above (DMA models, rings, devices, the inspector) reads and writes guest memory only
 * through {@link GuestMemory}. This folder imports nothing else from the project.
 *
 * @example Build guest RAM, write a 64-bit field and read it back exactly
 * ```ts
 * import { GuestMemory, MemoryFault } from "@virtq-lab/virtq-lab/memory";
 * import { assertEquals, assertThrows } from "@std/assert";
 *
 * const memory = new GuestMemory([{ gpa: 0, size: 0x10000, name: "ram" }]);
 * memory.writeU64(0x100, 0xffff_ffff_ffff_fff0n); // above 2^53: stays a bigint
 * assertEquals(memory.readU64(0x100), 0xffff_ffff_ffff_fff0n);
 * memory.writeU16(0x108, 0x1234);
 * assertEquals(memory.readU16(0x108), 0x1234);
 *
 * // A read past the last region is a typed fault, never a silent zero.
 * assertThrows(() => memory.readU32(0x10000), MemoryFault);
 * ```
 *
 * @module
 */

export * from "./u64.ts";
export * from "./fault.ts";
export * from "./guest_memory.ts";
export * from "./backing.ts";
