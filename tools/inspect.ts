/**
 * `deno task inspect <index.json> [--device NAME] [--queue N] [--json] [--hex] ...`
 *
 * Decodes the virtqueues of a captured memory image (a `virtio-ring-fixture-v1` index with its
 * gzip pages beside it) and, when the QEMU oracle (`*.qmp-virtio.json`) is beside it, checks that
 * our decoding agrees with QEMU's. Exit status: 0 all good, 1 validation errors or QEMU
 * differences found, 2 bad input (the message names the file, field and fix).
 *
 * @module
 */

import {
  compareWithQemu,
  crossCheckIovaMap,
  type DecodedChain,
  decodeError,
  DEVICE_FEATURE_BITS,
  type Fixture,
  fixtureDmaSpace,
  formatVtdWalk,
  hexDump,
  InspectInputError,
  inspectQueue,
  memoryPageSource,
  oracleKey,
  parseBdf,
  type QemuComparison,
  type QueueReport,
  queueReportToJson,
  readFixture,
  readOracle,
  TRANSPORT_FEATURE_BITS,
  vtdWalk,
} from "../src/inspect/_internal.ts";
import { type GuestMemory, hex64 } from "../src/memory/mod.ts";
import {
  DMA_ACCESS_READ,
  type DmaAddressSpace,
  DmaTranslation,
  translateContiguous,
} from "../src/dma/mod.ts";

const HELP = `Usage: deno task inspect <index.json> [options]

Decode the virtqueues of a captured guest memory image (virtio-ring-fixture-v1: X.index.json
with X.pages.bin.gz beside it) with virtq-lab's device-side and driver-side rules, and compare
with QEMU's own decoding when X.qmp-virtio.json is beside it.

Options:
  --device NAME       only queues of this device (e.g. virtio-net)
  --queue N           only queue N (with or without --device)
  --json              print one JSON document (addresses as "0x..." strings) instead of text
  --hex               add hex dumps of the ring areas (and indirect tables of outstanding chains)
  --positions MODE    where the device's private positions come from: "qemu" (default when the
                      index has QEMU's status) or "memory" (inferred from the rings alone)
  --limit N           chains / used entries listed per queue in text mode (default 8, 0 = all)
  --no-oracle         do not compare with QEMU's answers
  --translate IOVA    walk the capture's VT-d tables for one IOVA (hex or decimal) and print
                      every level (root, context, PASID, page tables) and the GPA or where it
                      stopped; needs "iommu" in the index; exit 0 translated, 1 not
  --bdf BB:DD.F       the requester for --translate (default: the one device with IOVA rings)
  --help              this text

Rings behind an Intel vIOMMU (queues with "addresses_are_iova": true and "bdf", index with
"iommu": {"rtaddr_reg": "0x..."}) are decoded at their IOVAs by walking the captured VT-d tables;
an IOVA that does not translate is IOVA_UNTRANSLATED (naming the IOVA and the level that stopped
the walk). The index's optional "iova_to_gpa" map is only cross-checked.

Exit status: 0 no problem, 1 findings (validation errors, capture problems, differences with
QEMU), 2 bad input (one line naming the file, the field and the fix).
Example: deno task inspect tests/fixtures/qemu-7.2-linux-6.1/scenarioA.index.json --device virtio-blk
`;

/** Parsed command line. */
interface Args {
  index: string;
  device?: string;
  queue?: number;
  json: boolean;
  hex: boolean;
  positions?: "qemu" | "memory";
  limit: number;
  oracle: boolean;
  translate?: bigint;
  bdf?: string;
}

function bad(field: string, problem: string, fix: string): never {
  throw new InspectInputError("<argv>", field, problem, fix);
}

