/**
 * Capturing the virtqueues of a live QEMU guest as a `virtio-ring-fixture-v1` fixture (the format
 * `deno task inspect` reads; see tests/fixtures/qemu-7.2-linux-6.1/README.md):
 *
 * 1. connect to QMP, stop the guest (`stop`);
 * 2. ask QEMU for every virtio device (`x-query-virtio`), its status, every queue's status and a
 *    few of its elements (`x-query-virtio-status`, `-queue-status`, `-queue-element`): the oracle;
 * 3. when a device negotiated `VIRTIO_F_ACCESS_PLATFORM` behind an enabled Intel vIOMMU, read
 *    the VT-d registers (HMP `xp` at the DMAR base, RTADDR_REG) and translate every ring,
 *    indirect-table and buffer IOVA by walking the guest's tables (fetching each table page);
 * 4. read the guest pages that hold the rings, the indirect tables and the buffers the rings
 *    point at (QMP `pmemsave` into a private temporary directory), and write
 *    `NAME.index.json`, `NAME.pages.bin.gz`, `NAME.qmp-virtio.json`, `NAME.hmp-info-virtio.txt`;
 * 5. resume the guest when asked (`cont`).
 *
 * @module
 */

import { z } from "zod";
import {
  featuresFromQemuReport,
  parseHmpXpDumps,
  type QemuQueueStatus,
} from "../src/inspect/_internal.ts";
import { QmpClient, QmpError, stringifyExact } from "./qmp_client.ts";
import { translateFetching, type Translation } from "./capture_vtd.ts";

/** Options of {@link capture}. */
export interface CaptureOptions {
  /** QMP unix socket path. */
  qmp: string;
  /** Output directory (created). */
  out: string;
  /** File name stem (default `capture`). */
  name: string;
  /** Resume the guest afterwards if it was running. */
  resume: boolean;
  /** Timeout per QMP command, ms. */
  timeoutMs: number;
  /** Element queries per queue before `last-avail-idx` (besides the one at it). */
  elementsBack: number;
  /** Pages kept per buffer at most. */
  maxPagesPerBuffer: number;
  /** DMAR register base of an Intel vIOMMU (QEMU q35: 0xfed90000). */
  dmarBase: bigint;
  /** Progress lines (stderr in the CLI). */
  progress: (line: string) => void;
}

/** What a capture wrote and saw. */
export interface CaptureSummary {
  /** Files written. */
  files: { index: string; pages: string; qmp: string; hmp: string };
  /** Devices and queues captured. */
  devices: number;
  /** Queues in the index. */
  queues: number;
  /** Pages kept. */
  pages: number;
  /** Queues whose addresses are IOVAs. */
  iovaQueues: number;
  /** RTADDR_REG, when an enabled vIOMMU was found. */
  rtaddr?: bigint;
  /** IOVAs (stale descriptors, unmapped buffers) that did not translate: skipped. */
  untranslated: number;
  /** Addresses outside guest RAM: skipped. */
  outsideRam: number;
  /** Wall time of each phase, ms. */
  timings: Record<string, number>;
}

const PAGE = 4096n;
const VIRTIO_F_ACCESS_PLATFORM = 1n << 33n;
const VIRTIO_F_RING_PACKED = 1n << 34n;
const VIRTQ_DESC_F_INDIRECT = 4;
/** VT-d register offsets (VT-d spec §11.4): version, global status, root table address. */
const VTD_VER_REG = 0x0n, VTD_GSTS_REG = 0x1cn, VTD_RTADDR_REG = 0x20n;
const VTD_GSTS_TES = 1n << 31n;

