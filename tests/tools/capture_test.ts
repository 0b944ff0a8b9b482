/**
 * `deno task capture` without QEMU: the QMP client and the capture against a fake QEMU
 * (tests/tools/fake_qmp.ts) with a split queue at GPAs, and the same queue at IOVAs behind a
 * fake Intel vIOMMU whose legacy-mode tables the capture must walk. The live test is
 * tests/tools/qemu_live_test.ts (`deno task test:qemu`).
 */

import assert from "node:assert/strict";
import { QmpClient, QmpError } from "../../tools/qmp_client.ts";
import { capture, CaptureError, type CaptureOptions } from "../../tools/capture_core.ts";
import { main, parseCaptureArgs } from "../../tools/capture.ts";
import { readFixture, readOracle } from "../../src/inspect/fixture_files.ts";
import { parseExactJson } from "../../src/inspect/mod.ts";
import {
  canServeFake,
  FakeMemory,
  type FakeQemuConfig,
  fixedFakeSocket,
  startFakeQemu,
} from "./fake_qmp.ts";

/**
 * Unix sockets need net permission in Deno 2.9, scoped to an exact path: `deno task test` allows
 * the one socket `$PWD/.fake-qmp.sock` (VIRTQ_FAKE_QMP_SOCKET) and runs these against it;
 * `deno task test:qemu` (--allow-all) runs them on fresh sockets under /tmp. Without either they
 * are listed as ignored.
 */
const ignore = !canServeFake();

const INDIRECT = 4, WRITE = 2;
const TRANSPORTS = [
  "VIRTIO_RING_F_INDIRECT_DESC: Indirect descriptors supported",
  "VIRTIO_F_VERSION_1: Device compliant for v1 spec (legacy)",
];

/** Lays out a split queue of size 8: head 0 a buffer, head 1 an indirect table of two entries. */
function guest(
  map: (addr: number) => number,
  addrs: { buf: bigint; table: bigint; ind0: bigint; ind1: bigint },
): FakeMemory {
  const m = new FakeMemory();
  m.desc(map(0xfffff000) + 0, 0, addrs.buf, 512, WRITE, 0);
  m.desc(map(0xfffff000) + 16, 1, addrs.table, 32, INDIRECT, 0);
  m.desc(map(0xffffc000) + 0, 0, addrs.ind0, 100, 0, 0);
  m.desc(map(0xffffc000) + 16, 1, addrs.ind1, 8, WRITE, 0);
  m.u16(map(0xffffe000) + 2, 2); // avail idx
  m.u16(map(0xffffe000) + 4, 0);
  m.u16(map(0xffffe000) + 6, 1);
  m.u16(map(0xffffe100) + 2, 2); // used idx
  m.write(map(0xffffd000), new TextEncoder().encode("buffer zero"));
  m.write(map(0xffffb000), new TextEncoder().encode("indirect buffer"));
  return m;
}

/** IOVA page -> GPA page of the fake vIOMMU mapping (the rest of IOVA space unmapped). */
const IOVA_MAP: Record<number, number> = {
  0xfffff000: 0x10000, // descriptor table
  0xffffe000: 0x11000, // avail + used
  0xffffd000: 0x20000, // buffer
  0xffffc000: 0x30000, // indirect table
  0xffffb000: 0x40000, // indirect buffer
};

function opts(qmp: string, out: string, more: Partial<CaptureOptions> = {}): CaptureOptions {
  return {
    qmp,
    out,
    name: "fake",
    resume: false,
    timeoutMs: 2000,
    elementsBack: 2,
    maxPagesPerBuffer: 16,
    dmarBase: 0xfed90000n,
    progress: () => {},
    ...more,
  };
}

function gpaConfig(): FakeQemuConfig {
  const map = (a: number) => IOVA_MAP[a - (a % 4096)] + (a % 4096);
  return {
    memory: guest(map, { buf: 0x20000n, table: 0x30000n, ind0: 0x40000n, ind1: 0x9000_0000n }),
    ramSize: 16 << 20,
    ring: { desc: 0x10000n, avail: 0x11000n, used: 0x11100n, size: 8, lastAvail: 2 },
    transports: TRANSPORTS,
  };
}