function parseArgs(argv: string[]): Args | null {
  const a: Partial<Args> = { json: false, hex: false, limit: 8, oracle: true };
  const need = (i: number, flag: string) => {
    if (i >= argv.length || argv[i].startsWith("--")) {
      bad(flag, "needs a value", `write ${flag} VALUE (see --help)`);
    }
    return argv[i];
  };
  for (let i = 0; i < argv.length; i++) {
    const t = argv[i];
    switch (t) {
      case "--help":
      case "-h":
        return null;
      case "--json":
        a.json = true;
        break;
      case "--hex":
        a.hex = true;
        break;
      case "--no-oracle":
        a.oracle = false;
        break;
      case "--device":
        a.device = need(++i, t);
        break;
      case "--queue": {
        const v = need(++i, t);
        if (!/^[0-9]+$/.test(v)) {
          bad(t, `"${v}" is not a queue index`, "give a number, e.g. --queue 0");
        }
        a.queue = Number(v);
        break;
      }
      case "--limit": {
        const v = need(++i, t);
        if (!/^[0-9]+$/.test(v)) bad(t, `"${v}" is not a count`, "give a number, 0 for all");
        a.limit = Number(v);
        break;
      }
      case "--translate": {
        const v = need(++i, t);
        let iova: bigint | undefined;
        try {
          if (/^(0x[0-9a-fA-F]+|[0-9]+)$/.test(v)) iova = BigInt(v);
        } catch { /* refused below */ }
        if (iova === undefined || iova > 0xffff_ffff_ffff_ffffn) {
          bad(t, `"${v}" is not a 64-bit address`, "give an IOVA, e.g. --translate 0xfffff000");
        }
        a.translate = iova;
        break;
      }
      case "--bdf": {
        const v = need(++i, t);
        if (parseBdf(v) === null) {
          bad(t, `"${v}" is not a PCI address`, 'write "BB:DD.F", e.g. --bdf 00:03.0');
        }
        a.bdf = v;
        break;
      }
      case "--positions": {
        const v = need(++i, t);
        if (v !== "qemu" && v !== "memory") bad(t, `"${v}" is not a mode`, "use qemu or memory");
        a.positions = v;
        break;
      }
      default:
        if (t.startsWith("-")) bad(t, "unknown option", "see --help");
        if (a.index !== undefined) {
          bad(t, `a second index file (first: ${a.index})`, "inspect one index at a time");
        }
        a.index = t;
    }
  }
  if (a.index === undefined) {
    bad(
      "<index.json>",
      "missing",
      "pass a fixture index, e.g. tests/fixtures/qemu-7.2-linux-6.1/scenarioA.index.json",
    );
  }
  return a as Args;
}

function featureBitNames(mask: bigint, device: string): string {
  const out: string[] = [];
  const seen = new Set<number>();
  for (const [name, bit] of Object.entries(TRANSPORT_FEATURE_BITS)) {
    if (!seen.has(bit) && (mask >> BigInt(bit)) & 1n) {
      seen.add(bit);
      out.push(name.replace(/^VIRTIO_(RING_)?F_/, ""));
    }
  }
  const prefix = device === "virtio-net"
    ? "VIRTIO_NET_F_"
    : device === "virtio-blk"
    ? "VIRTIO_BLK_F_"
    : device === "virtio-serial"
    ? "VIRTIO_CONSOLE_F_"
    : "\0";
  for (const [name, bit] of Object.entries(DEVICE_FEATURE_BITS)) {
    if (name.startsWith(prefix) && (mask >> BigInt(bit)) & 1n) out.push(name.slice(prefix.length));
  }
  return out.join(" ");
}

const EVENT_FLAGS = ["enable", "disable", "desc", "reserved(3)"];

function chainLine(c: DecodedChain, layout: string): string {
  const where = layout === "split"
    ? `avail[${c.position}] head ${c.head}`
    : `slot ${c.head} id ${c.id}`;
  const segs = c.descriptors.map((d) => `${d.flags & 2 ? "W" : "R"} ${hex64(d.addr)}+${d.len}`)
    .join(", ");
  const ind = c.indirect
    ? ` via indirect table ${hex64(c.indirect.addr)} (${c.indirect.len / 16} entries)`
    : "";
  const err = c.error ? `  !! ${c.error.code}` : "";
  const notes = c.notes.length ? `  (${c.notes.length} note${c.notes.length > 1 ? "s" : ""})` : "";
  return `${where}: ${c.descriptors.length} desc${ind}: ${segs}${err}${notes}`;
}

/** The GPA of a ring area / table for a hex dump, or why there is none. */
function dumpGpa(dma: DmaAddressSpace | undefined, addr: bigint | number, bytes: number) {
  if (dma === undefined) {
    return typeof addr === "number" ? addr : "(address beyond 2^53: not in guest memory)";
  }
  try {
    return translateContiguous(dma, addr, bytes, DMA_ACCESS_READ, new DmaTranslation());
  } catch (e) {
    return `(IOVA ${hex64(addr)} does not translate: ${(e as Error).message})`;
  }
}

