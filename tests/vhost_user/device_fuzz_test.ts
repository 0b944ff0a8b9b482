// The device campaign against real back-ends: every verdict is shown to fire on a case that
// produces it (PASS on valid work, REJECT on a back-end that hangs up, WEDGED on a descriptor
// the back-end retries forever, CORRUPT on DPDK's read across scattered IOVA pages, CRASH on a
// killed back-end), and a short campaign writes its report and corpus. `deno task test:vhost-user`.

import { assert, assertEquals, assertMatch } from "@std/assert";
import { DeviceBackend } from "../../fuzz/device/backend.ts";
import { type CaseResult, runDeviceCase } from "../../fuzz/device/run_case.ts";
import type { DeviceCase } from "../../fuzz/device/cases.ts";
import { deviceFuzzMain } from "../../fuzz/device/main.ts";
import { mergeMain } from "../../fuzz/merge.ts";
import { parseReport } from "../../fuzz/report.ts";
import { CAN_RUN, skipWithout, WORK_DIR } from "./_rig.ts";

const opts = { ignore: !CAN_RUN, sanitizeOps: false, sanitizeResources: false };

function ring(corruption: string, vring: "rx" | "tx" | "req"): DeviceCase {
  return {
    kind: "split-ring",
    vring,
    input: {
      size: 8,
      indirect: false,
      inOrder: false,
      policy: {
        zeroLength: "reject",
        indirectWithNext: "reject",
        unknownFlags: "ignore",
        maxSegments: 65536,
      },
      permSeed: 1,
      chains: [{ readable: [16], writable: [600, 1], indirectAt: -1 }],
      corruption: { kind: corruption as "none", chain: 0, at: 0, value: 5 },
      raw: null,
    },
    events: null,
  } as DeviceCase;
}

async function withBackend(
  spec: "qsd" | "testpmd",
  iommu: boolean,
  fn: (be: DeviceBackend) => Promise<void> | void,
) {
  if (skipWithout(spec)) return;
  const be = await DeviceBackend.start(spec, { dir: WORK_DIR, iommu });
  try {
    await fn(be);
  } finally {
    await be.stop();
  }
}

function show(r: CaseResult): string {
  return `${r.verdict} ${r.code}: ${r.detail}`;
}

