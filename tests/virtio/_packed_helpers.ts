// Shared imports for the packed tests (not a test file).
export * from "../../src/mod.ts";
export { writeEvent as writeEventForTest } from "../../fuzz/targets/packed_raw.ts";