function printText(
  r: QueueReport,
  cmp: QemuComparison | null,
  args: Args,
  memory: GuestMemory,
  dma: DmaAddressSpace | undefined,
): void {
  const lim = (n: number) => args.limit === 0 ? n : Math.min(n, args.limit);
  console.log(`\n${r.device} queue ${r.queue}  ${r.layout}  size ${r.size}  (${r.path})`);
  console.log(
    `  features ${"0x" + r.features.toString(16)}: ${featureBitNames(r.features, r.device)}`,
  );
  const names = r.layout === "split" ? ["desc", "avail", "used"] : ["desc", "driver", "device"];
  const areas = [r.areas.desc, r.areas.driver, r.areas.device];
  console.log("  " + areas.map((a, i) => `${names[i]} ${hex64(a.addr)} (${a.bytes} B)`).join("  "));
  if (r.split) {
    const s = r.split;
    console.log(
      `  avail: idx ${s.availIdx} flags 0x${s.availFlags.toString(16)}` +
        `${s.availFlags & 1 ? " (NO_INTERRUPT)" : ""}  used_event ${s.usedEvent}`,
    );
    console.log(
      `  used:  idx ${s.usedIdx} flags 0x${s.usedFlags.toString(16)}` +
        `${s.usedFlags & 1 ? " (NO_NOTIFY)" : ""}  avail_event ${s.availEvent}`,
    );
    console.log(
      s.eventIdx
        ? `  event idx: driver asks for a used notification when used idx passes ${s.usedEvent}; ` +
          `device asks for a kick when avail idx passes ${s.availEvent}`
        : "  event idx not negotiated: the flags above rule notifications",
    );
  }
  if (r.packed) {
    const p = r.packed;
    const ev = (e: typeof p.driverEvent) =>
      `flags ${EVENT_FLAGS[e.flags] ?? e.flags} off ${e.off} wrap ${e.wrap}`;
    console.log(`  driver event suppression: ${ev(p.driverEvent)}`);
    console.log(`  device event suppression: ${ev(p.deviceEvent)}`);
    const g = p.inferred;
    console.log(
      `  from AVAIL/USED bits: driver at slot ${g.driverIdx} wrap ${g.driverWrap}; device used ` +
        `slot ${g.usedIdx} wrap ${g.usedWrap}; ${g.pendingSlots} slots outstanding (${g.basis})`,
    );
  }
  if (r.position) {
    const p = r.position;
    const w = p.availWrap !== undefined
      ? ` (avail wrap ${p.availWrap}, used wrap ${p.usedWrap})`
      : "";
    console.log(
      `  device: last_avail_idx ${p.lastAvailIdx} used_idx ${p.usedIdx}${w} in-use ${p.inUse}` +
        ` [from ${p.source === "qemu" ? "QEMU's status" : p.source}]`,
    );
  }
  console.log(`  outstanding (device-side decode): ${r.outstanding.length} chain(s)`);
  for (const c of r.outstanding.slice(0, lim(r.outstanding.length))) {
    console.log(`    ${chainLine(c, r.layout)}`);
  }
  if (lim(r.outstanding.length) < r.outstanding.length) {
    console.log(
      `    ... ${r.outstanding.length - lim(r.outstanding.length)} more (--limit 0 for all)`,
    );
  }
  console.log(`  completed (used entries, driver-side checks): ${r.completed.length}`);
  const tail = r.completed.slice(r.completed.length - lim(r.completed.length));
  if (tail.length) {
    console.log(
      "    " +
        tail.map((u) =>
          `[${u.position}] id ${u.id} len ${u.len}${u.error ? " !! " + u.error.code : ""}`
        )
          .join(", "),
    );
  }
  for (const n of r.notes) console.log(`  note: ${n}`);
  const chainNotes = r.outstanding.reduce((a, c) => a + c.notes.length, 0);
  if (chainNotes) {
    console.log(`  note: ${chainNotes} buffer(s) lie in pages the capture did not keep`);
  }
  if (r.errors.length === 0) console.log("  validation: OK");
  for (const e of r.errors) console.log(`  ERROR ${e.message}`);
  if (cmp?.skipped) console.log(`  QEMU: ${cmp.skipped}`);
  if (cmp) {
    if (cmp.differences.length === 0 && !cmp.skipped) {
      const quirks = cmp.quirks.length ? [...cmp.quirks].sort().join(", ") : "none needed";
      console.log(`  QEMU: agrees (${cmp.compared} comparisons; quirks: ${quirks})`);
    }
    for (const d of cmp.differences) {
      console.log(`  QEMU DIFFERS ${d.field}: ours ${d.ours}, QEMU ${d.qemu}`);
    }
  }
  if (args.hex) {
    const dump = (label: string, addr: bigint | number, bytes: number) => {
      console.log(`  hex ${label}${dma ? ` (IOVA ${hex64(addr)})` : ""}:`);
      const gpa = dumpGpa(dma, addr, bytes);
      if (typeof gpa !== "number") {
        console.log(`    ${gpa}`);
        return;
      }
      for (const l of hexDump(memory, gpa, bytes)) console.log("    " + l);
    };
    dump(names[0], r.areas.desc.addr, r.areas.desc.bytes);
    dump(names[1], r.areas.driver.addr, r.areas.driver.bytes);
    dump(names[2], r.areas.device.addr, r.areas.device.bytes);
    for (const c of r.outstanding) {
      if (c.indirect) dump(`indirect table of ${c.head}`, c.indirect.addr, c.indirect.len);
    }
  }
}