Deno.test({
  name: "capture: split queue at GPAs: rings, buffers, indirect table kept; files inspect reads",
  ignore,
  fn: async () => {
    const fake = await startFakeQemu(gpaConfig());
    const out = await Deno.makeTempDir();
    try {
      const s = await capture(opts(fake.path, out));
      assert.equal(s.queues, 1);
      assert.equal(s.iovaQueues, 0);
      assert.equal(s.outsideRam, 1, "the indirect entry at 0x90000000 is beyond 16 MiB of RAM");
      assert.equal(fake.running, false, "left stopped without --resume");
      assert.ok(fake.commands.includes("stop"));
      const index = parseExactJson(await Deno.readTextFile(s.files.index)) as {
        format: string;
        iommu?: unknown;
        pages: { gpa: number; why: string[] }[];
        queues: Record<string, unknown>[];
      };
      assert.equal(index.format, "virtio-ring-fixture-v1");
      assert.equal(index.iommu, undefined);
      const why = Object.fromEntries(index.pages.map((p) => [p.gpa, p.why]));
      assert.deepEqual(why, {
        [0x10000]: ["virtio-blk:0:desc"],
        [0x11000]: ["virtio-blk:0:avail", "virtio-blk:0:used"],
        [0x20000]: ["virtio-blk:0:buf[0]"],
        [0x30000]: ["virtio-blk:0:indirect[0]"],
        [0x40000]: ["virtio-blk:0:ind[0][0]"],
      });
      const q = index.queues[0];
      assert.equal(q.bdf, "00:03.0");
      assert.equal(q.packed, false);
      assert.equal(q.addresses_are_iova, undefined);
      assert.equal(q.indirect_tables_referenced, 1);
      // The files load as a fixture, with the guest's bytes where they were.
      const fx = await readFixture(s.files.index);
      assert.equal(fx.memory.readU16(0x11002), 2);
      assert.equal(fx.memory.readU32(0x10000 + 8), 512);
      assert.equal(new TextDecoder().decode(fx.memory.view(0x40000, 15)), "indirect buffer");
      const oracle = await readOracle(s.files.index);
      assert.equal(oracle?.size, 1);
      assert.equal([...oracle!.values()][0].elements.length, 3, "last-avail-idx and 2 before it");
      assert.match(await Deno.readTextFile(s.files.hmp), /\(qemu\) xp \/32gx 0x10000\n/);
    } finally {
      await fake.close();
      await Deno.remove(out, { recursive: true });
    }
  },
});

Deno.test({
  name: "capture: --resume continues the guest",
  ignore,
  fn: async () => {
    const fake = await startFakeQemu(gpaConfig());
    const out = await Deno.makeTempDir();
    try {
      await capture(opts(fake.path, out, { resume: true }));
      assert.equal(fake.running, true);
      assert.deepEqual(fake.commands.filter((c) => c === "stop" || c === "cont"), ["stop", "cont"]);
    } finally {
      await fake.close();
      await Deno.remove(out, { recursive: true });
    }
  },
});

