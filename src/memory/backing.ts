/**
 * Backing stores for guest memory whose bulk copies run as one WebAssembly `memory.copy` (a
 * native memmove behind a call of a few nanoseconds). `TypedArray.prototype.copyWithin` is a C++
 * builtin entered through the runtime, ~30 ns per call before the first byte moves, which a
 * bounce buffer (three copies per buffer) pays again and again. Guest RAM built on one such store
 * (regions at page offsets, `MemoryRegionSpec.backingOffset`) lets a copy between any two of its
 * regions be one {@link BackingCopier} call. The bytes copied are exactly those `copyWithin` would
 * copy (overlap-safe memmove). Stores also get a small-copy routine for short non-overlapping
 * copies ({@link backingSmallCopier}).
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

// (module (import "m" "mem" (memory 0))
//   (func (export "copy") (param i32 i32 i32) local.get 0 local.get 1 local.get 2 memory.copy)
//   (func (export "small") (param $d i32) (param $s i32) (param $n i32)
//     ;; forward copy: 16-byte v128 chunks while n >= 16, then i32 words while n >= 4, then bytes
//     (block (loop (br_if 1 (i32.lt_u (local.get $n) (i32.const 16)))
//       (v128.store (local.get $d) (v128.load (local.get $s)))
//       (local.set $d (i32.add (local.get $d) (i32.const 16))) ... $s += 16, $n -= 16 (br 0)))
//     ... the same with i32.load/i32.store and 4, then i32.load8_u/i32.store8 and 1))
// deno-fmt-ignore
const SIMD_MODULE_BYTES = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x07, 0x01, 0x60, 0x03, 0x7f, 0x7f, 0x7f,
  0x00, 0x02, 0x0a, 0x01, 0x01, 0x6d, 0x03, 0x6d, 0x65, 0x6d, 0x02, 0x00, 0x00, 0x03, 0x03, 0x02,
  0x00, 0x00, 0x07, 0x10, 0x02, 0x04, 0x63, 0x6f, 0x70, 0x79, 0x00, 0x00, 0x05, 0x73, 0x6d, 0x61,
  0x6c, 0x6c, 0x00, 0x01, 0x0a, 0x9e, 0x01, 0x02, 0x0c, 0x00, 0x20, 0x00, 0x20, 0x01, 0x20, 0x02,
  0xfc, 0x0a, 0x00, 0x00, 0x0b, 0x8e, 0x01, 0x00, 0x02, 0x40, 0x03, 0x40, 0x20, 0x02, 0x41, 0x10,
  0x49, 0x0d, 0x01, 0x20, 0x00, 0x20, 0x01, 0xfd, 0x00, 0x00, 0x00, 0xfd, 0x0b, 0x00, 0x00, 0x20,
  0x00, 0x41, 0x10, 0x6a, 0x21, 0x00, 0x20, 0x01, 0x41, 0x10, 0x6a, 0x21, 0x01, 0x20, 0x02, 0x41,
  0x10, 0x6b, 0x21, 0x02, 0x0c, 0x00, 0x0b, 0x0b, 0x02, 0x40, 0x03, 0x40, 0x20, 0x02, 0x41, 0x04,
  0x49, 0x0d, 0x01, 0x20, 0x00, 0x20, 0x01, 0x28, 0x00, 0x00, 0x36, 0x00, 0x00, 0x20, 0x00, 0x41,
  0x04, 0x6a, 0x21, 0x00, 0x20, 0x01, 0x41, 0x04, 0x6a, 0x21, 0x01, 0x20, 0x02, 0x41, 0x04, 0x6b,
  0x21, 0x02, 0x0c, 0x00, 0x0b, 0x0b, 0x02, 0x40, 0x03, 0x40, 0x20, 0x02, 0x41, 0x01, 0x49, 0x0d,
  0x01, 0x20, 0x00, 0x20, 0x01, 0x2d, 0x00, 0x00, 0x3a, 0x00, 0x00, 0x20, 0x00, 0x41, 0x01, 0x6a,
  0x21, 0x00, 0x20, 0x01, 0x41, 0x01, 0x6a, 0x21, 0x01, 0x20, 0x02, 0x41, 0x01, 0x6b, 0x21, 0x02,
  0x0c, 0x00, 0x0b, 0x0b, 0x0b,
]);

let module: WebAssembly.Module | null = null;
let simd = true; // SIMD_MODULE_BYTES compiles (WebAssembly SIMD), until it fails once
const copiers = new WeakMap<ArrayBufferLike, BackingCopier>();
const smallCopiers = new WeakMap<ArrayBufferLike, BackingCopier>();

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
    if (module === null && simd) {
      try {
        module = new WebAssembly.Module(SIMD_MODULE_BYTES);
      } catch {
        simd = false;
      }
    }
    module ??= new WebAssembly.Module(MODULE_BYTES);
    const mem = new WebAssembly.Memory({ initial: pages, maximum: pages });
    const instance = new WebAssembly.Instance(module, { m: { mem } });
    const buffer = mem.buffer as ArrayBuffer; // never shared: `shared` is not set
    copiers.set(buffer, instance.exports.copy as BackingCopier);
    if (simd) smallCopiers.set(buffer, instance.exports.small as BackingCopier);
    return buffer;
  } catch {
    return null;
  }
}

/** The copier of a store from {@link createCopyableBacking}, else `null`. Cold path. */
export function backingCopier(buffer: ArrayBufferLike): BackingCopier | null {
  return copiers.get(buffer) ?? null;
}

/**
 * The small-copy routine of a store from {@link createCopyableBacking} (WebAssembly SIMD: 16-byte
 * chunks, then 4-byte words, then bytes, forward), else `null` (not such a store, or no SIMD).
 * For copies below ~128 B it beats both the memmove call and a JavaScript word loop: a 64-byte
 * bounce is four 16-byte stores instead of sixteen 4-byte ones, so more cold slot lines can be
 * pending in the store queue at once. The ranges MUST NOT overlap (a forward copy: for
 * overlapping ranges the bytes differ from `copyWithin`'s); offsets and length are bytes. Cold
 * path.
 */
export function backingSmallCopier(buffer: ArrayBufferLike): BackingCopier | null {
  return smallCopiers.get(buffer) ?? null;
}
