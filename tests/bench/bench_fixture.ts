/**
 * Synthetic benchmark results for the bench tests (no timing involved).
 * @module
 */

import { BASE, caseName, type CaseParams } from "../../bench/cases.ts";
import {
  type CaseResult,
  type Results,
  RESULTS_SCHEMA_VERSION,
  type Stats,
} from "../../bench/results.ts";

/** Stats around a median with a relative spread. */
export function stats(p50: number, spread = 0.02): Stats {
  return {
    min: p50 * (1 - spread),
    p25: p50 * (1 - spread / 2),
    p50,
    p75: p50 * (1 + spread / 2),
    avg: p50,
    p50max: p50,
    rounds: 2,
    samples: 100,
  };
}

/** A case result with `p50` ns per call. */
export function caseResult(over: Partial<CaseParams>, p50: number, spread = 0.02): CaseResult {
  const params = { ...BASE, ...over };
  const nsPerChain = p50 / params.batch;
  return {
    name: caseName(params),
    params,
    chainsPerCall: params.batch,
    descriptorsPerCall: params.batch * params.chainLen,
    bytesPerCall: params.batch * params.payload,
    stats: stats(p50, spread),
    nsPerChain,
    chainsPerSec: 1e9 / nsPerChain,
    bytesPerSec: (params.batch * params.payload * 1e9) / p50,
    sol: null,
    fractionOfSol: null,
    counters: {},
  };
}

/** A valid results file. */
export function results(cases: CaseResult[]): Results {
  return {
    schema: RESULTS_SCHEMA_VERSION,
    createdAt: "2026-11-21T00:00:00.000Z",
    machine: { os: "linux", arch: "x86_64", cpus: 2, cpuName: "test cpu", hostname: "test" },
    runtime: { deno: "2.9.6", v8: "15.0", typescript: "6.0" },
    options: { smoke: false, rounds: 2, timeMs: 300, suites: [], filter: null },
    results: cases,
    targets: [],
    alloc: [],
  };
}
