/**
 * Internals of the inspector that the fuzz targets, the tools and the tests use but the public
 * face (`mod.ts`) hides: the split and packed ring views, chain decoding helpers, the engine
 * cross-check, real-ring seeds, fixture memory assembly and QEMU `xp` dump checks. No stability
 * promise: import `mod.ts` unless you are part of this project.
 *
 * @module
 */

export * from "./mod.ts";
export {
  addBufferDescriptor,
  type BufferReach,
  bufferReach,
  decodeError,
  newDecodedChain,
} from "./decoded_chain.ts";
export * from "./engine_decode.ts";
export { buildFixtureMemory, gunzip } from "./fixture.ts";
export { oracleKey, QEMU_DESC_FLAG_BITS, qemuFlagNames } from "./qemu_oracle.ts";
export * from "./split_view.ts";
export * from "./packed_view.ts";
export * from "./seeds.ts";
export * from "./hmp_xp.ts";
export { repoRoot } from "./fixture_files.ts";