async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv);
  if (args === null) {
    console.log(HELP);
    return 0;
  }
  const fx = await readFixture(args.index);
  if (args.translate !== undefined) return translateOne(fx, args);
  const oracle = args.oracle ? await readOracle(args.index) : null;
  const queues = selectQueues(fx, args);
  const iova = queues.filter((q) => q.addressesAreIova).length;
  if (!args.json) {
    console.error(
      `${args.index}: ${fx.queues.length} queues, ${fx.keptPages.length} kept pages, RAM ` +
        `${fx.ramSize / 1048576} MiB; oracle: ${oracle ? "QEMU x-query-virtio answers" : "none"}` +
        (fx.iommu ? `; VT-d RTADDR 0x${fx.iommu.rtaddr.toString(16)}, ${iova} IOVA queue(s)` : ""),
    );
  }
  let problems = 0;
  if (fx.imageProblem !== null) {
    problems++;
    console.error(`inspect: WARNING truncated capture: ${fx.imageProblem}`);
  }
  const iovaMap = crossCheckIovaMap(fx);
  problems += iovaMap.differences.length;
  if (!args.json) printIovaMap(iovaMap);
  const out: unknown[] = [];
  for (const q of queues) {
    const one = inspectOne(fx, q, oracle, args);
    problems += one.problems;
    if (one.json !== undefined) out.push(one.json);
  }
  if (args.json) {
    console.log(JSON.stringify(
      {
        file: args.index,
        ramSize: fx.ramSize,
        keptPages: fx.keptPages.length,
        imageProblem: fx.imageProblem,
        iommu: fx.iommu
          ? {
            rtaddr: "0x" + fx.iommu.rtaddr.toString(16),
            iovaToGpa: {
              checked: iovaMap.checked,
              differences: iovaMap.differences.map((d) => ({
                bdf: d.bdf,
                iova: "0x" + d.iova.toString(16),
                capture: "0x" + d.capture.toString(16),
                walk: typeof d.walk === "bigint" ? "0x" + d.walk.toString(16) : d.walk,
              })),
            },
          }
          : null,
        queues: out,
        problems,
      },
      null,
      1,
    ));
  } else {
    console.log(
      `\nsummary: ${queues.length} queue(s), ${
        problems === 0 ? "no problems" : problems + " problem(s)"
      }` +
        `${oracle ? ", compared with QEMU" : ""}`,
    );
  }
  return problems === 0 ? 0 : 1;
}

type FixtureQueueOf = Fixture["queues"][number];

/** The queues `--device` and `--queue` select (exits 2 when they select none). */
function selectQueues(fx: Fixture, args: Args): FixtureQueueOf[] {
  let queues = fx.queues;
  if (args.device !== undefined) {
    queues = queues.filter((q) => q.device === args.device);
    if (queues.length === 0) {
      const names = [...new Set(fx.queues.map((q) => q.device))].join(", ");
      bad(
        "--device",
        `no queue of device "${args.device}" in ${args.index}`,
        `use one of: ${names}`,
      );
    }
  }
  if (args.queue !== undefined) {
    const before = queues;
    queues = queues.filter((q) => q.queue === args.queue);
    if (queues.length === 0) {
      const idx = [...new Set(before.map((q) => q.queue))].join(", ");
      bad(
        "--queue",
        `no queue ${args.queue}${args.device ? " of " + args.device : ""}`,
        `use one of: ${idx}`,
      );
    }
  }
  return queues;
}

/** Text mode: the `iova_to_gpa` cross-check's differences, or that it agrees. */
function printIovaMap(iovaMap: ReturnType<typeof crossCheckIovaMap>): void {
  for (const d of iovaMap.differences) {
    const w = typeof d.walk === "bigint" ? `0x${d.walk.toString(16)}` : `stopped: ${d.walk}`;
    console.log(
      `iova_to_gpa DIFFERS ${d.bdf} IOVA 0x${d.iova.toString(16)}: capture ` +
        `0x${d.capture.toString(16)}, walk ${w}`,
    );
  }
  if (iovaMap.checked > 0 && iovaMap.differences.length === 0) {
    console.log(`iova_to_gpa: ${iovaMap.checked} entries agree with the walk of the tables`);
  }
}

