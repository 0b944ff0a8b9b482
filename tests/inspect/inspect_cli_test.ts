/**
 * `deno task inspect` and the fixture loader at the edge: readable and JSON output on the real
 * fixtures, and errors that name the file, the field and the fix.
 */

import assert from "node:assert/strict";
import { main, parseArgs } from "../../tools/inspect.ts";
import { fixturesDir } from "../../src/inspect/fixture_files.ts";
import { InspectInputError } from "../../src/inspect/inspect_error.ts";
import { gunzip, loadFixture } from "../../src/inspect/fixture.ts";
import { parseExactJson } from "../../src/inspect/exact_json.ts";
import { parseQemuOracle } from "../../src/inspect/qemu_oracle.ts";

const DIR = fixturesDir();
let present = false;
try {
  present = Deno.statSync(`${DIR}/scenarioA.index.json`).isFile;
} catch { /* inspect_fixtures_test.ts fails loudly when fixtures are missing */ }

/** Runs the CLI with console output captured. */
async function run(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const log = console.log, error = console.error;
  console.log = (...a: unknown[]) => void out.push(a.join(" "));
  console.error = (...a: unknown[]) => void err.push(a.join(" "));
  try {
    const code = await main(argv);
    return { code, out: out.join("\n"), err: err.join("\n") };
  } finally {
    console.log = log;
    console.error = error;
  }
}

Deno.test("inspect CLI: bad options name the option and the fix", () => {
  const cases: [string[], string][] = [
    [["--bogus"], "--bogus"],
    [[], "<index.json>"],
    [["x.index.json", "--queue", "abc"], "--queue"],
    [["x.index.json", "--positions", "cpu"], "--positions"],
    [["x.index.json", "--device"], "--device"],
  ];
  for (const [argv, field] of cases) {
    assert.throws(() => parseArgs(argv), (e: unknown) => {
      assert.ok(e instanceof InspectInputError);
      assert.equal(e.field, field);
      assert.match(e.message, /Fix: /);
      return true;
    });
  }
  assert.equal(parseArgs(["--help"]), null);
});

Deno.test("fixture loader: errors name the file, the field and the fix", async () => {
  const index = {
    format: "virtio-ring-fixture-v1",
    page_size: 4096,
    ram_size: 1 << 20,
    pages: [{ gpa: 0x1000, file_offset: 0, why: ["test"] }],
    queues: [],
  };
  const gz = async (bytes: Uint8Array) =>
    new Uint8Array(
      await new Response(
        new Blob([bytes as Uint8Array<ArrayBuffer>]).stream().pipeThrough(
          new CompressionStream("gzip"),
        ),
      ).arrayBuffer(),
    );
  const files = { index: "t.index.json", pages: "t.pages.bin.gz" };
  // A good one: one page, readable; the page next to it faults.
  const page = new Uint8Array(4096).fill(0xab);
  const fx = await loadFixture(index, await gz(page), files);
  assert.equal(fx.memory.readU8(0x1fff), 0xab);
  assert.throws(() => fx.memory.readU8(0x2000));
  assert.deepEqual([...(await gunzip(await gz(page))).subarray(0, 2)], [0xab, 0xab]);
  const bad: [unknown, Uint8Array, string, string][] = [
    [{ ...index, queues: [{ device: "d", size: "x" }] }, page, "t.index.json", "queues.0.path"],
    [{ ...index, format: "v2" }, page, "t.index.json", "format"],
    [
      { ...index, pages: [{ gpa: 0x1001, file_offset: 0, why: [] }] },
      page,
      "t.index.json",
      "pages.0.gpa",
    ],
  ];
  for (const [json, pages, file, field] of bad) {
    await assert.rejects(loadFixture(json, await gz(pages), files), (e: unknown) => {
      assert.ok(e instanceof InspectInputError, String(e));
      assert.equal(e.file, file);
      assert.equal(e.field, field);
      return true;
    });
  }
  // A short image is not bad input: the pages it lacks are listed (queues there report
  // PAGE_TRUNCATED) and the problem is named.
  const short = await loadFixture(index, await gz(new Uint8Array(100)), files);
  assert.deepEqual(short.truncatedPages, [0x1000]);
  assert.match(short.imageProblem ?? "", /1 of 1 listed pages are not in the image/);
  await assert.rejects(loadFixture(index, page, files), (e: unknown) => {
    assert.ok(e instanceof InspectInputError);
    assert.equal(e.file, "t.pages.bin.gz");
    assert.match(e.message, /gzip/);
    return true;
  });
  assert.throws(() => parseQemuOracle({ devices: {} }, "q.json"), (e: unknown) => {
    assert.ok(e instanceof InspectInputError);
    assert.equal(e.field, "x-query-virtio");
    return true;
  });
  // 64-bit integers stay exact.
  assert.deepEqual(parseExactJson('{"a": 18446616370416736320, "b": 7}'), {
    a: 18446616370416736320n,
    b: 7,
  });
});