Deno.test({
  name: "capture: queue at IOVAs behind an Intel vIOMMU: walks the legacy-mode tables",
  ignore,
  fn: async () => {
    const map = (a: number) => IOVA_MAP[a - (a % 4096)] + (a % 4096);
    const m = guest(map, {
      buf: 0xffffd000n,
      table: 0xffffc000n,
      ind0: 0xffffb000n,
      ind1: 0xdead0000n, // not mapped: stops at the L2 entry
    });
    // VT-d legacy mode (spec §9.1, §9.3, §9.8): root table 0x100000, bus 0 -> context table
    // 0x101000, devfn 00:03.0 (24) -> 3-level (AW 1, 39-bit) second-level tables 0x102000 (L3),
    // 0x103000 (L2), 0x104000 (L1).
    m.u64(0x100000, 0x101000n | 1n);
    m.u64(0x101000 + 24 * 16, 0x102000n | 1n);
    m.u64(0x101000 + 24 * 16 + 8, (5n << 8n) | 1n);
    m.u64(0x102000 + 3 * 8, 0x103000n | 3n);
    m.u64(0x103000 + 511 * 8, 0x104000n | 3n);
    for (const [iova, gpa] of Object.entries(IOVA_MAP)) {
      m.u64(0x104000 + ((Number(iova) >> 12) & 0x1ff) * 8, BigInt(gpa) | 3n);
    }
    const fake = await startFakeQemu({
      memory: m,
      ramSize: 16 << 20,
      ring: { desc: 0xfffff000n, avail: 0xffffe000n, used: 0xffffe100n, size: 8, lastAvail: 2 },
      transports: [...TRANSPORTS, "VIRTIO_F_IOMMU_PLATFORM: Device can be used on IOMMU platform"],
      vtd: { ver: 0x10, gsts: 0xc4000000, rtaddr: 0x100000n },
    });
    const out = await Deno.makeTempDir();
    try {
      const s = await capture(opts(fake.path, out));
      assert.equal(s.iovaQueues, 1);
      assert.equal(s.rtaddr, 0x100000n);
      assert.equal(s.untranslated, 1, "the indirect entry at IOVA 0xdead0000 is not mapped");
      const index = parseExactJson(await Deno.readTextFile(s.files.index)) as {
        iommu: { rtaddr_reg: string; iova_to_gpa: Record<string, Record<string, string>> };
        pages: { gpa: number; why: string[] }[];
        queues: Record<string, unknown>[];
      };
      assert.deepEqual(index.iommu, {
        rtaddr_reg: "0x100000",
        iova_to_gpa: {
          "00:03.0": {
            "0xfffff000": "0x10000",
            "0xffffe000": "0x11000",
            "0xffffd000": "0x20000",
            "0xffffc000": "0x30000",
            "0xffffb000": "0x40000",
          },
        },
      });
      const q = index.queues[0];
      assert.equal(q.addresses_are_iova, true);
      assert.equal(q.bdf, "00:03.0");
      assert.equal(q.desc, 0xfffff000, "ring addresses stay as the driver programmed them");
      const why = Object.fromEntries(index.pages.map((p) => [p.gpa, p.why]));
      assert.deepEqual(why[0x100000], ["vtd:root"]);
      assert.deepEqual(why[0x101000], ["vtd:context"]);
      assert.deepEqual(why[0x102000], ["vtd:second-level L3"]);
      assert.deepEqual(why[0x103000], ["vtd:second-level L2"]);
      assert.deepEqual(why[0x104000], ["vtd:second-level L1"]);
      assert.deepEqual(why[0x10000], ["virtio-blk:0:desc"]);
      assert.deepEqual(why[0x11000], ["virtio-blk:0:avail", "virtio-blk:0:used"]);
      assert.deepEqual(why[0x30000], ["virtio-blk:0:indirect[0]"]);
      assert.deepEqual(why[0x40000], ["virtio-blk:0:ind[0][0]"]);
      assert.equal(index.pages.length, 10);
      const hmpText = await Deno.readTextFile(s.files.hmp);
      assert.match(hmpText, /\(qemu\) xp \/1gx 0xfed90020\n00000000fed90020: 0x0000000000100000\n/);
    } finally {
      await fake.close();
      await Deno.remove(out, { recursive: true });
    }
  },
});

Deno.test({
  name: "capture: a vIOMMU with translation disabled leaves addresses as GPAs",
  ignore,
  fn: async () => {
    const cfg = gpaConfig();
    cfg.transports = [
      ...TRANSPORTS,
      "VIRTIO_F_IOMMU_PLATFORM: Device can be used on IOMMU platform",
    ];
    cfg.vtd = { ver: 0x10, gsts: 0, rtaddr: 0n };
    const fake = await startFakeQemu(cfg);
    const out = await Deno.makeTempDir();
    try {
      const s = await capture(opts(fake.path, out));
      assert.equal(s.iovaQueues, 0);
      assert.equal(s.rtaddr, undefined);
    } finally {
      await fake.close();
      await Deno.remove(out, { recursive: true });
    }
  },
});

