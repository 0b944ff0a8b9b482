/** Check sites (fuzz/check_sites.ts): the site list comes from the code, hits from lcov. */
import { assert, assertEquals } from "@std/assert";
import {
  checkSiteSummary,
  countSiteHits,
  findCheckSites,
  parseLcovDetail,
  raiseLine,
  ruleNames,
} from "../../fuzz/check_sites.ts";
import { GuestMemory } from "../../src/memory/mod.ts";
import { IdentityAddressSpace } from "../../src/dma/mod.ts";
import {
  DEFAULT_CHAIN_POLICY,
  packedAvailFlags,
  PackedDeviceQueue,
  PackedRingBuilder,
  SplitDeviceQueue,
  SplitRingBuilder,
  VIRTQ_DESC_F_NEXT,
  VirtqError,
} from "../../src/virtio/mod.ts";

const ROOT = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");
const FILES = ["src/virtio/rules.ts", "src/virtio/split/walk.ts", "src/virtio/packed/walk.ts"];
const SOURCES = new Map(FILES.map((f) => [f, Deno.readTextFileSync(`${ROOT}/${f}`)]));

Deno.test("check sites: every exported rule of rules.ts, found in both walks", () => {
  const rules = ruleNames(SOURCES.get("src/virtio/rules.ts")!);
  assert(rules.includes("nextIndexRule") && rules.includes("indirectDescriptorRule"));
  assert(!rules.includes("ruleDetail") && !rules.includes("u64Words"));
  const sites = findCheckSites(SOURCES, rules, ["src/virtio/rules.ts"]);
  // The split walk checks next in the ring (the walk's fast test, then badNext, which raises it)
  // and inside an indirect table.
  const next = sites.filter((s) => s.rule === "nextIndexRule").map((s) => s.method);
  assertEquals(next, ["walk", "badNext", "#walkIndirect"]);
  // Framing is checked in five places: split and packed, ring and table (the split ring twice:
  // the walk's fast test, then the raising helper).
  assertEquals(
    sites.filter((s) => s.rule === "framingRule").map((s) => s.file.split("/")[2]),
    ["packed", "packed", "split", "split", "split"],
  );
  assert(sites.every((s) => !s.file.endsWith("rules.ts")));
});

Deno.test("check sites: hits from the line where the violation starts", () => {
  const src = new Map([[
    "src/x.ts",
    [
      "class W {",
      "  walk(n: number) {",
      "    if (aRule(n) !== null) this.#fail();", // 3: one-line if, raises on its own line
      "    const v = aRule(",
      "      n,",
      "    );",
      "    if (v !== null) this.#fail();", // 7: the verdict's if
      "  }",
      "  #other(n: number) {",
      "    if (aRule(n) === null) return false;", // 10: raises on line 11
      "    this.#fail();",
      "  }",
      "  #fast(n: number) {",
      "    if (",
      "      aRule(n) !== null", // 15: block form, raises on line 17
      "    ) {",
      "      this.#fail();",
      "    }",
      "    if (",
      "      n > 2 ||",
      "      aRule(n) !== null", // 21: second line of a condition, raises on line 22
      "    ) this.#fail();",
      "  }",
      "}",
    ].join("\n"),
  ]]);
  const sites = findCheckSites(src, ["aRule"]);
  assertEquals(sites.map((s) => [s.line, s.method]), [
    [3, "walk"],
    [4, "walk"],
    [10, "#other"],
    [15, "#fast"],
    [21, "#fast"],
  ]);
  // Line counts as deno writes them for a violation taken on EVERY entry of #fast's first if:
  // V8 folds the then-block into its parent (same count), so the only branch record near line
  // 15 is the zero-count continuation (line 18); the raise line itself ran 9 times.
  const lcov = [
    `SF:${ROOT}/src/x.ts`,
    "BRDA:18,0,0,0",
    "BRDA:18,0,1,9",
    "DA:3,5",
    "DA:7,0",
    "DA:11,2",
    "DA:17,9",
    "DA:22,4",
    "end_of_record",
  ].join("\n");
  countSiteHits(sites, parseLcovDetail(lcov, ROOT), src);
  assertEquals(sites.map((s) => s.raiseLine), [3, 7, 11, 17, 22]);
  assertEquals(sites.map((s) => s.hits), [5, 0, 2, 9, 4]);
  assertEquals(sites.map((s) => s.exact), [false, false, true, true, false]);
  const summary = checkSiteSummary(sites);
  assertEquals(summary.multiSiteRules, ["aRule"]);
  assertEquals(summary.unreached.map((s) => s.line), [4]);
  assert(summary.text.includes("1 of 5 sites"), summary.text);
  assert(/ {7}yes {2}aRule @ src\/x.ts:3 /.test(summary.text), summary.text);
  assert(/ {9}9 {2}aRule @ src\/x.ts:15 /.test(summary.text), summary.text);
});

