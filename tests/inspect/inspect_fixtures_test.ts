/**
 * Real rings from a Linux 6.1 guest under QEMU 7.2 (`tests/fixtures/qemu-7.2-linux-6.1/`):
 * for every queue of both scenarios (A split, B packed) our decoding must equal QEMU's own
 * (`x-query-virtio*`): sizes, ring addresses, ring indices, last-avail / used positions, in-use
 * counts, and for every element QEMU lists, the same descriptors (address, length, flags) in the
 * same order. QEMU quirks are normalised by name in `QEMU_QUIRKS` (src/inspect/compare_qemu.ts);
 * a quirk is reported only when its normalisation changed the outcome, and the exact set per queue
 * is asserted here, so a quirk whose handling is removed (or a new difference) fails the test.
 * QEMU's private indices are checked by relation against the rings in memory, independently of
 * `compareWithQemu`, and each relation is shown to catch a tampered status.
 *
 * If the fixtures directory is missing the tests FAIL, naming where they looked.
 */

import assert from "node:assert/strict";
import {
  FIXTURES_ENV,
  fixturesDir,
  readFixture,
  readOracle,
} from "../../src/inspect/fixture_files.ts";
import { compareWithQemu, QEMU_QUIRKS } from "../../src/inspect/compare_qemu.ts";
import { inspectQueue } from "../../src/inspect/inspect_queue.ts";
import { oracleKey, qemuFlagNames, type QemuQueueView } from "../../src/inspect/qemu_oracle.ts";
import type { Fixture, FixtureQueue } from "../../src/inspect/fixture.ts";
import { SplitRingView } from "../../src/inspect/split_view.ts";
import { inferPackedPositions, PackedRingView } from "../../src/inspect/packed_view.ts";
import { checkXpDumps, parseHmpXpDumps } from "../../src/inspect/hmp_xp.ts";
import { IdentityAddressSpace } from "../../src/dma/identity.ts";
import { MemoryFault } from "../../src/memory/fault.ts";
import {
  featureBit,
  VIRTIO_F_RING_PACKED,
  VIRTIO_F_RING_RESET,
} from "../../src/virtio/features.ts";

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
      `fixtures not found: looked for ${DIR}/scenarioA.index.json (bundled in ` +
        `tests/fixtures/; restore them with git checkout, or set ${FIXTURES_ENV})`,
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

/**
 * The exact quirks each queue needs (a quirk is reported only when it changed the outcome):
 * - `element-index-arg-modulo`: an element queried with an index argument >= Queue Size
 *   (65535 on queues of 128/32, 8 on the rng's 8); not on net 0/1/2, blk (arguments < size).
 * - `element-index-is-head`: QEMU's `index` is a head that differs from the slot read.
 * - `element-indirect-head-only`: net 2 (control) and blk chains go through indirect tables.
 * - `element-descs-reversed`, `element-flags-reversed`: only blk chains have several
 *   descriptors (header, data, status) and flags `next|write`; every other chain is one
 *   descriptor, where QEMU's order cannot be told from ours.
 * - `shadow-avail-idx-cached`: split serial 0 (shadow 0, avail idx 128), serial 2 (32 vs 35);
 *   packed net 0 (shadow 9 = last-avail-idx, driver at slot 0 after a full lap).
 * - `packed-elements-unsupported`: every packed queue (QEMU 7.2 refuses packed elements).
 */
