/**
 * `inspect` never crashes on a capture: each kind of inconsistency is a per-queue error with a
 * code (exit 1) and the other queues are still reported; bad input is one `InspectInputError`
 * (exit 2). Fed from the bundled scenario A, edited.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { main } from "../../tools/inspect.ts";
import { fixturesDir } from "../../src/inspect/fixture_files.ts";
import { gunzip } from "../../src/inspect/fixture.ts";
import { InspectInputError } from "../../src/inspect/inspect_error.ts";
import { gzip } from "./vtd_synth.ts";

const DIR = fixturesDir();
let present = false;
try {
  present = Deno.statSync(`${DIR}/scenarioA.index.json`).isFile;
} catch { /* inspect_fixtures_test.ts fails loudly when fixtures are missing */ }

type Index = {
  ram_size: number;
  pages: { gpa: number; file_offset: number; why: string[] }[];
  queues: Record<string, unknown>[];
  iommu?: unknown;
};

async function run(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const log = console.log, error = console.error;
  console.log = (...a: unknown[]) => void out.push(a.join(" "));
  console.error = (...a: unknown[]) => void err.push(a.join(" "));
  try {
    return { code: await main(argv), out: out.join("\n"), err: err.join("\n") };
  } finally {
    console.log = log;
    console.error = error;
  }
}

/** Writes an edited copy of scenario A (index, pages, oracle) into a temp dir; returns its index. */
async function edited(
  dir: string,
  edit: (index: Index) => void,
  pages?: (gz: Uint8Array) => Uint8Array | Promise<Uint8Array>,
): Promise<string> {
  const index: Index = JSON.parse(await Deno.readTextFile(`${DIR}/scenarioA.index.json`));
  edit(index);
  const gz = await Deno.readFile(`${DIR}/scenarioA.pages.bin.gz`);
  await Deno.writeTextFile(`${dir}/x.index.json`, JSON.stringify(index));
  await Deno.writeFile(`${dir}/x.pages.bin.gz`, pages ? await pages(gz) : gz);
  await Deno.copyFile(`${DIR}/scenarioA.qmp-virtio.json`, `${dir}/x.qmp-virtio.json`);
  return `${dir}/x.index.json`;
}

const net0 = (i: Index) => i.queues.find((q) => q.device === "virtio-net" && q.queue === 0)!;