Deno.test("check sites: the raise line of every site of both walks", () => {
  const rules = ruleNames(SOURCES.get("src/virtio/rules.ts")!);
  const sites = findCheckSites(SOURCES, rules, ["src/virtio/rules.ts"]);
  for (const s of sites) {
    const lines = SOURCES.get(s.file)!.split("\n");
    const r = /===\s*(null|RULE_OK)\)\s*return\b/.test(lines[s.line - 1])
      ? s.line + 1
      : raiseLine(lines, s.line);
    assert(r !== undefined && r >= s.line && r <= s.line + 12, `${s.file}:${s.line}: ${r}`);
    // The raise line (or the next, after a `const code = ...`) calls the raising helper.
    const raises = /this\.#?\w+\(|throw\b/;
    assert(raises.test(lines[r! - 1]) || raises.test(lines[r!]), `${s.file}:${r}`);
  }
});

// The identity fast paths' segment limit (split `#addBuffer`, packed `#translate`): the walks
// add a buffer inline while the chain is under the limit, so the fast path raises only for the
// buffer past it, on every entry that finds it in the cached region. The stack of the error
// names the site that raised, independently of coverage: the shape the fuzz targets draw
// (identity DMA, maxSegments 2, a chain of three buffers in one region after one translated
// buffer) raises from the fast path in both walks.
const FAST_MEMORY = () => new GuestMemory([{ gpa: 0, size: 0x10000, name: "ram" }]);

function raisedFrom(e: unknown): string[] {
  if (!(e instanceof VirtqError)) throw new Error(`not a VirtqError: ${e}`);
  assertEquals(e.code, "CHAIN_TOO_MANY_SEGMENTS");
  return (e.stack ?? "").split("\n").map((l: string) => /at \S*?(#?\w+) \(/.exec(l)?.[1] ?? "")
    .filter((m: string) => m !== "");
}

Deno.test("check sites: the split #addBuffer fast path raises the segment limit", () => {
  const memory = FAST_MEMORY();
  const ring = new SplitRingBuilder(memory, 8, { desc: 0, avail: 0x1000, used: 0x2000 });
  const dev = new SplitDeviceQueue({
    memory,
    dma: new IdentityAddressSpace(),
    size: 8,
    addresses: ring.addresses,
    features: 0n,
    policy: { ...DEFAULT_CHAIN_POLICY, maxSegments: 2 },
  });
  // One buffer first: its translation caches the region.
  ring.desc(0, 0x4000n, 16, 0).offer(0);
  dev.push(dev.pop()!, 0);
  ring.desc(1, 0x4100n, 16, 1, 2).desc(2, 0x4200n, 16, 1, 3).desc(3, 0x4300n, 16, 0).offer(1);
  let err: unknown;
  try {
    dev.pop();
  } catch (e) {
    err = e;
  }
  const frames = raisedFrom(err);
  const at = frames.indexOf("#tooManySegments");
  assert(at >= 0 && frames[at + 1] === "#addBuffer", frames.join(" < "));
});

Deno.test("check sites: the packed #translate fast path raises the segment limit", () => {
  const memory = FAST_MEMORY();
  const ring = new PackedRingBuilder(memory, 0x1000, 8);
  const dev = new PackedDeviceQueue({
    memory,
    dma: new IdentityAddressSpace(),
    size: 8,
    addresses: { descAddr: 0x1000, driverAddr: 0x1080, deviceAddr: 0x1084 },
    features: 0n,
    policy: { ...DEFAULT_CHAIN_POLICY, maxSegments: 2 },
  });
  ring.write(0, { addr: 0x4000n, len: 16, id: 0, flags: packedAvailFlags(1) });
  dev.push(dev.pop()!, 0);
  for (let k = 0; k < 3; k++) {
    ring.write(1 + k, {
      addr: BigInt(0x4100 + 0x100 * k),
      len: 16,
      id: 1,
      flags: packedAvailFlags(1) | (k < 2 ? VIRTQ_DESC_F_NEXT : 0),
    });
  }
  let err: unknown;
  try {
    dev.pop();
  } catch (e) {
    err = e;
  }
  const frames = raisedFrom(err);
  const at = frames.indexOf("#tooManySegments");
  assert(at >= 0 && frames[at + 1] === "#translate", frames.join(" < "));
});
