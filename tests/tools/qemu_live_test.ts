/**
 * `deno task test:qemu`: boots QEMU 7.2 (TCG, 256 MiB) with a Debian cloud kernel and a busybox
 * initramfs doing block, net, rng and console I/O, captures it with `deno task capture`'s code in
 * three scenarios (split rings; `packed=on`; q35 + intel-iommu + `iommu_platform=on` with guest
 * `intel_iommu=on iommu.strict=1`), and requires `deno task inspect` to agree with QEMU on every
 * queue of each, and the captured pages to match QEMU's own `xp` dumps byte for byte.
 *
 * Needs `--allow-all` (it runs QEMU): under `deno task test` it is ignored. Without
 * `qemu-system-x86_64` it fails when `CI=true` and says it skipped otherwise
 * (`bash .ci/install-qemu.sh` installs it).
 */

import assert from "node:assert/strict";
import {
  ensureGuest,
  READY_MARKER,
  type Scenario,
  startGuest,
  waitForSerial,
} from "../../tools/qemu_guest.ts";
import { capture } from "../../tools/capture_core.ts";
import { main as inspectMain } from "../../tools/inspect.ts";
import { readFixture } from "../../src/inspect/fixture_files.ts";
import {
  checkXpDumps,
  memoryPageSource,
  parseBdf,
  parseExactJson,
  parseHmpXpDumps,
  QEMU_QUIRKS,
  vtdWalk,
} from "../../src/inspect/_internal.ts";

// The live boot runs under `deno task test:qemu` (--allow-all); `deno task test` grants run (for
// other tools) but only named environment variables, so the live test stays out of it.
const canRun = Deno.permissions.querySync({ name: "run" }).state === "granted" &&
  Deno.permissions.querySync({ name: "env" }).state === "granted";

function qemuVersion(): string | null {
  try {
    const r = new Deno.Command("qemu-system-x86_64", { args: ["--version"], stdout: "piped" })
      .outputSync();
    return r.success ? new TextDecoder().decode(r.stdout).split("\n")[0] : null;
  } catch {
    return null;
  }
}

const version = canRun ? qemuVersion() : null;
const inCi = canRun && Deno.env.get("CI") === "true";
const haveTools = canRun && version !== null && /version 7\.2\./.test(version);

if (canRun && !haveTools && !inCi) {
  console.log(
    `qemu live test SKIPPED: ${version ?? "qemu-system-x86_64 not found"} (needs QEMU 7.2 from ` +
      "Debian's qemu-system-x86; run bash .ci/install-qemu.sh)",
  );
}

/** Runs `deno task inspect FILE --json`, returns its exit status and parsed report. */
async function inspectJson(file: string): Promise<{ code: number; report: InspectReport }> {
  const out: string[] = [];
  const log = console.log, error = console.error;
  console.log = (...a: unknown[]) => void out.push(a.join(" "));
  console.error = () => {};
  try {
    const code = await inspectMain([file, "--json"]);
    return { code, report: parseExactJson(out.join("\n")) as InspectReport };
  } finally {
    console.log = log;
    console.error = error;
  }
}

interface InspectReport {
  problems: number;
  queues: {
    device: string;
    queue: number;
    errors: { code: string; message: string }[];
    addressesAreIova?: boolean;
    qemu: { compared: number; differences: unknown[]; quirks: string[] } | null;
  }[];
}

const timings: Record<string, { bootS: number; captureMs: number }> = {};