/**
 * Inspects one queue and compares it with QEMU's view when there is one: prints it in text mode,
 * returns its JSON document in JSON mode, and the problems it found.
 */
function inspectOne(
  fx: Fixture,
  q: FixtureQueueOf,
  oracle: Awaited<ReturnType<typeof readOracle>>,
  args: Args,
): { problems: number; json?: unknown } {
  const dma = fixtureDmaSpace(fx, q);
  const r = inspectQueue(q, {
    memory: fx.memory,
    ramSize: fx.ramSize,
    positions: args.positions,
    dma,
    truncatedPages: fx.truncatedPages,
  });
  const view = oracle?.get(oracleKey(q.path, q.queue));
  let cmp: QemuComparison | null = null;
  if (view) {
    try {
      cmp = compareWithQemu(q, fx.memory, fx.ramSize, view, dma);
    } catch (e) {
      // Never a crash: the comparison failing is this queue's finding.
      r.errors.push(decodeError("QUEUE_DECODE_FAILED", `comparing with QEMU: ${errText(e)}`));
    }
  }
  const problems = r.errors.length + (cmp?.differences.length ?? 0);
  if (!args.json) {
    printText(r, cmp, args, fx.memory, dma);
    return { problems };
  }
  const hex = (addr: bigint | number, bytes: number) => {
    const g = dumpGpa(dma, addr, bytes);
    return typeof g === "number" ? hexDump(fx.memory, g, bytes) : [g];
  };
  const json = {
    ...queueReportToJson(r),
    bdf: q.bdf ?? null,
    addressesAreIova: q.addressesAreIova,
    qemu: cmp ?? null,
    hex: args.hex
      ? {
        desc: hex(r.areas.desc.addr, r.areas.desc.bytes),
        driver: hex(r.areas.driver.addr, r.areas.driver.bytes),
        device: hex(r.areas.device.addr, r.areas.device.bytes),
      }
      : undefined,
  };
  return { problems, json };
}

function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** `--translate IOVA [--bdf B]`: prints every level of the VT-d walk. */
function translateOne(fx: Fixture, args: Args): number {
  if (fx.iommu === undefined) {
    bad(
      "--translate",
      `${args.index} has no "iommu" (no VT-d Root Table Address register)`,
      "capture the guest with its vIOMMU (deno task capture) or drop --translate",
    );
  }
  let bdf = args.bdf;
  if (bdf === undefined) {
    const bdfs = [...new Set(fx.queues.filter((q) => q.bdf).map((q) => q.bdf!))];
    if (bdfs.length !== 1) {
      bad(
        "--bdf",
        bdfs.length === 0 ? "missing (no queue names a bdf)" : "missing (several devices)",
        `name the requester, e.g. --bdf ${bdfs[0] ?? "00:03.0"}${
          bdfs.length > 1 ? ` (one of ${bdfs.join(", ")})` : ""
        }`,
      );
    }
    bdf = bdfs[0];
  }
  const sourceId = parseBdf(bdf)!;
  const r = vtdWalk(
    { rtaddr: fx.iommu.rtaddr, sourceId, iova: args.translate! },
    memoryPageSource(fx.memory),
  );
  if (args.json) {
    console.log(JSON.stringify(
      r,
      (_k, v) => typeof v === "bigint" ? "0x" + v.toString(16) : v,
      1,
    ));
  } else {
    console.log(
      `translate IOVA 0x${args.translate!.toString(16)} for ${bdf} ` +
        `(RTADDR 0x${fx.iommu.rtaddr.toString(16)}):`,
    );
    for (const l of formatVtdWalk(r)) console.log("  " + l);
  }
  return r.ok ? 0 : 1;
}

if (import.meta.main) {
  try {
    Deno.exit(await main(Deno.args));
  } catch (e) {
    if (e instanceof InspectInputError) {
      console.error(`inspect: ${e.message}`);
      Deno.exit(2);
    }
    // Never a stack trace: anything else is reported in one line as well.
    console.error(
      `inspect: ${Deno.args.find((a) => !a.startsWith("-")) ?? "<argv>"}: unexpected error ` +
        `(${errText(e)}). Fix: check the capture files; if they are intact, report this`,
    );
    Deno.exit(2);
  }
}

export { main, parseArgs };