Deno.test({
  name: "device verdicts on qsd: PASS (valid), REJECT (index jump: hang-up), CRASH (killed)",
  ...opts,
  async fn() {
    await withBackend("qsd", false, async (be) => {
      const ok = runDeviceCase(be, ring("none", "req"), 1);
      assertEquals(ok.verdict, "PASS", show(ok));
      assertMatch(ok.detail, /returned the image's bytes; write to sector \d+ landed/);
      const rej = runDeviceCase(be, ring("idx-jump", "req"), 2);
      assertEquals(rej.verdict, "REJECT", show(rej));
      const again = runDeviceCase(be, ring("none", "req"), 3);
      assertEquals(
        again.verdict,
        "PASS",
        `the next case runs on a fresh connection: ${show(again)}`,
      );
      be.be.kill();
      await new Promise((r) => setTimeout(r, 200));
      const crash = runDeviceCase(be, ring("none", "req"), 4);
      assertEquals(crash.verdict, "CRASH", show(crash));
      await be.restart();
      const after = runDeviceCase(be, ring("none", "req"), 5);
      assertEquals(after.verdict, "PASS", `after the restart: ${show(after)}`);
    });
  },
});

Deno.test({
  name:
    "device verdicts on testpmd (ACCESS_PLATFORM): WEDGED (never-mapped IOVA), CORRUPT (scattered IOVA pages)",
  ...opts,
  async fn() {
    await withBackend("testpmd", true, (be) => {
      const w = runDeviceCase(
        be,
        { kind: "translation", what: "never-mapped", vring: "tx", value: 1 },
        1,
        {
          probeMs: 400,
        },
      );
      assertEquals(w.verdict, "WEDGED", show(w));
      const c = runDeviceCase(be, {
        kind: "translation",
        what: "scattered-pages",
        vring: "rx",
        value: 1,
      }, 2);
      assertEquals(c.verdict, "CORRUPT", show(c));
      assertMatch(c.detail, /not granted/);
    });
  },
});

Deno.test({
  name: "device campaign: --device qsd writes the JSON report, JUnit and a replayable corpus",
  ...opts,
  async fn() {
    if (skipWithout("qsd")) return;
    Deno.mkdirSync(WORK_DIR, { recursive: true });
    const json = `${WORK_DIR}/device.json`, junit = `${WORK_DIR}/device.xml`;
    let out = "";
    const code = await deviceFuzzMain(
      [
        "--device",
        "qsd",
        "--runs",
        "25",
        "--seconds",
        "30",
        "--seed",
        "3",
        "--json",
        json,
        "--junit",
        junit,
        "--corpus",
        `${WORK_DIR}/corpus`,
        "--fail-on",
        "none",
        "--require-pass",
      ],
      { out: (s) => (out += s), err: (s) => (out += s) },
    );
    assertEquals(code, 0, out);
    assertMatch(out, /back-end\s+class\s+cases\s+PASS\s+REJECT\s+WEDGED\s+CORRUPT\s+CRASH/);
    const rep = JSON.parse(Deno.readTextFileSync(json));
    assertEquals(rep.format, "virtq-lab/fuzz-report@1");
    assertEquals(rep.totals.runs, 25);
    assert(rep.targets.every((t: { target: string }) => t.target.startsWith("device-qsd-")));
    assertMatch(Deno.readTextFileSync(junit), /<testcase classname="fuzz" name="device-qsd-/);
    // a second campaign (another seed) and `fuzz:merge` of the two device reports
    const json2 = `${WORK_DIR}/device-2.json`, merged = `${WORK_DIR}/device-merged.json`;
    const code2 = await deviceFuzzMain(
      ["--device", "qsd", "--runs", "10", "--seconds", "30", "--seed", "4", "--json", json2]
        .concat(["--corpus", `${WORK_DIR}/corpus`, "--fail-on", "none"]),
      { out: (s) => (out += s), err: (s) => (out += s) },
    );
    assertEquals(code2, 0, out);
    let mout = "";
    const mcode = mergeMain(
      [json, json2, "--json", merged],
      (s) => (mout += s),
      (s) => (mout += s),
    );
    assert(mcode === 0 || mcode === 1, mout);
    const m = parseReport(merged, JSON.parse(Deno.readTextFileSync(merged)));
    assertEquals(m.totals.runs, 35);
    assertEquals(m.campaigns.map((c) => [c.seed, c.devices]), [[3, ["qsd"]], [4, ["qsd"]]]);
    for (const t of m.targets) {
      const v = t.verdicts!;
      assertEquals(v.PASS + v.REJECT + v.WEDGED + v.CORRUPT + v.CRASH, t.runs, t.target);
    }
  },
});

function packed(
  chains: { readable: number[]; writable: number[] }[],
  vring: "rx" | "tx",
): DeviceCase {
  return {
    kind: "packed-ring",
    vring,
    input: {
      size: 4,
      indirect: false,
      inOrder: false,
      eventIdx: false,
      drvEvent: null,
      policy: {
        zeroLength: "reject",
        indirectWithNext: "reject",
        unknownFlags: "ignore",
        maxSegments: 65536,
      },
      preroll: 2,
      hold: false,
      reoffer: false,
      chains: chains.map((c, i) => ({ ...c, indirect: false, id: 100 + i })),
      corruption: null,
      raw: [],
    },
  };
}

Deno.test({
  name:
    "device verdicts on testpmd, packed ring: PASS (writable RX lists, TX lists), CORRUPT (DPDK writes a device-readable RX descriptor)",
  ...opts,
  async fn() {
    await withBackend("testpmd", false, (be) => {
      assert(be.packed, "testpmd offers VIRTIO_F_RING_PACKED");
      // The first case on a fresh testpmd used to WEDGE now and then: testpmd forwarded only
      // after it saw the link up, so on a loaded machine the whole session could end before
      // forwarding began. startTestpmd now waits for forwarding; a valid case passes at once.
      const valid = (c: DeviceCase, n: number) => runDeviceCase(be, c, n);
      const rx = valid(packed([{ readable: [], writable: [200] }], "rx"), 1);
      assertEquals(rx.verdict, "PASS", show(rx));
      const tx = valid(packed([{ readable: [80], writable: [] }], "tx"), 2);
      assertEquals(tx.verdict, "PASS", show(tx));
      // fill_vec_buf_packed maps every descriptor with the caller's permission (RW on the RX
      // path) and never looks at VIRTQ_DESC_F_WRITE: the frame lands in a readable buffer.
      const bad = runDeviceCase(be, packed([{ readable: [200], writable: [] }], "rx"), 3);
      assertEquals(bad.verdict, "CORRUPT", show(bad));
      assertMatch(bad.detail, /not granted.*device-READABLE/);
    });
  },
});

Deno.test({
  name: "device verdicts on testpmd, real rings: a captured RX and TX ring pass the probe",
  ...opts,
  async fn() {
    await withBackend("testpmd", false, (be) => {
      // A corruption that writes the value already there (the RX ring's first descriptor length).
      const seedCase = (seed: string, vring: "rx" | "tx", value: number): DeviceCase => ({
        kind: "real-ring",
        vring,
        seed,
        corruption: { area: "driver", offset: 0, width: 2, value, field: "avail.flags" },
      });
      const rx = runDeviceCase(be, seedCase("scenarioA/virtio-net/0", "rx", 0), 1);
      assertEquals(rx.verdict, "PASS", show(rx));
      assertMatch(rx.detail, /probe RX buffer, MACs swapped/);
      const tx = runDeviceCase(be, seedCase("scenarioA/virtio-net/1", "tx", 0), 2);
      assertEquals(tx.verdict, "PASS", show(tx));
    });
  },
});
