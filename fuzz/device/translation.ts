/**
 * Translation edge cases with ACCESS_PLATFORM (testpmd `iommu-support=1`): placeholder until
 * the cases land; runs the plain liveness probe.
 * @module
 */
import type { CaseOptions } from "./run_case.ts";
import type { DeviceCase } from "./cases.ts";

/** Runs one translation case (see `cases.ts`). */
export function runTranslationCase(
  // deno-lint-ignore no-explicit-any
  _ctx: any,
  _c: Extract<DeviceCase, { kind: "translation" }>,
  _o: CaseOptions,
  // deno-lint-ignore no-explicit-any
): { probe: any; corrupt: string | null; refused: string | null } {
  return {
    probe: { ok: false, why: "translation cases not implemented" },
    corrupt: null,
    refused: "not implemented",
  };
}