const EXPECTED_QUIRKS: Readonly<Record<"A" | "B", Readonly<Record<string, readonly string[]>>>> = {
  A: {
    "virtio-serial:0": ["element-index-arg-modulo", "shadow-avail-idx-cached"],
    "virtio-serial:1": ["element-index-arg-modulo", "element-index-is-head"],
    "virtio-serial:2": ["element-index-arg-modulo", "shadow-avail-idx-cached"],
    "virtio-serial:3": ["element-index-arg-modulo", "element-index-is-head"],
    "virtio-serial:4": ["element-index-arg-modulo", "element-index-is-head"],
    "virtio-serial:5": ["element-index-arg-modulo", "element-index-is-head"],
    "virtio-rng:0": ["element-index-arg-modulo", "element-index-is-head"],
    "virtio-net:0": [],
    "virtio-net:1": ["element-index-is-head"],
    "virtio-net:2": ["element-index-is-head", "element-indirect-head-only"],
    "virtio-blk:0": [
      "element-descs-reversed",
      "element-flags-reversed",
      "element-index-is-head",
      "element-indirect-head-only",
    ],
  },
  B: {
    "virtio-serial:0": ["packed-elements-unsupported"],
    "virtio-serial:1": ["packed-elements-unsupported"],
    "virtio-serial:2": ["packed-elements-unsupported"],
    "virtio-serial:3": ["packed-elements-unsupported"],
    "virtio-serial:4": ["packed-elements-unsupported"],
    "virtio-serial:5": ["packed-elements-unsupported"],
    "virtio-rng:0": ["packed-elements-unsupported"],
    "virtio-net:0": ["packed-elements-unsupported", "shadow-avail-idx-cached"],
    "virtio-net:1": ["packed-elements-unsupported"],
    "virtio-net:2": ["packed-elements-unsupported"],
    "virtio-blk:0": ["packed-elements-unsupported"],
  },
};

/** Quirks `compareWithQemu` never reports, with where they are exercised instead. */
const NOT_REPORTED_BY_COMPARE: Readonly<Record<string, string>> = {
  "ring-reset-unknown-feature": "applied when features are read; the features test below",
};

/** Quirks the GPA fixtures cannot show (they need a vIOMMU), with where they are exercised. */
const EXERCISED_ELSEWHERE: Readonly<Record<string, string>> = {
  "element-indirect-unmapped-reads-zero":
    "the VT-d capture tests/fixtures/qemu-7.2-linux-6.1-vtd " +
    "(inspect_vtd_fixture_test.ts: virtio-blk 0, virtio-net 2), a synthetic VT-d capture " +
    "(inspect_iommu_test.ts) and the live VT-d scenario of deno task test:qemu",
};