const u64 = z.union([z.number().int().nonnegative(), z.bigint().nonnegative()]);
const VirtioListSchema = z.array(z.object({ name: z.string(), path: z.string() }));
const FeatureReportSchema = z.object({
  transports: z.array(z.string()),
  "dev-features": z.array(z.string()),
  "unknown-dev-features": u64.optional(),
});
const VirtioStatusSchema = z.object({
  name: z.string(),
  "num-vqs": z.number().int().nonnegative(),
  "guest-features": FeatureReportSchema,
}).loose();
const QueueElementAnyResult = z.object({ index: z.number(), descs: z.array(z.unknown()) }).loose();
/** The fields of `x-query-virtio-queue-status` the capture relies on (the rest is kept as is). */
const QueueStatusSchema = z.object({
  "queue-index": z.number().int().nonnegative(),
  "vring-num": z.number().int().nonnegative(),
  "vring-desc": u64,
  "vring-avail": u64,
  "vring-used": u64,
  "last-avail-idx": z.number().int().min(0).max(0xffff).optional(),
}).loose();
const StatusSchema = z.object({ status: z.string(), running: z.boolean() }).loose();
const MemSizeSchema = z.object({ "base-memory": z.number().int().positive() }).loose();

interface PciDevice {
  bus: number;
  slot: number;
  function: number;
  qdev_id: string;
  pci_bridge?: { devices?: PciDevice[] };
}
const PciDeviceSchema: z.ZodType<PciDevice> = z.lazy(() =>
  z.object({
    bus: z.number().int(),
    slot: z.number().int(),
    function: z.number().int(),
    qdev_id: z.string(),
    pci_bridge: z.object({ devices: z.array(PciDeviceSchema).optional() }).loose().optional(),
  }).loose()
);
const QueryPciSchema = z.array(
  z.object({ bus: z.number().int(), devices: z.array(PciDeviceSchema) }).loose(),
);

/** A failure the CLI reports in one line (exit 1; exit 2 when `badInput`). */
export class CaptureError extends Error {
  /** True when the user's input (socket path, options) is at fault. */
  readonly badInput: boolean;
  /**
   * @param message one line.
   * @param badInput the user's input is at fault (exit 2).
   */
  constructor(message: string, badInput = false) {
    super(message);
    this.name = "CaptureError";
    this.badInput = badInput;
  }
}

function hex(v: bigint | number): string {
  return "0x" + v.toString(16);
}

function big(v: number | bigint): bigint {
  return typeof v === "bigint" ? v : BigInt(v);
}