Deno.test({
  name: "capture: a command QEMU never answers times out with one line",
  ignore,
  fn: async () => {
    const cfg = gpaConfig();
    cfg.silentOn = "x-query-virtio";
    const fake = await startFakeQemu(cfg);
    const out = await Deno.makeTempDir();
    try {
      await assert.rejects(capture(opts(fake.path, out, { timeoutMs: 200 })), (e: unknown) => {
        assert.ok(e instanceof CaptureError);
        assert.equal(e.badInput, false);
        assert.match(e.message, /x-query-virtio within 200 ms/);
        assert.doesNotMatch(e.message, /\n/);
        return true;
      });
    } finally {
      await fake.close();
      await Deno.remove(out, { recursive: true });
    }
  },
});

Deno.test({
  name: "QMP client: QEMU's error class, events skipped, 64-bit values exact",
  ignore,
  fn: async () => {
    const cfg = gpaConfig();
    cfg.ring.desc = 0xffff_ffff_ffff_f000n;
    const fake = await startFakeQemu(cfg);
    const c = await QmpClient.connect(fake.path, { timeoutMs: 1000 });
    try {
      assert.deepEqual(
        { major: c.version.major, minor: c.version.minor, micro: c.version.micro },
        { major: 7, minor: 2, micro: 22 },
      );
      await assert.rejects(c.execute("no-such-command"), (e: unknown) => {
        assert.ok(e instanceof QmpError);
        assert.equal(e.errorClass, "CommandNotFound");
        return true;
      });
      const st = await c.execute("x-query-virtio-queue-status", { path: "p", queue: 0 }) as Record<
        string,
        unknown
      >;
      assert.equal(st["vring-desc"], 0xffff_ffff_ffff_f000n);
      assert.ok(c.events.length >= 2, "the fake sends an event before each answer");
      assert.match(await c.hmp("info status"), /paused/);
    } finally {
      await c.close();
      await fake.close();
    }
  },
});

Deno.test({
  name: "capture CLI: bad input exits 2 with one line naming the option and the fix",

  fn: async () => {
    const cases: [string[], RegExp][] = [
      [[], /--qmp: missing/],
      [["--qmp", "/tmp/x.sock"], /--out: missing/],
      [["--qmp"], /--qmp: needs a value/],
      [["--bogus"], /--bogus: unknown argument/],
      [["--qmp", "s", "--out", "o", "--name", "a/b"], /--name/],
      [["--qmp", "s", "--out", "o", "--timeout", "fast"], /--timeout/],
      [["--qmp", "s", "--out", "o", "--dmar-base", "fed90000"], /--dmar-base/],
    ];
    for (const [argv, re] of cases) {
      assert.throws(() => parseCaptureArgs(argv), (e: unknown) => {
        assert.ok(e instanceof CaptureError && e.badInput);
        assert.match(e.message, re);
        return true;
      });
    }
    assert.equal(parseCaptureArgs(["--help"]), null);
    const err: string[] = [];
    const error = console.error;
    console.error = (...a: unknown[]) => void err.push(a.join(" "));
    try {
      const dir = await Deno.makeTempDir();
      // Nothing listens there (under deno task test, the one socket path net access allows).
      const none = fixedFakeSocket() ?? `${dir}/none.sock`;
      await Deno.remove(none).catch(() => {});
      const code = await main(["--qmp", none, "--out", dir]);
      await Deno.remove(dir, { recursive: true });
      assert.equal(code, 2);
      assert.equal(err.length, 1);
      assert.ok(err[0].includes(`${none}: cannot talk QMP `), err[0]);
      assert.match(err[0], /cannot talk QMP .* Fix: start QEMU with -qmp unix:/);
    } finally {
      console.error = error;
    }
  },
});
