/**
 * Real rings from a Linux 6.1 guest under QEMU 7.2 (`../shared/fixtures/qemu-7.2-linux-6.1/`):
 * for every queue of both scenarios (A split, B packed) our decoding must equal QEMU's own
 * (`x-query-virtio*`): sizes, ring addresses, ring indices, last-avail / used positions, in-use
 * counts, and for every element QEMU lists, the same descriptors (address, length, flags) in the
 * same order. QEMU quirks are normalised by name in `QEMU_QUIRKS` (src/inspect/compare_qemu.ts)
 * and asserted here, so a quirk that disappears (or a new difference) fails the test.
 *
 * If the fixtures directory is missing the tests FAIL, naming where they looked.
 */

import assert from "node:assert/strict";
import { FIXTURES_ENV, fixturesDir, readFixture, readOracle } from "../tools/fixture_files.ts";
import { compareWithQemu, QEMU_QUIRKS } from "../src/inspect/compare_qemu.ts";
import { inspectQueue } from "../src/inspect/inspect_queue.ts";
import { oracleKey, type QemuQueueView } from "../src/inspect/qemu_oracle.ts";
import type { Fixture, FixtureQueue } from "../src/inspect/fixture.ts";
import { SplitRingView } from "../src/inspect/split_view.ts";
import { checkXpDumps, parseHmpXpDumps } from "../src/inspect/hmp_xp.ts";
import { IdentityAddressSpace } from "../src/dma/identity.ts";
import { MemoryFault } from "../src/memory/fault.ts";
import { featureBit, VIRTIO_F_RING_PACKED, VIRTIO_F_RING_RESET } from "../src/virtio/features.ts";

const DIR = fixturesDir();
const present = (() => {
  try {
    return Deno.statSync(`${DIR}/scenarioA.index.json`).isFile;
  } catch {
    return false;
  }
})();

if (!present) {
  Deno.test("real-ring fixtures are present", () => {
    assert.fail(
      `fixtures not found: looked for ${DIR}/scenarioA.index.json (CI has ../shared beside ` +
        `the clone; set ${FIXTURES_ENV} to another directory)`,
    );
  });
}

const cache = new Map<string, Promise<{ fx: Fixture; oracle: Map<string, QemuQueueView> }>>();
function load(sc: "A" | "B") {
  let p = cache.get(sc);
  if (!p) {
    const index = `${DIR}/scenario${sc}.index.json`;
    p = (async () => {
      const fx = await readFixture(index);
      const oracle = await readOracle(index);
      assert.ok(oracle, `no QMP oracle beside ${index}`);
      return { fx, oracle };
    })();
    cache.set(sc, p);
  }
  return p;
}

/** Queues each scenario holds (the capture's devices): 6 serial, 1 rng, 3 net, 1 blk. */
const QUEUES: ReadonlyArray<readonly [string, number]> = [
  ...[0, 1, 2, 3, 4, 5].map((q) => ["virtio-serial", q] as const),
  ["virtio-rng", 0],
  ...[0, 1, 2].map((q) => ["virtio-net", q] as const),
  ["virtio-blk", 0],
];

function queueOf(fx: Fixture, device: string, queue: number): FixtureQueue {
  const q = fx.queues.find((x) => x.device === device && x.queue === queue);
  assert.ok(q, `${device} queue ${queue} missing from the fixture index`);
  return q;
}

