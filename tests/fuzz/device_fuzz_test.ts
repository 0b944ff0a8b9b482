// The device campaign's pure parts: case classes, the canary oracle on a planted stray write,
// the verdict table, and the CLI's one-line usage errors. The campaign against real back-ends
// is tests/vhost_user/device_fuzz_test.ts.

import { assert, assertEquals, assertMatch } from "@std/assert";
import fc from "fast-check";
import {
  classOf,
  deviceCaseArbitrary,
  deviceCaseSchema,
  nthCase,
} from "../../fuzz/device/cases.ts";
import { CaseMemory, GPA_BASE, RAM } from "../../fuzz/device/run_case.ts";
import { deviceFuzzMain, formatVerdictTable } from "../../fuzz/device/main.ts";
import type { VhostUserDevice } from "../../src/vhost_user/mod.ts";

function fakeMemory(): CaseMemory {
  const bytes = new Uint8Array(RAM);
  const dev = { shared: { memory: { view: () => bytes } } } as unknown as VhostUserDevice;
  return new CaseMemory(dev);
}

Deno.test("device cases: deterministic per (seed, index), JSON round trip, every class drawn", () => {
  const arb = deviceCaseArbitrary("net", true);
  assertEquals(nthCase(arb, 9, 4), nthCase(arb, 9, 4));
  const classes = new Set<string>();
  for (let i = 0; i < 400; i++) {
    const c = nthCase(arb, 1, i);
    assertEquals(deviceCaseSchema.parse(JSON.parse(JSON.stringify(c))), c);
    classes.add(classOf(c));
  }
  for (
    const k of [
      "valid",
      "desc-table",
      "indirect",
      "indices",
      "event-suppression",
      "activation",
      "translation",
    ]
  ) assert(classes.has(k), `class ${k} never drawn`);
  // blk devices have one request vring and no translation class
  fc.assert(
    fc.property(
      deviceCaseArbitrary("blk", false),
      (c) => c.kind !== "translation" && c.vring === "req",
    ),
    { numRuns: 200 },
  );
});

Deno.test("canary oracle: a planted stray write outside the granted buffers is reported, granted ones are not", () => {
  const m = fakeMemory();
  m.ram.fill(0xa5);
  m.grant(GPA_BASE + 0x1000, 0x100);
  m.takeSnapshot();
  m.ram[0x1000 + 0x80] = 0; // inside the grant
  m.write(GPA_BASE + 0x5000, new Uint8Array([1, 2, 3])); // our own write
  assertEquals(m.canary(), null);
  m.ram[0x1100] = 7; // one byte past the grant: the planted bug
  assertEquals(m.canary(), { gpa: GPA_BASE + 0x1100, count: 1, was: 0xa5, now: 7 });
});

Deno.test("canary oracle: WRITE descriptors and the indirect tables they name are granted, READ ones are not", () => {
  const m = fakeMemory();
  const dv = new DataView(m.ram.buffer);
  const desc = (at: number, i: number, addr: number, len: number, flags: number) => {
    dv.setBigUint64(at + 16 * i, BigInt(GPA_BASE + addr), true);
    dv.setUint32(at + 16 * i + 8, len, true);
    dv.setUint16(at + 16 * i + 12, flags, true);
  };
  desc(0, 0, 0x2000, 16, 0); // device-readable
  desc(0, 1, 0x3000, 16, 2); // device-writable
  desc(0, 2, 0x400, 32, 4); // indirect table of 2
  desc(0x400, 0, 0x4000, 8, 2);
  desc(0x400, 1, 0x5000, 8, 0);
  m.grantDescriptors(GPA_BASE, 4);
  m.takeSnapshot();
  m.ram[0x3000] = 1;
  m.ram[0x4007] = 1;
  assertEquals(m.canary(), null);
  m.ram[0x2000] = 1;
  assertEquals(m.canary()?.gpa, GPA_BASE + 0x2000);
  assertMatch(m.where(GPA_BASE + 0x2000), /descriptor 0 .*device-READABLE/);
  m.ram[0x2000] = 0;
  m.ram[0x5000] = 1;
  assertEquals(m.canary()?.gpa, GPA_BASE + 0x5000);
});

Deno.test("verdict table: a row per back-end and class, a column per verdict, totals", () => {
  const t = formatVerdictTable(
    [
      {
        backend: "qsd",
        cls: "indices",
        tally: { PASS: 1, REJECT: 2, WEDGED: 0, CORRUPT: 0, CRASH: 0 },
        seconds: 1,
      },
      {
        backend: "testpmd",
        cls: "indices",
        tally: { PASS: 0, REJECT: 0, WEDGED: 3, CORRUPT: 1, CRASH: 0 },
        seconds: 2,
      },
    ],
    7,
    3,
  );
  const lines = t.split("\n");
  assertMatch(
    lines[0],
    /back-end\s+class\s+cases\s+PASS\s+REJECT\s+WEDGED\s+CORRUPT\s+CRASH\s+cases\/s/,
  );
  assertMatch(lines[3], /^testpmd\s+indices\s+4\s+0\s+0\s+3\s+1\s+0\s+2\.0$/);
  assertMatch(lines.at(-1)!, /^total\s+7\s+1\s+2\s+3\s+1\s+0\s+2\.3$/);
});

Deno.test("device CLI: bad input exits 2 with one line naming the flag and the fix", async () => {
  for (
    const args of [
      ["--device", "spdk"],
      ["--device", "qsd", "--fail-on", "MAYBE"],
      ["--device", "qsd", "--seconds", "x"],
      ["--device", "qsd", "--frobnicate", "1"],
    ]
  ) {
    let err = "";
    const code = await deviceFuzzMain(args, { out: () => {}, err: (s) => (err += s) });
    assertEquals(code, 2, args.join(" "));
    assertEquals(err.trim().split("\n").length, 1, err);
    assertMatch(err, /Fix:/);
  }
  let out = "";
  assertEquals(await deviceFuzzMain(["--help"], { out: (s) => (out += s), err: () => {} }), 0);
  assertMatch(out, /PASS, REJECT, WEDGED, CORRUPT or CRASH/);
});
