/**
 * A real capture behind an Intel vIOMMU (`tests/fixtures/qemu-7.2-linux-6.1-vtd/`, Linux 6.1
 * under QEMU 7.2 with `intel_iommu=on iommu.strict=1`): every ring address is an IOVA, and the
 * inspector must decode every queue by walking the captured VT-d tables itself and agree with
 * QEMU's own answers on every queue, with the exact quirks each queue needs. `deno task test:qemu`
 * checks the same on a fresh capture; this keeps it checked without QEMU.
 */

import assert from "node:assert/strict";
import { readFixture, readOracle, repoRoot } from "../../src/inspect/fixture_files.ts";
import { main } from "../../tools/inspect.ts";
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

/** Runs `deno task inspect` (its main) on an edited copy of the VT-d capture. */
async function inspectEdited(
  edit: (index: VtdIndex) => void,
  pages?: (gz: Uint8Array) => Uint8Array,
): Promise<{ code: number; out: string; err: string }> {
  const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "inspect-vtd-" });
  const base = INDEX.replace(".index.json", "");
  try {
    const index: VtdIndex = JSON.parse(await Deno.readTextFile(INDEX));
    edit(index);
    await Deno.writeTextFile(`${dir}/x.index.json`, JSON.stringify(index));
    const gz = await Deno.readFile(`${base}.pages.bin.gz`);
    await Deno.writeFile(`${dir}/x.pages.bin.gz`, pages ? pages(gz) : gz);
    await Deno.copyFile(`${base}.qmp-virtio.json`, `${dir}/x.qmp-virtio.json`);
    const out: string[] = [], err: string[] = [];
    const log = console.log, error = console.error;
    console.log = (...a: unknown[]) => void out.push(a.join(" "));
    console.error = (...a: unknown[]) => void err.push(a.join(" "));
    try {
      const code = await main([`${dir}/x.index.json`, "--json"]);
      return { code, out: out.join("\n"), err: err.join("\n") };
    } finally {
      console.log = log;
      console.error = error;
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

type VtdIndex = {
  pages: { gpa: number; file_offset: number; why: string[] }[];
  queues: { device: string; queue: number; desc: number; avail: number; used: number }[];
};
type Report = {
  queues: {
    device: string;
    queue: number;
    errors: { code: string; message: string }[];
    qemu: { differences: unknown[] } | null;
  }[];
};
const codes = (r: Report) =>
  Object.fromEntries(r.queues.map((q) => [`${q.device}:${q.queue}`, q.errors.map((e) => e.code)]));

Deno.test("VT-d capture: a ring IOVA that does not translate is that queue's error", async () => {
  const r = await inspectEdited((i) => {
    i.queues.find((q) => q.device === "virtio-blk")!.avail = 0xdead_0000;
  });
  assert.equal(r.code, 1);
  const doc = JSON.parse(r.out) as Report;
  assert.equal(doc.queues.length, 11);
  const c = codes(doc);
  assert.deepEqual(c["virtio-blk:0"], ["IOVA_UNTRANSLATED"]);
  const blk = doc.queues.find((q) => q.device === "virtio-blk")!;
  assert.match(blk.errors[0].message, /IOVA 0xdead0000 .*second-level level \d/);
  for (const q of doc.queues.filter((q) => q.device !== "virtio-blk")) {
    assert.deepEqual(q.errors, [], `${q.device}:${q.queue}`);
    assert.deepEqual(q.qemu?.differences, [], `${q.device}:${q.queue} still agrees`);
  }
});

Deno.test("VT-d capture: level-1 table pages missing: IOMMU_TABLE_NOT_CAPTURED, exit 1", async () => {
  const r = await inspectEdited((i) => {
    i.pages = i.pages.filter((p) => !p.why.some((w) => w.endsWith(" L1")));
  });
  assert.equal(r.code, 1);
  const doc = JSON.parse(r.out) as Report;
  assert.equal(doc.queues.length, 11);
  const all = Object.values(codes(doc)).flat();
  assert.ok(all.length > 0 && all.every((c) => c === "IOMMU_TABLE_NOT_CAPTURED"), all.join());
});

Deno.test("VT-d capture: a truncated pages image is reported per queue, exit 1", async () => {
  const r = await inspectEdited(() => {}, (gz) => gz.subarray(0, gz.length >> 1));
  assert.equal(r.code, 1);
  assert.match(r.err, /WARNING truncated capture/);
  const doc = JSON.parse(r.out) as Report;
  assert.equal(doc.queues.length, 11);
  assert.ok(Object.values(codes(doc)).flat().length > 0);
});