if (present) {
  for (const sc of ["A", "B"] as const) {
    for (const [device, queue] of QUEUES) {
      Deno.test(`QEMU agrees: scenario${sc} ${device} queue ${queue}`, async () => {
        const { fx, oracle } = await load(sc);
        const q = queueOf(fx, device, queue);
        assert.equal(q.layout, sc === "A" ? "split" : "packed");
        const view = oracle.get(oracleKey(q.path, q.queue));
        assert.ok(view, `QMP oracle has no ${q.path} queue ${q.queue}`);
        // The index's copy of QEMU's status is the QMP answer itself.
        assert.deepEqual(q.qemuStatus, view.status);
        const cmp = compareWithQemu(q, fx.memory, fx.ramSize, view);
        assert.deepEqual(cmp.differences, [], `differences with QEMU for ${device} q${queue}`);
        // Not vacuous: 7 status fields, plus (split) 5 elements of >= 10 fields each.
        assert.ok(cmp.compared >= (sc === "A" ? 57 : 12), `only ${cmp.compared} comparisons`);
        for (const name of cmp.quirks) assert.ok(name in QEMU_QUIRKS, `undocumented quirk ${name}`);
        if (sc === "A") {
          assert.ok(cmp.quirks.includes("element-descs-reversed"));
        } else {
          // QEMU 7.2 cannot list packed elements; when it can, this must be revisited.
          assert.ok(cmp.quirks.includes("packed-elements-unsupported"));
          assert.ok(view.elements.every((e) => e.error === "Packed ring not supported"));
        }
      });
    }
  }

  Deno.test("fixture memory: kept pages read back, absent pages fault (not zeros)", async () => {
    const { fx } = await load("A");
    assert.equal(fx.keptPages.length, fx.index.pages.length);
    // virtio-serial queue 0 descriptor 0, as QEMU's `xp /32gx 0x2a6c000` printed it.
    assert.equal(fx.memory.readU64(0x2a6c000), 0x2adc000);
    assert.equal(fx.memory.readU64(0x2a6c008), 0x0001000200001000);
    // A page inside RAM that was not kept: an access faults.
    const absent = 0x100000;
    assert.ok(!fx.keptPages.includes(absent));
    assert.throws(() => fx.memory.readU32(absent), MemoryFault);
  });

  Deno.test("features: QEMU's names become the negotiated mask (bit 40 reported unknown)", async () => {
    const a = queueOf((await load("A")).fx, "virtio-blk", 0);
    const b = queueOf((await load("B")).fx, "virtio-blk", 0);
    assert.equal(a.unknownFeatureNames.length, 0);
    assert.equal(a.features & featureBit(VIRTIO_F_RING_PACKED), 0n);
    assert.equal(b.features & featureBit(VIRTIO_F_RING_PACKED), featureBit(VIRTIO_F_RING_PACKED));
    // QEMU quirk "ring-reset-unknown-feature": bit 40 arrives as unknown-dev-features.
    assert.equal(a.features & featureBit(VIRTIO_F_RING_RESET), featureBit(VIRTIO_F_RING_RESET));
  });

  Deno.test("split blk: the indirect chain decodes exactly, 64-bit stale address included", async () => {
    const { fx } = await load("A");
    const q = queueOf(fx, "virtio-blk", 0);
    const view = new SplitRingView({
      memory: fx.memory,
      dma: new IdentityAddressSpace(),
      ramSize: fx.ramSize,
      size: q.size,
      descAddr: q.descAddr,
      availAddr: q.driverAddr,
      usedAddr: q.deviceAddr,
      features: q.features,
    });
    const chain = view.decodeChain(0, 45);
    assert.ok(chain.indirect, "head 0 goes through an indirect table");
    assert.deepEqual(
      chain.descriptors.map((d) => [d.addr, d.len, d.flags]),
      [
        [44393872, 16, 1], // request header, device-readable, NEXT
        [47857664, 4096, 3], // data, device-writable, NEXT
        // status byte slot: after completion the table was freed and SLUB put its (hardened)
        // freelist pointer here; QEMU prints the same 64-bit value. Exact, not rounded.
        [10224275252920443456n, 1, 2],
      ],
    );
  });

  Deno.test("outstanding chains: receive queues hold the buffers QEMU has not popped", async () => {
    for (const sc of ["A", "B"] as const) {
      const { fx } = await load(sc);
      const counts: Record<string, number> = {};
      for (const [device, queue] of QUEUES) {
        const q = queueOf(fx, device, queue);
        const r = inspectQueue(q, { memory: fx.memory, ramSize: fx.ramSize, positions: "memory" });
        assert.deepEqual(r.errors, [], `${sc} ${device} q${queue}: ${JSON.stringify(r.errors)}`);
        counts[`${device}:${queue}`] = r.outstanding.length;
        for (const c of r.outstanding) {
          // Linux posts receive buffers as one device-writable descriptor each.
          assert.equal(c.descriptors.length, 1);
          assert.equal(c.readableBytes, 0);
        }
      }
      // Split: avail idx - last_avail_idx; packed: available slots from the device position.
      assert.deepEqual(counts, {
        "virtio-serial:0": 128,
        "virtio-serial:1": 0,
        "virtio-serial:2": 32,
        "virtio-serial:3": 0,
        "virtio-serial:4": 0,
        "virtio-serial:5": 0,
        "virtio-rng:0": 0,
        "virtio-net:0": 247,
        "virtio-net:1": 0,
        "virtio-net:2": 0,
        "virtio-blk:0": 0,
      }, `scenario ${sc}`);
    }
  });
}

if (present) {
  Deno.test("fixture memory is byte-exact against every QEMU `xp` dump (HMP transcript)", async () => {
    for (const sc of ["A", "B"] as const) {
      const { fx } = await load(sc);
      const text = await Deno.readTextFile(`${DIR}/scenario${sc}.hmp-info-virtio.txt`);
      const dumps = parseHmpXpDumps(text);
      assert.equal(dumps.length, 33, `scenario ${sc}: xp dumps`);
      assert.ok(dumps.every((d) => d.values.length >= 16));
      assert.deepEqual(checkXpDumps(fx.memory, dumps), [], `scenario ${sc}`);
    }
  });
}