/** A QEMU view whose status has some fields replaced (to show a relation catches them). */
function withStatus(view: QemuQueueView, patch: Partial<QemuQueueView["status"]>): QemuQueueView {
  return { ...view, status: { ...view.status, ...patch } };
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
        // Not vacuous: 9 status fields and relations, plus (split) 5 elements of >= 10 fields.
        assert.ok(cmp.compared >= (sc === "A" ? 59 : 13), `only ${cmp.compared} comparisons`);
        assert.deepEqual(
          [...cmp.quirks].sort(),
          EXPECTED_QUIRKS[sc][`${device}:${queue}`],
          `quirks needed for scenario${sc} ${device} q${queue}`,
        );
        if (sc === "B") {
          // QEMU 7.2 cannot list packed elements; when it can, this must be revisited.
          assert.ok(view.elements.every((e) => e.error === "Packed ring not supported"));
        }
      });

      Deno.test(`QEMU indices vs memory: scenario${sc} ${device} queue ${queue}`, async () => {
        const { fx, oracle } = await load(sc);
        const q = queueOf(fx, device, queue);
        const view = oracle.get(oracleKey(q.path, q.queue))!;
        const st = view.status;
        const last = st["last-avail-idx"]!;
        const shadow = st["shadow-avail-idx"]!;
        assert.equal(typeof last, "number");
        assert.equal(typeof shadow, "number");
        const n = q.size;
        // Independently of compareWithQemu: read the driver's and device's indices from memory.
        let driver: number;
        let pending: number;
        let usedInMemory: number;
        let modulus: number;
        if (q.layout === "split") {
          const ring = new SplitRingView({
            memory: fx.memory,
            dma: new IdentityAddressSpace(),
            ramSize: fx.ramSize,
            size: n,
            descAddr: q.descAddr,
            availAddr: q.driverAddr,
            usedAddr: q.deviceAddr,
            features: q.features,
          });
          driver = ring.state.availIdx;
          usedInMemory = ring.state.usedIdx;
          modulus = 0x10000;
          pending = (driver - last) & 0xffff;
        } else {
          const g = inferPackedPositions(
            new PackedRingView({
              memory: fx.memory,
              dma: new IdentityAddressSpace(),
              ramSize: fx.ramSize,
              size: n,
              descAddr: q.descAddr,
              driverAddr: q.driverAddr,
              deviceAddr: q.deviceAddr,
              features: q.features,
            }),
          );
          assert.equal(g.basis, "exact");
          driver = g.driverIdx;
          usedInMemory = g.usedIdx;
          modulus = n;
          // Nothing in flight (inuse 0): the device's next avail slot is its used slot.
          assert.equal(st.inuse, 0);
          pending = g.pendingSlots;
        }
        // used-idx: QEMU writes it to the used ring with every flush (packed: the used slot).
        assert.equal(st["used-idx"], usedInMemory, "used-idx vs memory");
        // last-avail-idx <= shadow-avail-idx <= driver index, at most Queue Size apart.
        const behind = (shadow - last + modulus) % modulus;
        const ahead = (driver - shadow + modulus) % modulus;
        assert.ok(pending <= n, `driver ${pending} positions ahead of last-avail-idx ${last}`);
        assert.ok(behind <= pending, `shadow ${shadow} not between ${last} and ${driver}`);
        assert.equal((behind + ahead) % modulus, pending % modulus);

        // compareWithQemu checks the same relations: a tampered status is a difference.
        const fields = (v: QemuQueueView) =>
          compareWithQemu(q, fx.memory, fx.ramSize, v).differences.map((d) => d.field);
        const usedField = q.layout === "split"
          ? "status.used-idx (used ring idx in memory)"
          : "status.used-idx";
        const bad = (x: number) => (x + modulus) % modulus;
        assert.ok(
          fields(withStatus(view, { "used-idx": bad(st["used-idx"] + 1) })).includes(usedField),
        );
        // Shadow one ahead of the driver's index, and one behind last-avail-idx.
        for (const s of [bad(driver + 1), bad(last - 1)]) {
          if (pending === n && q.layout === "packed") continue; // a full lap: every slot is between
          assert.ok(
            fields(withStatus(view, { "shadow-avail-idx": s })).includes("status.shadow-avail-idx"),
            `shadow ${s} accepted`,
          );
        }
      });
    }
  }

  Deno.test("every QEMU quirk is exercised by the fixtures or documented as not compared", () => {
    const seen = new Set(
      Object.values(EXPECTED_QUIRKS).flatMap((sc) => Object.values(sc).flat()),
    );
    for (const name of Object.keys(NOT_REPORTED_BY_COMPARE)) assert.ok(!seen.has(name));
    for (const name of Object.keys(EXERCISED_ELSEWHERE)) assert.ok(!seen.has(name));
    assert.deepEqual(
      [...seen, ...Object.keys(NOT_REPORTED_BY_COMPARE), ...Object.keys(EXERCISED_ELSEWHERE)]
        .sort(),
      Object.keys(QEMU_QUIRKS).sort(),
    );
  });

  Deno.test("a QEMU answer without a quirk is a difference, not a quirk", async () => {
    const { fx, oracle } = await load("A");
    const q = queueOf(fx, "virtio-blk", 0);
    const view = oracle.get(oracleKey(q.path, q.queue))!;
    const el = view.elements[0].element!;
    const ind = new SplitRingView({
      memory: fx.memory,
      dma: new IdentityAddressSpace(),
      ramSize: fx.ramSize,
      size: q.size,
      descAddr: q.descAddr,
      availAddr: q.driverAddr,
      usedAddr: q.deviceAddr,
      features: q.features,
    }).decodeChain(el.index, 0).indirect!;
    assert.deepEqual(qemuFlagNames(ind.flags), ["indirect"]);
    const variants = {
      "element-descs-reversed": { ...el, descs: [...el.descs].reverse() },
      "element-flags-reversed": {
        ...el,
        descs: el.descs.map((d) => ({ ...d, flags: [...d.flags].reverse() })),
      },
      // The head's indirect descriptor listed too (first in chain order: last once reversed).
      "element-indirect-head-only": {
        ...el,
        descs: [...el.descs, { addr: ind.addr, len: ind.len, flags: qemuFlagNames(ind.flags) }],
      },
    };
    for (const [quirk, element] of Object.entries(variants)) {
      const cmp = compareWithQemu(q, fx.memory, fx.ramSize, {
        ...view,
        elements: [{ indexArg: view.elements[0].indexArg, element }],
      });
      assert.ok(cmp.differences.length > 0, `${quirk}: not found`);
      assert.ok(!cmp.quirks.includes(quirk), `${quirk} reported for a ${quirk}-free answer`);
    }
  });

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