async function gzip(bytes: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([bytes as Uint8Array<ArrayBuffer>]).stream().pipeThrough(
    new CompressionStream("gzip"),
  );
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** Guest pages read so far, and why each is kept. */
class PageStore {
  readonly pages = new Map<bigint, Uint8Array>();
  readonly why = new Map<bigint, Set<string>>();
  reads = 0;
  #seq = 0;
  constructor(
    private readonly qmp: QmpClient,
    private readonly tmp: string,
    private readonly ramSize: bigint,
    private readonly timeoutMs: number,
  ) {}

  inRam(gpa: bigint): boolean {
    return gpa >= 0n && gpa < this.ramSize;
  }

  /** Reads every listed page not read yet (contiguous runs in one `pmemsave` each). */
  async fetch(gpas: Iterable<bigint>): Promise<void> {
    const want = [...new Set([...gpas].filter((g) => !this.pages.has(g) && this.inRam(g)))]
      .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    let i = 0;
    while (i < want.length) {
      let j = i + 1;
      while (j < want.length && j - i < 256 && want[j] === want[j - 1] + PAGE) j++;
      const n = j - i;
      const file = `${this.tmp}/run${this.#seq++}.bin`;
      await this.qmp.execute(
        "pmemsave",
        { val: want[i], size: n * 4096, filename: file },
        this.timeoutMs,
      );
      const bytes = await Deno.readFile(file);
      await Deno.remove(file);
      if (bytes.length !== n * 4096) {
        throw new CaptureError(
          `pmemsave ${hex(want[i])}+${n * 4096} wrote ${bytes.length} bytes (expected ${n * 4096})`,
        );
      }
      for (let k = 0; k < n; k++) {
        this.pages.set(want[i + k], bytes.slice(k * 4096, (k + 1) * 4096));
      }
      this.reads++;
      i = j;
    }
  }

  keep(gpa: bigint, why: string): void {
    let s = this.why.get(gpa);
    if (!s) this.why.set(gpa, s = new Set());
    s.add(why);
  }

  /** Bytes at a GPA range already fetched (spanning pages), or null when a page is absent. */
  read(gpa: bigint, len: number): Uint8Array | null {
    const out = new Uint8Array(len);
    let done = 0;
    while (done < len) {
      const a = gpa + BigInt(done);
      const page = a & ~(PAGE - 1n);
      const p = this.pages.get(page);
      if (!p) return null;
      const off = Number(a - page);
      const n = Math.min(len - done, 4096 - off);
      out.set(p.subarray(off, off + n), done);
      done += n;
    }
    return out;
  }
}

/** How one queue's addresses reach guest memory: identity, or a VT-d walk for its requester. */
class QueueSpace {
  #cache = new Map<bigint, Translation>();
  untranslated = 0;
  outsideRam = 0;

  /** IOVA page -> GPA page of every translation this queue made (the `iova_to_gpa` map). */
  translations(): [bigint, bigint][] {
    const out: [bigint, bigint][] = [];
    for (const [iova, t] of this.#cache) if (t.ok) out.push([iova, t.gpa]);
    return out;
  }

  constructor(
    private readonly store: PageStore,
    private readonly iommu: { rtaddr: bigint; sourceId: number } | null,
  ) {}

  /** GPA of the page holding `addr`'s page, or null (untranslatable / outside RAM). */
  async pageGpa(addrPage: bigint): Promise<bigint | null> {
    let gpa = addrPage;
    if (this.iommu) {
      let t = this.#cache.get(addrPage);
      if (!t) {
        t = await translateFetching(
          { rtaddr: this.iommu.rtaddr, sourceId: this.iommu.sourceId, iova: addrPage },
          this.store.pages,
          (p) => this.store.fetch([p]),
        );
        this.#cache.set(addrPage, t);
        for (const tp of t.tablePages) this.store.keep(tp.gpa, `vtd:${tp.what}`);
      }
      if (!t.ok) {
        this.untranslated++;
        return null;
      }
      gpa = t.gpa & ~(PAGE - 1n);
    }
    if (!this.store.inRam(gpa)) {
      this.outsideRam++;
      return null;
    }
    return gpa;
  }

  /** GPA pages of `[addr, addr + len)`, one per address page (null where one fails). */
  async pagesOf(addr: bigint, len: number): Promise<(bigint | null)[]> {
    const out: (bigint | null)[] = [];
    if (len <= 0) return out;
    const first = addr & ~(PAGE - 1n);
    const last = (addr + BigInt(len) - 1n) & ~(PAGE - 1n);
    for (let p = first; p <= last; p += PAGE) out.push(await this.pageGpa(p));
    return out;
  }

  /** Fetches and keeps the pages of a range; returns its bytes when all of them are readable. */
  async readKeep(addr: bigint, len: number, why: string): Promise<Uint8Array | null> {
    const pages = await this.pagesOf(addr, len);
    const ok = pages.filter((p): p is bigint => p !== null);
    await this.store.fetch(ok);
    for (const p of ok) if (this.store.pages.has(p)) this.store.keep(p, why);
    if (ok.length !== pages.length) return null;
    const out = new Uint8Array(len);
    let done = 0;
    for (let i = 0; i < pages.length; i++) {
      const start = i === 0 ? Number(addr & (PAGE - 1n)) : 0;
      const n = Math.min(len - done, 4096 - start);
      const bytes = this.store.read(pages[i]! + BigInt(start), n);
      if (!bytes) return null;
      out.set(bytes, done);
      done += n;
    }
    return out;
  }
}

interface Desc {
  addr: bigint;
  len: number;
  flags: number;
}

function descsOf(bytes: Uint8Array, count: number): Desc[] {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: Desc[] = [];
  for (let i = 0; i < count && (i + 1) * 16 <= bytes.length; i++) {
    out.push({
      addr: v.getBigUint64(i * 16, true),
      len: v.getUint32(i * 16 + 8, true),
      flags: v.getUint16(i * 16 + 12, true),
    });
  }
  return out;
}

/** Device name of a QOM path `/machine/peripheral/ID/virtio-backend` -> `ID`. */
function qdevIdOf(path: string): string | null {
  const m = /^\/machine\/peripheral\/([^/]+)\/virtio-backend$/.exec(path);
  return m ? m[1] : null;
}

function flattenPci(buses: z.infer<typeof QueryPciSchema>): PciDevice[] {
  const out: PciDevice[] = [];
  const walk = (list: PciDevice[]) => {
    for (const d of list) {
      out.push(d);
      if (d.pci_bridge?.devices) walk(d.pci_bridge.devices);
    }
  };
  for (const b of buses) walk(b.devices);
  return out;
}

function bdfText(d: PciDevice): string {
  const h = (v: number) => v.toString(16).padStart(2, "0");
  return `${h(d.bus)}:${h(d.slot)}.${d.function}`;
}

/**
 * Captures the guest behind a QMP socket. See the module notes for the steps.
 * @throws CaptureError (one line) when QEMU cannot be reached or refuses a command.
 */
export async function capture(opts: CaptureOptions): Promise<CaptureSummary> {
  const t0 = performance.now();
  const timings: Record<string, number> = {};
  const lap = (name: string, since: number) =>
    timings[name] = Math.round(performance.now() - since);
  let qmp: QmpClient;
  try {
    qmp = await QmpClient.connect(opts.qmp, { timeoutMs: opts.timeoutMs });
  } catch (e) {
    throw new CaptureError(
      `${opts.qmp}: cannot talk QMP (${(e as Error).message}). Fix: start QEMU with ` +
        `-qmp unix:${opts.qmp},server=on,wait=off and pass that path to --qmp`,
      true,
    );
  }
  const tmp = await Deno.makeTempDir({ prefix: "virtq-capture-" });
  const hmpLog: string[] = [];
  const ctx: CaptureContext = {
    qmp,
    opts,
    hmpLog,
    wasRunning: false,
    stopped: false,
    hmp: async (cmd: string) => {
      const out = await qmp.hmp(cmd, opts.timeoutMs);
      hmpLog.push(`(qemu) ${cmd}`, out.replace(/\r/g, "").replace(/\n$/, ""));
      return out;
    },
  };
  try {
    await stopGuest(ctx);

    // 1. QEMU's view: devices, queue status, elements.
    let t = performance.now();
    const view = await queryQemu(ctx);
    lap("qmp_queries", t);

    // 2. An enabled Intel vIOMMU in front of ACCESS_PLATFORM devices?
    t = performance.now();
    const store = new PageStore(qmp, tmp, view.ramSize, opts.timeoutMs);
    const rtaddr = await findVtd(ctx, view.queues);

    // 3. The pages: rings, indirect tables, buffers (IOVAs walked through the guest's tables).
    const pages = await capturePages(ctx, store, view.queues, rtaddr);
    lap("pages", t);

    // 4. Byte-exact cross-check material: QEMU's own xp dumps of the ring areas.
    t = performance.now();
    for (const x of pages.xpPlan) await ctx.hmp(`xp ${x.fmt} ${hex(x.gpa)}`);
    lap("hmp_xp", t);

    // 5. Write the fixture.
    t = performance.now();
    const written = await writeFixture(ctx, store, view, rtaddr, pages);
    lap("write", t);
    opts.progress(
      `capture: ${view.queues.length} queue(s) of ${view.list.length} device(s), ` +
        `${written.pages} page(s) ` +
        `(${store.reads} pmemsave), ${pages.iovaQueues} queue(s) at IOVAs` +
        (written.untranslated ? `, ${written.untranslated} IOVA page(s) untranslated` : ""),
    );
    if (opts.resume && ctx.wasRunning) {
      await qmp.execute("cont", undefined, opts.timeoutMs);
      ctx.stopped = false;
      opts.progress("capture: guest resumed");
    }
    timings.total = Math.round(performance.now() - t0);
    return {
      files: written.files,
      devices: view.list.length,
      queues: view.queues.length,
      pages: written.pages,
      iovaQueues: pages.iovaQueues,
      rtaddr,
      untranslated: written.untranslated,
      outsideRam: written.outsideRam,
      timings,
    };
  } catch (e) {
    if (e instanceof QmpError) throw new CaptureError(`${opts.qmp}: QMP ${e.message}`);
    throw e;
  } finally {
    if (ctx.stopped && opts.resume) {
      try {
        await qmp.execute("cont", undefined, opts.timeoutMs);
      } catch { /* best effort after a failure */ }
    }
    await qmp.close();
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
}

/** One capture's connection, options, HMP transcript and run state. */
interface CaptureContext {
  qmp: QmpClient;
  opts: CaptureOptions;
  /** Runs an HMP command and records it and its answer in `hmpLog`. */
  hmp(cmd: string): Promise<string>;
  hmpLog: string[];
  /** The guest was running when the capture began. */
  wasRunning: boolean;
  /** The capture stopped the guest (and has not resumed it yet). */
  stopped: boolean;
}

/** Checks the QEMU version, stops a running guest, records `info version` and `info status`. */
async function stopGuest(ctx: CaptureContext): Promise<void> {
  const { qmp, opts } = ctx;
  const v = qmp.version;
  opts.progress(
    `capture: QEMU ${v.major}.${v.minor}.${v.micro}${v.package ? ` (${v.package})` : ""}`,
  );
  if (v.major < 7 || (v.major === 7 && v.minor < 2)) {
    throw new CaptureError(
      `${opts.qmp}: QEMU ${v.major}.${v.minor} has no x-query-virtio. Fix: use QEMU 7.2 or newer`,
      true,
    );
  }
  const st = await qmp.query(StatusSchema, "query-status", undefined, opts.timeoutMs);
  ctx.wasRunning = st.running;
  if (st.running) {
    await qmp.execute("stop", undefined, opts.timeoutMs);
    ctx.stopped = true;
    opts.progress("capture: guest stopped");
  } else opts.progress(`capture: guest already ${st.status}`);
  await ctx.hmp("info version");
  await ctx.hmp("info status");
}

/** A queue QEMU reports with a ring (size > 0, descriptor area set). */
interface QueueInfo {
  name: string;
  path: string;
  queue: number;
  status: QemuQueueStatus;
  features: bigint;
  report: z.infer<typeof FeatureReportSchema>;
  bdf: PciDevice | null;
}

/** QEMU's view: RAM size, virtio devices, PCI addresses, every queue's status and elements. */
interface QemuView {
  ramSize: bigint;
  list: z.infer<typeof VirtioListSchema>;
  pciRaw: unknown;
  /** The QMP answers by device path, as written to `X.qmp-virtio.json`. */
  devices: Record<string, unknown>;
  queues: QueueInfo[];
}

/** Step 1: asks QEMU for its view of every virtio device and queue. */
async function queryQemu(ctx: CaptureContext): Promise<QemuView> {
  const { qmp, opts } = ctx;
  const ramSize = BigInt(
    (await qmp.query(MemSizeSchema, "query-memory-size-summary", undefined, opts.timeoutMs))[
      "base-memory"
    ],
  );
  const list = await qmp.query(VirtioListSchema, "x-query-virtio", undefined, opts.timeoutMs);
  const pciRaw = await qmp.execute("query-pci", undefined, opts.timeoutMs);
  const pciParsed = QueryPciSchema.safeParse(pciRaw);
  const pci = pciParsed.success ? flattenPci(pciParsed.data) : [];
  const devices: Record<string, unknown> = {};
  const queues: QueueInfo[] = [];
  for (const d of list) {
    const status = await qmp.execute("x-query-virtio-status", { path: d.path }, opts.timeoutMs);
    const s = VirtioStatusSchema.safeParse(status);
    if (!s.success) {
      throw new CaptureError(`x-query-virtio-status ${d.path}: unexpected answer`);
    }
    const { mask } = featuresFromQemuReport(s.data["guest-features"]);
    const id = qdevIdOf(d.path);
    const bdf = pci.find((p) => id !== null && p.qdev_id === id) ?? null;
    const qs: unknown[] = [];
    for (let q = 0; q < s.data["num-vqs"]; q++) {
      const qst = await qmp.query(
        QueueStatusSchema,
        "x-query-virtio-queue-status",
        { path: d.path, queue: q },
        opts.timeoutMs,
      );
      const elements = await queryElements(ctx, d.path, q, qst["last-avail-idx"] ?? 0);
      qs.push({ queue: q, status: qst, elements });
      if (Number(qst["vring-num"]) > 0 && big(qst["vring-desc"]) !== 0n) {
        queues.push({
          name: d.name,
          path: d.path,
          queue: q,
          status: qst as unknown as QemuQueueStatus,
          features: mask,
          report: s.data["guest-features"],
          bdf,
        });
      }
    }
    devices[d.path] = { name: d.name, status, queues: qs };
    opts.progress(
      `capture: ${d.name} (${d.path}${bdf ? `, ${bdfText(bdf)}` : ""}): ` +
        `${s.data["num-vqs"]} queue(s)`,
    );
  }
  return { ramSize, list, pciRaw, devices, queues };
}

/**
 * QEMU's element answers for one queue: without an index, then `elementsBack` slots behind
 * `last-avail-idx`; a QMP error answer is recorded (not thrown) unless it is a timeout or a close.
 */
async function queryElements(
  ctx: CaptureContext,
  path: string,
  q: number,
  last: number,
): Promise<unknown[]> {
  const { qmp, opts } = ctx;
  const elements: unknown[] = [];
  const args: (number | null)[] = [null];
  for (let k = 1; k <= opts.elementsBack; k++) args.push((last - k + 0x10000) & 0xffff);
  for (const a of args) {
    const qa: Record<string, unknown> = { path, queue: q };
    if (a !== null) qa.index = a;
    try {
      const r = await qmp.query(
        QueueElementAnyResult,
        "x-query-virtio-queue-element",
        qa,
        opts.timeoutMs,
      );
      elements.push({ index_arg: a, result: { return: r } });
    } catch (e) {
      if (
        !(e instanceof QmpError) || e.errorClass === "Timeout" || e.errorClass === "Closed"
      ) {
        throw e;
      }
      elements.push({
        index_arg: a,
        result: { error: { class: e.errorClass, desc: e.message.replace(/^[^:]*: /, "") } },
      });
    }
  }
  return elements;
}

/**
 * Step 2: when a queue negotiated ACCESS_PLATFORM and QEMU has an intel-iommu, reads its
 * registers. @returns RTADDR_REG when translation is enabled, otherwise `undefined`.
 */
async function findVtd(ctx: CaptureContext, queues: QueueInfo[]): Promise<bigint | undefined> {
  const { qmp, opts } = ctx;
  if (!queues.some((q) => (q.features & VIRTIO_F_ACCESS_PLATFORM) !== 0n)) return undefined;
  const qtree = await qmp.hmp("info qtree", opts.timeoutMs);
  if (!/dev: intel-iommu/.test(qtree)) return undefined;
  const reg = async (off: bigint, unit: "w" | "g") => {
    const cmd = `xp /1${unit}x ${hex(opts.dmarBase + off)}`;
    const dumps = parseHmpXpDumps(`(qemu) ${cmd}\n${await ctx.hmp(cmd)}`);
    const val = dumps[0]?.values[0]?.value;
    if (val === undefined) {
      throw new CaptureError(`HMP ${cmd}: no value in the answer (is the DMAR base right?)`);
    }
    return big(val);
  };
  const ver = await reg(VTD_VER_REG, "w");
  const gsts = await reg(VTD_GSTS_REG, "w");
  const rt = await reg(VTD_RTADDR_REG, "g");
  if (ver === 0n || ver === 0xffff_ffffn) {
    throw new CaptureError(
      `intel-iommu present but VER_REG at ${hex(opts.dmarBase)} reads ${hex(ver)}. ` +
        `Fix: pass --dmar-base with the DMAR unit's register base`,
      true,
    );
  }
  if ((gsts & VTD_GSTS_TES) !== 0n) {
    opts.progress(
      `capture: Intel vIOMMU at ${hex(opts.dmarBase)}: VER ${hex(ver)}, translation ` +
        `enabled, RTADDR_REG ${hex(rt)}`,
    );
    return rt;
  }
  opts.progress("capture: Intel vIOMMU present, translation disabled: addresses are GPAs");
  return undefined;
}

/** What step 3 kept: the index's queue entries, their address spaces and the xp dumps to take. */
interface CapturedPages {
  index: Record<string, unknown>[];
  iovaQueues: number;
  /** One per queue, in `queues` order. */
  spaces: QueueSpace[];
  xpPlan: { label: string; gpa: bigint; fmt: string }[];
}

/** Step 3: keeps every queue's ring pages, indirect tables and buffers. */
async function capturePages(
  ctx: CaptureContext,
  store: PageStore,
  queues: QueueInfo[],
  rtaddr: bigint | undefined,
): Promise<CapturedPages> {
  const out: CapturedPages = { index: [], iovaQueues: 0, spaces: [], xpPlan: [] };
  for (const q of queues) {
    const iova = rtaddr !== undefined && (q.features & VIRTIO_F_ACCESS_PLATFORM) !== 0n;
    if (iova && q.bdf === null) {
      throw new CaptureError(
        `${q.path}: behind the vIOMMU but its PCI address is unknown. Fix: give the device ` +
          `an id (-device ...,id=NAME) so query-pci names it`,
        true,
      );
    }
    if (iova) out.iovaQueues++;
    const space = new QueueSpace(
      store,
      iova
        ? {
          rtaddr: rtaddr!,
          sourceId: (q.bdf!.bus << 8) | (q.bdf!.slot << 3) | q.bdf!.function,
        }
        : null,
    );
    out.spaces.push(space);
    out.index.push(await captureQueue(ctx, store, space, q, iova, out.xpPlan));
  }
  return out;
}

/** One queue's rings, indirect tables and buffers; @returns its entry in the index. */
async function captureQueue(
  ctx: CaptureContext,
  store: PageStore,
  space: QueueSpace,
  q: QueueInfo,
  iova: boolean,
  xpPlan: CapturedPages["xpPlan"],
): Promise<Record<string, unknown>> {
  const s = q.status;
  const size = Number(s["vring-num"]);
  const packed = (q.features & VIRTIO_F_RING_PACKED) !== 0n;
  const tag = `${q.name}:${q.queue}`;
  const desc = big(s["vring-desc"]), avail = big(s["vring-avail"]), used = big(s["vring-used"]);
  const descBytes = await space.readKeep(desc, size * 16, `${tag}:desc`);
  if (packed) {
    await space.readKeep(avail, 4, `${tag}:driver_area`);
    await space.readKeep(used, 4, `${tag}:device_area`);
  } else {
    await space.readKeep(avail, 6 + 2 * size, `${tag}:avail`);
    await space.readKeep(used, 6 + 8 * size, `${tag}:used`);
  }
  const descGpa = (await space.pagesOf(desc, 1))[0];
  const availGpa = (await space.pagesOf(avail, 1))[0];
  if (descGpa !== null) {
    xpPlan.push({ label: `${tag}:desc`, gpa: descGpa + (desc & (PAGE - 1n)), fmt: "/32gx" });
  }
  if (availGpa !== null) {
    xpPlan.push({
      label: `${tag}:driver`,
      gpa: availGpa + (avail & (PAGE - 1n)),
      fmt: "/16xh",
    });
  }
  const refs = descBytes
    ? await keepReferenced(ctx, store, space, tag, descsOf(descBytes, size))
    : { indirect: 0, buffers: 0 };
  const entry: Record<string, unknown> = {
    device: q.name,
    path: q.path,
    queue: q.queue,
    size,
    desc,
    avail,
    used,
    packed,
  };
  if (iova) entry.addresses_are_iova = true;
  if (q.bdf) entry.bdf = bdfText(q.bdf);
  entry.indirect_tables_referenced = refs.indirect;
  entry.buffers_referenced = refs.buffers;
  entry.guest_features = q.report;
  entry.qemu_status = s;
  return entry;
}

/**
 * Keeps the indirect tables and the buffers the descriptor table references.
 * @returns the indirect tables and the buffers referenced (with at least one page kept).
 */
async function keepReferenced(
  ctx: CaptureContext,
  store: PageStore,
  space: QueueSpace,
  tag: string,
  table: Desc[],
): Promise<{ indirect: number; buffers: number }> {
  let indirect = 0, buffers = 0;
  const keepBuffer = async (d: Desc, why: string) => {
    const len = Math.min(d.len, ctx.opts.maxPagesPerBuffer * 4096);
    const pages = await space.pagesOf(d.addr, len);
    const ok = pages.filter((p): p is bigint => p !== null);
    await store.fetch(ok);
    for (const p of ok) if (store.pages.has(p)) store.keep(p, why);
    if (ok.length) buffers++;
  };
  for (let i = 0; i < table.length; i++) {
    const d = table[i];
    if (d.len === 0) continue;
    if (d.flags & VIRTQ_DESC_F_INDIRECT) {
      const n = Math.min(Math.floor(d.len / 16), 4096);
      const k = indirect++;
      const bytes = await space.readKeep(d.addr, n * 16, `${tag}:indirect[${k}]`);
      if (!bytes) continue;
      const entries = descsOf(bytes, n);
      for (let j = 0; j < entries.length; j++) {
        if (entries[j].len > 0 && !(entries[j].flags & VIRTQ_DESC_F_INDIRECT)) {
          await keepBuffer(entries[j], `${tag}:ind[${k}][${j}]`);
        }
      }
    } else await keepBuffer(d, `${tag}:buf[${buffers}]`);
  }
  return { indirect, buffers };
}

/** Step 5: writes the index, the pages image, QMP's answers and the HMP transcript. */
async function writeFixture(
  ctx: CaptureContext,
  store: PageStore,
  view: QemuView,
  rtaddr: bigint | undefined,
  captured: CapturedPages,
): Promise<{
  files: CaptureSummary["files"];
  pages: number;
  untranslated: number;
  outsideRam: number;
}> {
  const { opts, qmp } = ctx;
  const v = qmp.version;
  const { spaces } = captured;
  const sorted = [...store.why.keys()].filter((g) => store.pages.has(g))
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const image = new Uint8Array(sorted.length * 4096);
  sorted.forEach((g, i) => image.set(store.pages.get(g)!, i * 4096));
  const untranslated = spaces.reduce((a, s) => a + s.untranslated, 0);
  const outsideRam = spaces.reduce((a, s) => a + s.outsideRam, 0);
  const doc: Record<string, unknown> = {
    format: "virtio-ring-fixture-v1",
    page_size: 4096,
    ram_size: Number(view.ramSize),
    note: "pages.bin = concatenation of 4 KiB guest-physical pages; page i (as listed) is at " +
      "file_offset. All integers little-endian as in guest memory. Addresses in queues[] are " +
      "as programmed by the driver (GPA, or IOVA when addresses_are_iova). Written by " +
      `virtq-lab deno task capture from QEMU ${v.major}.${v.minor}.${v.micro}` +
      (untranslated ? `; ${untranslated} IOVA page(s) did not translate (skipped)` : "") +
      (outsideRam ? `; ${outsideRam} page(s) outside RAM (skipped)` : "") + ".",
  };
  if (rtaddr !== undefined) {
    // The capture's own translations, by requester: the inspector walks the tables itself and
    // uses this map only as a cross-check.
    const byBdf: Record<string, Record<string, string>> = {};
    view.queues.forEach((q, i) => {
      if (!q.bdf || spaces[i].translations().length === 0) return;
      const m = byBdf[bdfText(q.bdf)] ??= {};
      for (const [iova, gpa] of spaces[i].translations()) m[hex(iova)] = hex(gpa);
    });
    doc.iommu = { rtaddr_reg: hex(rtaddr), iova_to_gpa: byBdf };
  }
  doc.pages = sorted.map((g, i) => ({
    gpa: Number(g),
    file_offset: i * 4096,
    why: [...store.why.get(g)!].sort(),
  }));
  doc.queues = captured.index;
  await Deno.mkdir(opts.out, { recursive: true });
  const base = `${opts.out}/${opts.name}`;
  const files = {
    index: `${base}.index.json`,
    pages: `${base}.pages.bin.gz`,
    qmp: `${base}.qmp-virtio.json`,
    hmp: `${base}.hmp-info-virtio.txt`,
  };
  await Deno.writeFile(files.pages, await gzip(image));
  await Deno.writeTextFile(files.index, stringifyExact(doc) + "\n");
  await Deno.writeTextFile(
    files.qmp,
    stringifyExact({
      "x-query-virtio": view.list,
      devices: view.devices,
      "query-pci": view.pciRaw,
    }) +
      "\n",
  );
  await Deno.writeTextFile(files.hmp, ctx.hmpLog.join("\n") + "\n");
  return { files, pages: sorted.length, untranslated, outsideRam };
}