async function withDir(f: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "inspect-robust-" });
  try {
    await f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The queue headers and the ERROR lines of a text report. */
function queueErrors(out: string): Map<string, string[]> {
  const m = new Map<string, string[]>();
  let cur = "";
  for (const l of out.split("\n")) {
    const h = /^(virtio-\S+ queue \d+)/.exec(l);
    if (h) m.set(cur = h[1], []);
    const e = /^ {2}ERROR (\S+?):/.exec(l);
    if (e && cur) m.get(cur)!.push(e[1]);
  }
  return m;
}

if (present) {
  for (const oracle of [true, false]) {
    Deno.test(`robust: a ring in an uncaptured page (oracle ${oracle}) is RING_UNMAPPED`, async () => {
      await withDir(async (dir) => {
        const index = await edited(dir, (i) => {
          const avail = net0(i).avail as number;
          i.pages = i.pages.filter((p) => p.gpa !== avail - (avail % 4096));
        });
        const r = await run(oracle ? [index] : [index, "--no-oracle"]);
        assert.equal(r.code, 1);
        const errs = queueErrors(r.out);
        assert.equal(errs.size, 11, "every queue is still reported");
        assert.deepEqual(errs.get("virtio-net queue 0"), ["RING_UNMAPPED"]);
        const others = [...errs].filter(([k]) => k !== "virtio-net queue 0");
        // Other queues whose rings share that page fail the same way; the rest are clean.
        for (const [k, v] of others) assert.ok(v.length === 0 || v[0] === "RING_UNMAPPED", k);
        if (oracle) assert.match(r.out, /QEMU: positions and elements not compared: RING_UNMAPPED/);
        assert.match(r.out, /summary: 11 queue\(s\), \d+ problem\(s\)/);
      });
    });
  }

  Deno.test("robust: a truncated pages image is PAGE_TRUNCATED per queue, exit 1", async () => {
    await withDir(async (dir) => {
      // Cut the gzip stream: the pages decoded before the cut stay usable.
      const index = await edited(dir, () => {}, (gz) => gz.subarray(0, gz.length >> 1));
      const r = await run([index]);
      assert.equal(r.code, 1);
      assert.match(r.err, /WARNING truncated capture: .*gzip stream ends early/);
      const errs = queueErrors(r.out);
      assert.equal(errs.size, 11);
      const codes = [...errs.values()].flat();
      assert.ok(codes.includes("PAGE_TRUNCATED"), codes.join());
      assert.ok([...errs.values()].some((v) => v.length === 0), "some queues still decode");
    });
    await withDir(async (dir) => {
      // A complete gzip stream of fewer bytes than the index needs.
      const index = await edited(
        dir,
        () => {},
        async (gz) => await gzip((await gunzip(gz)).subarray(0, 20 * 4096)),
      );
      const r = await run([index, "--json"]);
      assert.equal(r.code, 1);
      const doc = JSON.parse(r.out);
      assert.match(doc.imageProblem, /listed pages are not in the image/);
      assert.equal(doc.queues.length, 11);
    });
  });

  Deno.test("robust: an index pointing outside RAM is RING_OUTSIDE_RAM", async () => {
    await withDir(async (dir) => {
      const index = await edited(dir, (i) => {
        net0(i).desc = i.ram_size + 0x1000;
      });
      const r = await run([index]);
      assert.equal(r.code, 1);
      const errs = queueErrors(r.out);
      assert.deepEqual(errs.get("virtio-net queue 0"), ["RING_OUTSIDE_RAM"]);
      assert.deepEqual(errs.get("virtio-blk queue 0"), []);
      assert.match(r.out, /QEMU DIFFERS status.vring-desc/);
    });
  });

  Deno.test("robust: IOVA rings whose VT-d tables were not captured", async () => {
    await withDir(async (dir) => {
      const index = await edited(dir, (i) => {
        Object.assign(net0(i), { addresses_are_iova: true, bdf: "00:03.0" });
        i.iommu = { rtaddr_reg: "0x7ff000" };
      });
      const r = await run([index]);
      assert.equal(r.code, 1);
      const errs = queueErrors(r.out);
      assert.deepEqual(errs.get("virtio-net queue 0"), ["IOMMU_TABLE_NOT_CAPTURED"]);
      assert.deepEqual(errs.get("virtio-blk queue 0"), []);
      const t = await run([index, "--translate", "0xfffff000"]);
      assert.equal(t.code, 1);
      assert.match(
        t.out,
        /stopped \(page-missing\).*root: table page 0x7ff000 is not in the capture/,
      );
    });
  });

  Deno.test("robust: random edits of the index and image never crash inspect", async () => {
    const index0: Index = JSON.parse(await Deno.readTextFile(`${DIR}/scenarioA.index.json`));
    const paths: (string | number)[][] = [
      ["ram_size"],
      ["pages", 0, "gpa"],
      ["pages", 3, "file_offset"],
      ["queues", 0, "size"],
      ["queues", 2, "desc"],
      ["queues", 2, "avail"],
      ["queues", 5, "used"],
      ["queues", 5, "packed"],
      ["queues", 7, "qemu_status", "last-avail-idx"],
      ["queues", 7, "qemu_status", "used-idx"],
      ["queues", 1, "addresses_are_iova"],
      ["queues", 1, "guest_features"],
      ["iommu"],
    ];
    const values = fc.oneof(
      fc.integer({ min: -1, max: 2 ** 40 }),
      fc.constantFrom(0, 1, 4095, 4096, 65535, 32768, 2 ** 53, index0.ram_size, true, null),
      fc.string({ maxLength: 8 }),
      fc.constant({ rtaddr_reg: "0x1000" }),
    );
    await withDir(async (dir) => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.tuple(fc.constantFrom(...paths), values), { minLength: 1, maxLength: 3 }),
          fc.option(fc.integer({ min: 0, max: 60000 }), { nil: undefined }),
          async (edits, cut) => {
            const index = await edited(
              dir,
              (i) => {
                for (const [path, v] of edits) {
                  let o = i as unknown as Record<string | number, unknown>;
                  for (const k of path.slice(0, -1)) {
                    o = o[k] as Record<string | number, unknown>;
                    if (o === undefined || o === null || typeof o !== "object") return;
                  }
                  o[path[path.length - 1]] = v;
                }
              },
              cut === undefined ? undefined : (gz) => gz.subarray(0, cut),
            );
            try {
              const r = await run([index, "--device", "virtio-rng"]);
              assert.ok(r.code === 0 || r.code === 1);
            } catch (e) {
              assert.ok(e instanceof InspectInputError, String((e as Error).stack ?? e));
            }
          },
        ),
        { numRuns: 40, seed: 15 },
      );
    });
  });
}
