/**
 * The inspector: decodes the virtqueues in a captured guest memory image (a live QEMU guest's
 * pages, or any {@link GuestMemory}) without trusting them: ring indices and flags, the
 * outstanding chains (walked independently and popped by our own device engine on a scratch
 * copy, then cross-checked), completed entries, and every problem as a catalogue code. Fixture
 * files (`*.index.json`, pages image, QMP capture) are read by {@link readFixture} and compared
 * with QEMU's own answers.
 *
 * @example Inspect a split queue holding one outstanding buffer
 * ```ts
 * import { inspectQueue } from "@virtq-lab/virtq-lab/inspect";
 * import { createQueuePair, SgList } from "@virtq-lab/virtq-lab/virtio";
 * import { assertEquals } from "@std/assert";
 *
 * const { memory, driver, size, features, dataGpa } = createQueuePair({ layout: "split", size: 8 });
 * driver.add(SgList.of([dataGpa, 16]), SgList.of([dataGpa + 0x100, 32]), "req");
 * driver.kick();
 *
 * const report = inspectQueue(
 *   { device: "example", path: "/example", queue: 0, size, layout: "split", features,
 *     ...driver.addresses },
 *   { memory, ramSize: 1 << 20 },
 * );
 * assertEquals(report.errors, []);
 * assertEquals(report.outstanding.length, 1);
 * ```
 *
 * @module
 */

export * from "./inspect_error.ts";
export * from "./exact_json.ts";
export * from "./feature_names.ts";
export {
  type Fixture,
  type FixtureIndex,
  type FixtureIndexQueue,
  type FixtureQueue,
  fixtureQueue,
  loadFixture,
  parseFixtureIndex,
} from "./fixture.ts";
export {
  parseQemuOracle,
  type QemuDesc,
  type QemuElementQuery,
  type QemuOracle,
  type QemuQueueElement,
  type QemuQueueStatus,
  type QemuQueueView,
} from "./qemu_oracle.ts";
export type { DecodedChain, DecodedDescriptor, DecodeError } from "./decoded_chain.ts";
export * from "./inspect_queue.ts";
export type { PackedEventSuppression, PackedPositionGuess } from "./packed_view.ts";
export * from "./compare_qemu.ts";
export * from "./hex_dump.ts";
export * from "./report_json.ts";
export {
  DEFAULT_FIXTURES_DIR,
  FIXTURES_ENV,
  fixturesDir,
  fixturesSource,
  readFixture,
  readOracle,
  siblingFiles,
} from "./fixture_files.ts";
export * from "./vtd_walk.ts";
export * from "./vtd_space.ts";
