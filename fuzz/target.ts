/**
 * The contract every fuzz target implements. The runner (`fuzz/main.ts`) drives targets through
 * fast-check, writes failures as corpus files and replays them; targets hold the arbitraries and
 * oracles. Nothing in `src/` imports from here.
 * @module
 */

import type fc from "fast-check";

/** A violated oracle: the engine did something the target's oracle forbids. */
export class OracleFailure extends Error {
  /** Short name of the violated oracle, e.g. `"uncatalogued-throw"`, `"out-of-bounds-access"`. */
  readonly oracle: string;
  /**
   * @param oracle short oracle name (part of the failure signature used for de-duplication).
   * @param message what exactly happened, naming indices/addresses.
   * @param cause the underlying exception, if any.
   */
  constructor(oracle: string, message: string, cause?: unknown) {
    super(`${oracle}: ${message}`, { cause });
    this.name = "OracleFailure";
    this.oracle = oracle;
  }
}

/** A fuzz target: an input generator and a property over it. */
export interface FuzzTarget<I = unknown> {
  /** Stable kebab-case name, used in `--target` and in `fuzz/corpus/<name>/`. */
  readonly name: string;
  /** One line for `--list`. */
  readonly description: string;
  /** The input generator (fast-check arbitrary). */
  arbitrary(): fc.Arbitrary<I>;
  /**
   * Runs one input through the engine and its oracles. Returns normally when every oracle holds;
   * throws {@link OracleFailure} (or anything else, which the runner reports as
   * `uncaught-exception`) when one is violated. Must terminate: loops are bounded by spec limits.
   */
  run(input: I): void;
  /**
   * What a run's work is counted in, when a run does a variable amount of it (e.g. `"chains"`:
   * a hostile-driver run pops several chains). With {@link workDone} the runner reports the
   * units done and units per second beside runs per second.
   */
  readonly workUnit?: string;
  /**
   * Cumulative number of {@link workUnit}s done by {@link run} in this process (monotonic); the
   * runner takes the difference over a unit. Count only real work (e.g. a chain the engine
   * popped or rejected), never inputs that were skipped.
   */
  workDone?(): number;
  /** JSON-safe form of an input for the corpus (default: the runner stores seed and path only). */
  encode?(input: I): unknown;
  /** Inverse of `encode`, validating the JSON (zod); throws on a malformed corpus entry. */
  decode?(json: unknown): I;
  /** For `fc.commands` targets: replay needs fast-check's `replayPath` as well as seed/path. */
  readonly usesCommands?: boolean;
  /**
   * For {@link usesCommands} targets: the same arbitrary as {@link arbitrary}, with `replayPath`
   * passed to `fc.commands(..., { replayPath })`, so that a corpus entry replays exactly the
   * shrunk command sequence. Without it the runner replays with seed and path only.
   */
  replayArbitrary?(replayPath: string): fc.Arbitrary<I>;
  /**
   * What `--replay` prints below the input: the state the input builds, e.g. the descriptor table,
   * available ring and used ring bytes a hostile input writes into guest memory. A string is
   * printed as is; any other value is rendered by `describeValue` (`fuzz/describe.ts`): every
   * `Uint8Array` (and hex string of 8+ bytes, and byte-valued array under a key such as `ring`,
   * `table`, `bytes`) as a hex dump with offsets, 16 bytes a line in two groups of 8. E.g.
   * `describe: (i) => ({ descriptorTable: mem.read(descGpa, 16 * size), availRing: ... })`.
   * The input itself is always printed (structurally, byte arrays as hex dumps).
   */
  describe?(input: I): unknown;
  /**
   * Names of the bugs this target can plant in its engine through {@link withPlantedFault}
   * (test-only): `tests/fuzz/fuzz_planted_test.ts` shows that the target reports every one of them.
   */
  readonly plantedFaults?: readonly string[];
  /**
   * Test-only: a copy of this target whose engine carries the named planted bug (one of
   * {@link plantedFaults}); the oracles must then fail. Never used by the campaign.
   */
  withPlantedFault?(fault: string): FuzzTarget<I>;
}
