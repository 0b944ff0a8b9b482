/**
 * Decoding captured guest memory of live virtqueues and comparing with QEMU's own answers.
 *
 * @module
 */

export * from "./inspect_error.ts";
export * from "./exact_json.ts";
export * from "./feature_names.ts";
export * from "./fixture.ts";
export * from "./qemu_oracle.ts";
export * from "./decoded_chain.ts";
export * from "./split_view.ts";
export * from "./packed_view.ts";
export * from "./inspect_queue.ts";
export * from "./compare_qemu.ts";
export * from "./hex_dump.ts";
export * from "./report_json.ts";
export * from "./engine_decode.ts";
export * from "./seeds.ts";
export * from "./hmp_xp.ts";
export * from "./vtd_walk.ts";
export * from "./vtd_space.ts";