if (present) {
  Deno.test("inspect CLI: text summary on scenario A agrees with QEMU, exit 0", async () => {
    const r = await run([`${DIR}/scenarioA.index.json`, "--device", "virtio-blk", "--hex"]);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /virtio-blk queue 0 {2}split {2}size 256/);
    assert.match(r.out, /avail: idx 46 flags 0x0 {2}used_event 46/);
    // 89: 9 status fields and relations, 5 elements of 16 (3 descriptors each).
    assert.match(
      r.out,
      new RegExp(
        "QEMU: agrees \\(89 comparisons; quirks: element-descs-reversed, " +
          "element-flags-reversed, element-index-is-head, element-indirect-head-only\\)",
      ),
    );
    assert.match(
      r.out,
      /hex desc:\n {4}00000000029be000: c0 5e 98 02 00 00 00 00 30 00 00 00 04 00 01 00/,
    );
    assert.match(r.out, /summary: 1 queue\(s\), no problems, compared with QEMU/);
  });

  Deno.test("inspect CLI: --json on scenario B, packed positions and 247 outstanding", async () => {
    const r = await run([`${DIR}/scenarioB.index.json`, "--json", "--positions", "memory"]);
    assert.equal(r.code, 0);
    const doc = JSON.parse(r.out);
    assert.equal(doc.queues.length, 11);
    assert.equal(doc.problems, 0);
    const net = doc.queues.find((q: { device: string; queue: number }) =>
      q.device === "virtio-net" && q.queue === 0
    );
    assert.equal(net.layout, "packed");
    assert.equal(net.areas.desc.addr, "0x0000000002a83000");
    assert.deepEqual(
      [net.position.lastAvailIdx, net.position.availWrap, net.position.source],
      [9, 1, "memory"],
    );
    assert.equal(net.outstanding.length, 247);
    assert.equal(net.outstanding[0].descriptors[0].addr, "0x0000000002d6b600");
    assert.equal(net.engine.name, "PackedDeviceQueue");
    assert.deepEqual(net.qemu.differences, []);
  });

  Deno.test("inspect CLI: unknown device or queue names the choices", async () => {
    await assert.rejects(run([`${DIR}/scenarioA.index.json`, "--device", "virtio-gpu"]), (e) => {
      assert.ok(e instanceof InspectInputError);
      assert.equal(e.field, "--device");
      assert.match(e.message, /virtio-serial, virtio-rng, virtio-net, virtio-blk/);
      return true;
    });
    await assert.rejects(run([`${DIR}/scenarioA.index.json`, "--queue", "9"]), (e) => {
      assert.ok(e instanceof InspectInputError);
      assert.equal(e.field, "--queue");
      return true;
    });
    await assert.rejects(run([`${DIR}/nope.index.json`]), (e) => {
      assert.ok(e instanceof InspectInputError);
      assert.match(e.message, /nope\.index\.json/);
      return true;
    });
  });
}

if (present) {
  Deno.test("inspect CLI: a corrupted image exits 1 and names the catalogue code", async () => {
    const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "inspect-" });
    try {
      const index = JSON.parse(await Deno.readTextFile(`${DIR}/scenarioA.index.json`));
      const gzBytes = await Deno.readFile(`${DIR}/scenarioA.pages.bin.gz`);
      const pages = await gunzip(gzBytes);
      // virtio-net queue 0: avail ring slot 9 (the next head the device pops) -> 256 (>= size).
      const net = index.queues.find((q: { device: string; queue: number }) =>
        q.device === "virtio-net" && q.queue === 0
      );
      const gpa = net.avail + 4 + 2 * 9;
      const page = index.pages.find((p: { gpa: number }) => p.gpa === (gpa & ~4095));
      new DataView(pages.buffer).setUint16(page.file_offset + (gpa & 4095), 256, true);
      const gz = new Uint8Array(
        await new Response(
          new Blob([pages as Uint8Array<ArrayBuffer>]).stream().pipeThrough(
            new CompressionStream("gzip"),
          ),
        ).arrayBuffer(),
      );
      await Deno.writeTextFile(`${dir}/x.index.json`, JSON.stringify(index));
      await Deno.writeFile(`${dir}/x.pages.bin.gz`, gz);
      const r = await run([`${dir}/x.index.json`, "--device", "virtio-net", "--queue", "0"]);
      assert.equal(r.code, 1);
      assert.match(
        r.out,
        /ERROR AVAIL_HEAD_OUT_OF_RANGE: avail ring position 9 names head 256 >= queue size 256/,
      );
      assert.match(r.err, /oracle: none/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}
