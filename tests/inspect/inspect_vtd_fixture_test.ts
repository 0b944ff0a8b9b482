/**
 * A real capture behind an Intel vIOMMU (`tests/fixtures/qemu-7.2-linux-6.1-vtd/`, Linux 6.1
 * under QEMU 7.2 with `intel_iommu=on iommu.strict=1`): every ring address is an IOVA, and the
 * inspector must decode every queue by walking the captured VT-d tables itself and agree with
 * QEMU's own answers on every queue, with the exact quirks each queue needs. `deno task test:qemu`
 * checks the same on a fresh capture; this keeps it checked without QEMU.
 */

import assert from "node:assert/strict";
import { readFixture, readOracle, repoRoot } from "../../tools/fixture_files.ts";
import { compareWithQemu } from "../../src/inspect/compare_qemu.ts";
import { inspectQueue } from "../../src/inspect/inspect_queue.ts";
import { oracleKey } from "../../src/inspect/qemu_oracle.ts";
import { checkXpDumps, parseHmpXpDumps } from "../../src/inspect/hmp_xp.ts";
import {
  crossCheckIovaMap,
  fixtureDmaSpace,
  VtdAddressSpace,
} from "../../src/inspect/vtd_space.ts";

const INDEX = `${repoRoot()}/tests/fixtures/qemu-7.2-linux-6.1-vtd/vtd.index.json`;

/** Quirks per queue (reported only when they changed the outcome; see QEMU_QUIRKS). */
const EXPECTED_QUIRKS: Readonly<Record<string, readonly string[]>> = {
  "virtio-serial:0": ["element-index-arg-modulo", "shadow-avail-idx-cached"],
  "virtio-serial:1": ["element-index-arg-modulo", "element-index-is-head"],
  "virtio-serial:2": ["element-index-arg-modulo", "shadow-avail-idx-cached"],
  "virtio-serial:3": ["element-index-arg-modulo", "element-index-is-head"],
  "virtio-serial:4": ["element-index-arg-modulo", "element-index-is-head"],
  "virtio-serial:5": ["element-index-arg-modulo", "element-index-is-head"],
  "virtio-rng:0": ["element-index-is-head"],
  "virtio-net:0": [],
  "virtio-net:1": ["element-index-is-head"],
  // Finished control / block requests: their indirect tables were unmapped (strict mode).
  "virtio-net:2": [
    "element-index-is-head",
    "element-indirect-head-only",
    "element-indirect-unmapped-reads-zero",
  ],
  "virtio-blk:0": [
    "element-index-is-head",
    "element-indirect-head-only",
    "element-indirect-unmapped-reads-zero",
  ],
};

const load = (() => {
  let p: ReturnType<typeof loadBoth> | undefined;
  return () => p ??= loadBoth();
})();
async function loadBoth() {
  const fx = await readFixture(INDEX);
  const oracle = await readOracle(INDEX);
  assert.ok(oracle, `no QMP oracle beside ${INDEX}`);
  return { fx, oracle };
}

for (const key of Object.keys(EXPECTED_QUIRKS)) {
  Deno.test(`VT-d capture: ${key} decodes at its IOVAs and agrees with QEMU`, async () => {
    const { fx, oracle } = await load();
    const [device, n] = key.split(":");
    const q = fx.queues.find((x) => x.device === device && x.queue === Number(n));
    assert.ok(q, `${key} missing`);
    assert.equal(q.addressesAreIova, true);
    const dma = fixtureDmaSpace(fx, q);
    assert.ok(dma instanceof VtdAddressSpace, "decoded through the captured VT-d tables");
    const r = inspectQueue(q, { memory: fx.memory, ramSize: fx.ramSize, dma });
    assert.deepEqual(r.errors, []);
    // The ring areas are IOVAs the walk translated to other GPAs, inside RAM.
    for (const a of [q.descAddr, q.driverAddr, q.deviceAddr]) {
      const w = dma.walk(BigInt(a));
      assert.ok(w.ok, `IOVA ${a}: ${!w.ok && w.message}`);
      assert.equal(w.translation, "second-level");
      assert.notEqual(w.gpa, BigInt(a));
      assert.ok(w.gpa < BigInt(fx.ramSize));
    }
    const view = oracle.get(oracleKey(q.path, q.queue));
    assert.ok(view);
    const cmp = compareWithQemu(q, fx.memory, fx.ramSize, view, dma);
    assert.deepEqual(cmp.differences, []);
    assert.equal(cmp.skipped, undefined);
    assert.ok(cmp.compared >= 59, `only ${cmp.compared} comparisons`);
    assert.deepEqual([...cmp.quirks].sort(), EXPECTED_QUIRKS[key]);
  });
}

Deno.test("VT-d capture: 11 queues, the capture's iova_to_gpa agrees with the walk", async () => {
  const { fx } = await load();
  assert.equal(fx.queues.length, Object.keys(EXPECTED_QUIRKS).length);
  const x = crossCheckIovaMap(fx);
  assert.ok(x.checked > 100, `only ${x.checked} iova_to_gpa entries`);
  assert.deepEqual(x.differences, []);
});

Deno.test("VT-d capture: the kept pages equal QEMU's own xp dumps", async () => {
  const { fx } = await load();
  const hmp = await Deno.readTextFile(INDEX.replace(".index.json", ".hmp-info-virtio.txt"));
  const dumps = parseHmpXpDumps(hmp).filter((d) => !/0xfed9/.test(d.command));
  assert.ok(dumps.length >= 11);
  assert.deepEqual(checkXpDumps(fx.memory, dumps), []);
});