async function scenario(t: Deno.TestContext, sc: Scenario): Promise<void> {
  const guest = await ensureGuest((l) => console.log(l));
  const dir = await Deno.makeTempDir({ prefix: `virtq-qemu-${sc}-` });
  const t0 = performance.now();
  const g = await startGuest(guest, sc, dir);
  let bootS = 0, captureMs = 0;
  try {
    const serial = await waitForSerial(g, READY_MARKER, 120_000);
    bootS = Math.round((performance.now() - t0) / 100) / 10;
    // The guest's I/O happened: block read/write, ping, hwrng, virtconsole.
    assert.match(serial, /SECTOR 00005000/);
    assert.match(serial, /packets received/);
    assert.match(serial, /virtio_rng/);
    assert.match(await Deno.readTextFile(`${dir}/virtconsole.log`), /hello-from-guest/);
    if (sc === "vtd") assert.match(serial, /iommu: dmar0/);

    const c0 = performance.now();
    const s = await capture({
      qmp: g.qmp,
      out: dir,
      name: sc,
      resume: false,
      timeoutMs: 10_000,
      elementsBack: 4,
      maxPagesPerBuffer: 16,
      dmarBase: 0xfed90000n,
      progress: () => {},
    });
    captureMs = Math.round(performance.now() - c0);
    await Deno.writeTextFile(`${dir}/${sc}.qemu-cmdline.txt`, g.cmdline.join(" ") + "\n");
    assert.equal(s.devices, 4);
    assert.equal(s.queues, 11, "blk 1 + net 3 + rng 1 + serial 6 queues");

    const index = parseExactJson(await Deno.readTextFile(s.files.index)) as {
      iommu?: { rtaddr_reg: string };
      queues: {
        device: string;
        queue: number;
        packed: boolean;
        addresses_are_iova?: boolean;
        bdf?: string;
        desc: number;
        avail: number;
        used: number;
      }[];
    };
    for (const q of index.queues) {
      assert.equal(q.packed, sc === "packed", `${q.device}:${q.queue} layout`);
      assert.equal(q.addresses_are_iova ?? false, sc === "vtd", `${q.device}:${q.queue} IOVA`);
      assert.match(q.bdf ?? "", /^00:[0-9a-f]{2}\.0$/);
    }
    const fx = await readFixture(s.files.index);

    // The kept pages are what QEMU itself reads at those GPAs.
    const dumps = parseHmpXpDumps(await Deno.readTextFile(s.files.hmp))
      .filter((d) => !/0xfed9/.test(d.command));
    assert.ok(dumps.length >= 11);
    assert.deepEqual(checkXpDumps(fx.memory, dumps), []);

    if (sc === "vtd") {
      assert.ok(index.iommu && BigInt(index.iommu.rtaddr_reg) !== 0n, "RTADDR_REG captured");
      // Every ring area translates by walking the captured tables (nothing fetched any more),
      // with the inspector's own walk (the capture used the same vtdWalk to fetch them).
      const source = memoryPageSource(fx.memory);
      for (const q of index.queues) {
        const sourceId = parseBdf(q.bdf!);
        assert.ok(sourceId !== null, `${q.device}:${q.queue} bdf ${q.bdf}`);
        for (const a of [q.desc, q.avail, q.used]) {
          const r = vtdWalk(
            { rtaddr: BigInt(index.iommu!.rtaddr_reg), sourceId, iova: BigInt(a) },
            source,
          );
          assert.ok(r.ok, `${q.device}:${q.queue} IOVA 0x${a.toString(16)}: ${!r.ok && r.message}`);
          assert.equal(r.translation, "second-level", `${q.device}:${q.queue} not pass-through`);
          assert.ok(r.gpa < BigInt(fx.ramSize), `${q.device}:${q.queue} GPA in RAM`);
        }
      }
    }

    // The inspector agrees with QEMU on every queue (the VT-d one decoding at IOVAs).
    const { code, report } = await inspectJson(s.files.index);
    for (const q of report.queues) {
      assert.deepEqual(q.errors, [], `${sc} ${q.device}:${q.queue} validation`);
      assert.ok(q.qemu !== null, `${sc} ${q.device}:${q.queue} compared with QEMU`);
      assert.ok(q.qemu.compared > 0);
      assert.deepEqual(q.qemu.differences, [], `${sc} ${q.device}:${q.queue} agrees with QEMU`);
    }
    assert.equal(report.queues.length, 11);
    for (const q of report.queues) {
      assert.equal(q.addressesAreIova ?? false, sc === "vtd", `${q.device}:${q.queue} at IOVAs`);
      for (const quirk of q.qemu!.quirks) assert.ok(quirk in QEMU_QUIRKS, quirk);
    }
    assert.equal(report.problems, 0);
    assert.equal(code, 0);
    await t.step(`${sc}: boot ${bootS} s, capture ${captureMs} ms, ${s.pages} pages`, () => {});
    timings[sc] = { bootS, captureMs };
    await g.stop();
    await Deno.remove(dir, { recursive: true });
  } catch (e) {
    console.log(`${sc}: files kept in ${dir}`);
    throw e;
  } finally {
    await g.stop();
  }
}

Deno.test({
  name: "qemu live: split, packed and VT-d captures agree with QEMU on every queue",
  ignore: !canRun || (!haveTools && !inCi),
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    assert.ok(
      haveTools,
      `CI=true but ${version ?? "qemu-system-x86_64 is missing"}: run bash .ci/install-qemu.sh`,
    );
    for (const sc of ["split", "packed", "vtd"] as const) {
      await t.step(sc, async (t) => await scenario(t, sc));
    }
    console.log(`qemu live timings: ${JSON.stringify(timings)}`);
  },
});
