/**
 * Backing stores for guest memory whose bulk copies run as one WebAssembly `memory.copy` (a
 * native memmove behind a call of a few nanoseconds). `TypedArray.prototype.copyWithin` is a C++
 * builtin entered through the runtime, ~30 ns per call before the first byte moves, which a
 * bounce buffer (three copies per buffer) pays again and again. Guest RAM built on one such store
 * (regions at page offsets, `MemoryRegionSpec.backingOffset`) lets a copy between any two of its
 * regions be one {@link BackingCopier} call. The bytes copied are exactly those `copyWithin` would
 * copy (overlap-safe memmove).
 *
 * @module
 */

/** Copies `length` bytes from byte offset `src` to byte offset `dst` of one store (memmove). */
export type BackingCopier = (dst: number, src: number, length: number) => void;

// (module (import "m" "mem" (memory 0))
//   (func (export "copy") (param i32 i32 i32) local.get 0 local.get 1 local.get 2 memory.copy))
// deno-fmt-ignore
const MODULE_BYTES = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version 1
  0x01, 0x07, 0x01, 0x60, 0x03, 0x7f, 0x7f, 0x7f, 0x00, // type 0: (i32 i32 i32) -> ()
  0x02, 0x0a, 0x01, 0x01, 0x6d, 0x03, 0x6d, 0x65, 0x6d, 0x02, 0x00, 0x00, // import m.mem, min 0
  0x03, 0x02, 0x01, 0x00, // func 0: type 0
  0x07, 0x08, 0x01, 0x04, 0x63, 0x6f, 0x70, 0x79, 0x00, 0x00, // export "copy" = func 0
  0x0a, 0x0e, 0x01, 0x0c, 0x00, 0x20, 0x00, 0x20, 0x01, 0x20, 0x02, 0xfc, 0x0a, 0x00, 0x00, 0x0b,
]);

let module: WebAssembly.Module | null = null;
const copiers = new WeakMap<ArrayBufferLike, BackingCopier>();

/** WebAssembly page size: stores are allocated in whole 64 KiB pages. */
export const WASM_PAGE_SIZE = 65536;

/**
 * A zeroed backing store of at least `size` bytes (rounded up to 64 KiB) with a
 * {@link BackingCopier}; `null` where WebAssembly is unavailable or the size is above 4 GiB
 * (callers then allocate a plain `ArrayBuffer`). Cold path.
 */
export function createCopyableBacking(size: number): ArrayBuffer | null {
  const pages = Math.ceil(size / WASM_PAGE_SIZE);
  if (!Number.isSafeInteger(size) || size <= 0 || pages > 65536) return null;
  try {
    module ??= new WebAssembly.Module(MODULE_BYTES);
    const mem = new WebAssembly.Memory({ initial: pages, maximum: pages });
    const instance = new WebAssembly.Instance(module, { m: { mem } });
    const buffer = mem.buffer as ArrayBuffer; // never shared: `shared` is not set
    copiers.set(buffer, instance.exports.copy as BackingCopier);
    return buffer;
  } catch {
    return null;
  }
}

/** The copier of a store from {@link createCopyableBacking}, else `null`. Cold path. */
export function backingCopier(buffer: ArrayBufferLike): BackingCopier | null {
  return copiers.get(buffer) ?? null;
}
