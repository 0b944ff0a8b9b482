/**
 * Runs one device case against a real back-end and decides its ONE verdict with virtq-lab's own
 * oracles:
 *
 * - `CRASH`: the back-end process died (the campaign restarts it);
 * - `CORRUPT`: the device wrote guest memory it was not granted (canary: every byte outside the
 *   writable buffers the descriptors name, the used rings and the RX buffers is compared with a
 *   snapshot), completed an ID never offered, completed an ID more often than it was offered
 *   (replayed a stale descriptor), or the liveness probe came back with wrong bytes;
 * - `PASS`: the valid work behind the hostile input was done and verified end to end (a frame
 *   back with its MACs swapped; a block read returning the disk image's exact bytes and a write
 *   that landed in the file);
 * - `REJECT`: the probe did not complete but the back-end refused cleanly: it closed the
 *   connection, NACKed a message, set NEEDS_RESET, or logged an error;
 * - `WEDGED`: the probe did not complete and nothing said why.
 * @module
 */

import {
  eventfdRead,
  isVhostUserError,
  type VhostUserDevice,
  VhostUserDevice as Device,
} from "../../src/vhost_user/mod.ts";
import { SgList } from "../../src/virtio/mod.ts";
import { DMA_FROM_DEVICE, DMA_TO_DEVICE, IOPTE_READ, IOPTE_WRITE } from "../../src/dma/mod.ts";
import { SPLIT_HOSTILE_MAP, splitHostileImage } from "../targets/split_hostile_driver.ts";
import { PACKED_HOSTILE_MAP, packedHostileImage } from "../targets/packed_hostile_driver.ts";
import { applyCorruption, REAL_RING_SEEDS } from "../support/real_ring_seeds.ts";
import type { SeedRingState } from "../../src/inspect/_internal.ts";
import type { DeviceCase } from "./cases.ts";
import { type DeviceBackend, DISK_SECTORS, diskByte, SECTOR } from "./backend.ts";

/** The five verdicts. */
export const VERDICTS = ["PASS", "REJECT", "WEDGED", "CORRUPT", "CRASH"] as const;
/** A verdict. */
export type Verdict = typeof VERDICTS[number];

/** What one case ended in. */
export interface CaseResult {
  /** The verdict. */
  verdict: Verdict;
  /** Short oracle code, e.g. `probe-ok`, `log-error`, `canary`, `unoffered-id`. */
  code: string;
  /** What happened, naming addresses and IDs. */
  detail: string;
  /** Wall time of the case in ms. */
  ms: number;
}

/** GPA of guest RAM. */
export const GPA_BASE = 0x4000_0000;
/** Bytes of guest RAM. */
export const RAM = 4 << 20;
/** The hostile ring image block (0x40000 bytes) ends guest RAM: past it is outside the memory table. */
export const IMG = GPA_BASE + RAM - SPLIT_HOSTILE_MAP.end;
/** Queue Size of the well-behaved vrings. */
export const QSIZE = 64;
/** Canary byte over memory the device was not granted (and payload of hostile buffers). */
export const CANARY = 0xa5;
/** Liveness probe deadline (ms). */
export const PROBE_MS = 600;
const NET_HDR = 12;

/** Per-case knobs (tests shorten them). */
export interface CaseOptions {
  /** Probe deadline in ms (default {@link PROBE_MS}). */
  probeMs?: number;
  /** Settle time after the hostile kick in ms (default 30). */
  settleMs?: number;
}

/** Guest memory bookkeeping of one case: the snapshot, the granted mask, our own writes. */
export class CaseMemory {
  readonly ram: Uint8Array;
  snap: Uint8Array = new Uint8Array(0);
  readonly granted: Uint8Array;
  constructor(readonly dev: VhostUserDevice) {
    this.ram = dev.shared.memory.view(GPA_BASE, RAM);
    this.granted = new Uint8Array(RAM);
  }
  /** Grants the device write access to [gpa, gpa + len) (clipped to RAM). */
  grant(gpa: number | bigint, len: number): void {
    const g = typeof gpa === "bigint" ? (gpa > 2n ** 52n ? -1 : Number(gpa)) : gpa;
    if (g < 0 || len <= 0) return;
    const a = Math.max(g, GPA_BASE), b = Math.min(g + len, GPA_BASE + RAM);
    if (b > a) this.granted.fill(1, a - GPA_BASE, b - GPA_BASE);
  }
  /** Our own write after the snapshot: to memory and snapshot alike. */
  write(gpa: number, bytes: Uint8Array): void {
    this.ram.set(bytes, gpa - GPA_BASE);
    this.snap.set(bytes, gpa - GPA_BASE);
  }
  u16(gpa: number, v: number): void {
    this.write(gpa, new Uint8Array([v & 0xff, (v >> 8) & 0xff]));
  }
  takeSnapshot(): void {
    this.snap = this.ram.slice();
  }
  /** First byte changed outside the granted mask, with the count, or null. */
  canary(): { gpa: number; count: number; was: number; now: number } | null {
    const r = this.ram, s = this.snap, m = this.granted;
    if (s.length !== RAM) return null; // the case ended before its snapshot
    const r32 = new Uint32Array(r.buffer, r.byteOffset, RAM / 4);
    const s32 = new Uint32Array(s.buffer, s.byteOffset, RAM / 4);
    let first = -1, count = 0;
    for (let w = 0; w < r32.length; w++) {
      if (r32[w] === s32[w]) continue;
      for (let i = 4 * w; i < 4 * w + 4; i++) {
        if (r[i] !== s[i] && m[i] === 0) {
          if (first < 0) first = i;
          count++;
        }
      }
    }
    return first < 0 ? null : { gpa: GPA_BASE + first, count, was: s[first], now: r[first] };
  }
  /** Grants every WRITE descriptor of the table at `gpa` (`n` entries) and of the indirect tables it names. */
  grantDescriptors(gpa: number, n: number, depth = 0): void {
    this.tables.push([gpa, n, false]);
    const v = new DataView(this.ram.buffer, this.ram.byteOffset);
    for (let i = 0; i < n; i++) {
      const o = gpa + 16 * i - GPA_BASE;
      if (o < 0 || o + 16 > RAM) return;
      const addr = v.getBigUint64(o, true), len = v.getUint32(o + 8, true);
      const flags = v.getUint16(o + 12, true);
      if (flags & 4) {
        if (depth === 0 && addr < 2n ** 52n) {
          this.grantDescriptors(Number(addr), Math.min(Math.floor(len / 16), 4096), 1);
        }
      } else if (flags & 2) this.grant(addr, len);
    }
  }
  /** Descriptor tables scanned for {@link where}: [gpa, entries]. */
  readonly tables: [number, number, boolean][] = [];
  /** Names the area of a GPA for messages, and the descriptor that covers it, if any. */
  where(gpa: number): string {
    const area = gpa >= IMG
      ? `hostile image +0x${(gpa - IMG).toString(16)}`
      : `RAM +0x${(gpa - GPA_BASE).toString(16)}`;
    // The descriptors as the driver wrote them (the snapshot): a used descriptor may overwrite a
    // packed ring slot since.
    const src = this.snap.length === RAM ? this.snap : this.ram;
    const v = new DataView(src.buffer, src.byteOffset);
    const found: string[] = [];
    for (const [t, n, packed] of this.tables) {
      for (let i = 0; i < n; i++) {
        const o = t + 16 * i - GPA_BASE;
        if (o < 0 || o + 16 > RAM) break;
        const addr = v.getBigUint64(o, true), len = v.getUint32(o + 8, true);
        // Split: flags at +12 (§2.7.5); packed: id at +12, flags at +14 (§2.8.13).
        const flags = v.getUint16(o + (packed ? 14 : 12), true);
        if (BigInt(gpa) >= addr && BigInt(gpa) < addr + BigInt(len)) {
          found.push(
            `descriptor ${i} of the table at 0x${t.toString(16)} [addr 0x${
              addr.toString(16)
            }, len ${len}, flags 0x${flags.toString(16)}${flags & 2 ? "" : ": device-READABLE"}]`,
          );
        }
      }
    }
    return found.length ? `${area}, inside ${found.join("; ")}` : `${area}, no descriptor names it`;
  }
}

/** Sleeps up to `ms` serving back-end requests (IOTLB misses); throws DISCONNECTED. */
export function settle(dev: VhostUserDevice, ms: number): void {
  const end = performance.now() + ms;
  for (;;) {
    const left = end - performance.now();
    if (left <= 0) return;
    dev.iotlb?.tick();
    const fd = dev.vrings[0].callFd;
    if (dev.frontend.waitCall(fd, Math.min(left, 20)) === "call") eventfdRead(fd);
  }
}

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

/** Writes a 60-byte frame (dst ..:01, src ..:02, EtherType 0x88b5, seq) after a zero header. */
export function frameBytes(seq: number): Uint8Array {
  const b = new Uint8Array(NET_HDR + 60);
  b.set([2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x88, 0xb5], NET_HDR);
  new DataView(b.buffer).setUint32(NET_HDR + 14, seq, true);
  return b;
}

/** (dst MAC byte 5, src MAC byte 5, seq) of a frame received at `gpa`. */
export function frameAt(m: CaseMemory, gpa: number): [number, number, number] {
  const v = new DataView(m.ram.buffer, m.ram.byteOffset + gpa - GPA_BASE + NET_HDR, 20);
  return [v.getUint8(5), v.getUint8(11), v.getUint32(14, true)];
}

/** The observed end of a probe. */
type Probe =
  | { ok: true; detail: string }
  | { ok: false; corrupt?: string; why: string };

interface Ctx {
  be: DeviceBackend;
  dev: VhostUserDevice;
  m: CaseMemory;
  caseNo: number;
  probeMs: number;
}

/**
 * Runs one case. Never throws for anything the back-end does; opens and closes its own
 * connection; does NOT restart a crashed back-end (the caller does, on `CRASH`).
 */
export function runDeviceCase(
  be: DeviceBackend,
  c: DeviceCase,
  caseNo: number,
  o: CaseOptions = {},
): CaseResult {
  const t0 = performance.now();
  const logStart = be.be.log().length;
  const r = runInner(be, c, caseNo, o, logStart);
  return { ...r, ms: performance.now() - t0 };
}

function features(c: DeviceCase): bigint {
  if (c.kind === "packed-ring") return packedHostileImage(c.input).features;
  if (c.kind === "real-ring") {
    // The captured ring's own ring features (INDIRECT, EVENT_IDX), masked with the offer.
    const seed = REAL_RING_SEEDS.find((s) => s.name === c.seed);
    return seed === undefined ? 0n : BigInt(seed.features) & ((1n << 28n) | (1n << 29n));
  }
  if (c.kind !== "split-ring") return 0n;
  let f = 0n;
  if (c.input.indirect && c.input.corruption.kind !== "ind-no-feature") f |= 1n << 28n;
  if (c.input.inOrder) f |= 1n << 35n;
  if (c.events !== null) f |= 1n << 29n;
  return f;
}

function runInner(
  be: DeviceBackend,
  c: DeviceCase,
  caseNo: number,
  o: CaseOptions,
  logStart: number,
): Omit<CaseResult, "ms"> {
  const exited = () => be.be.exited();
  let dev: VhostUserDevice;
  try {
    dev = Device.open({
      socket: be.be.socket,
      layout: c.kind === "packed-ring" ? "packed" : "split",
      features: features(c),
      queues: be.type === "net" ? 2 : 1,
      queueSize: QSIZE,
      start: false,
      memorySize: RAM,
      gpaBase: GPA_BASE,
      dma: c.kind === "translation"
        ? (c.what === "lazy-stale-window" ? "iommu-lazy" : "iommu-strict")
        : "identity",
      iotlb: "prefault",
      iotlbWriteImpliesRead: !(c.kind === "translation" && c.what === "rw-on-writeonly"),
      // Around DPDK's INVALIDATE off-by-one (it also drops the entry just above the range, see
      // DeviceIotlbDmaApi.shortInvalidate), so an unmap hits exactly the buffer it names.
      iotlbShortInvalidate: true,
      replyTimeoutMs: 2000,
      connectRetryMs: 3000,
      backendExited: exited,
    });
  } catch (e) {
    if (exited() !== null) {
      return { verdict: "CRASH", code: "backend-exited", detail: `at connect: ${exited()}` };
    }
    return { verdict: "REJECT", code: "handshake", detail: String(e) };
  }
  const m = new CaseMemory(dev);
  const ctx: Ctx = { be, dev, m, caseNo, probeMs: o.probeMs ?? PROBE_MS };
  let probe: Probe;
  let corrupt: string | null = null;
  let refused: string | null = null;
  try {
    m.ram.fill(CANARY, dev.bufferGpa - GPA_BASE);
    m.grant(GPA_BASE, dev.bufferGpa - GPA_BASE); // the driver queues' rings: used rings are the device's
    const r: CaseOutcome = c.kind === "split-ring"
      ? splitRingCase(ctx, c, o)
      : c.kind === "packed-ring"
      ? packedRingCase(ctx, c, o)
      : c.kind === "real-ring"
      ? realRingCase(ctx, c, o)
      : c.kind === "activation"
      ? activationCase(ctx, c, o)
      : runTranslationCase(ctx, c, o);
    probe = r.probe;
    corrupt = r.corrupt ?? null;
    refused = r.refused;
  } catch (e) {
    if (!isVhostUserError(e)) {
      dev.close();
      throw e;
    }
    probe = { ok: false, why: e.message };
    refused = `${e.code}${e.request ? ` on ${e.request}` : ""}`;
  }
  const gone = exited();
  const canary = m.canary();
  const disconnected = dev.frontend.socket.peerClosed();
  let status = -1;
  if (gone === null && !disconnected && !probe.ok && dev.frontend.hasProtocol("STATUS")) {
    try {
      status = dev.frontend.getStatus();
    } catch { /* a refusal too */ }
  }
  const canaryWhere = canary === null ? "" : m.where(canary.gpa);
  dev.close();
  if (gone !== null) {
    return {
      verdict: "CRASH",
      code: "backend-exited",
      detail: `the back-end died: ${gone}; log: ${tail(be, logStart)}`,
    };
  }
  if (canary !== null) {
    return {
      verdict: "CORRUPT",
      code: "canary",
      detail: `the device wrote ${canary.count} byte(s) it was not granted, first at GPA ${
        hex(canary.gpa)
      } (${canaryWhere}): ${hex(canary.was)} -> ${hex(canary.now)}`,
    };
  }
  if (corrupt !== null) return { verdict: "CORRUPT", code: corrupt.split(":")[0], detail: corrupt };
  if (!probe.ok && probe.corrupt !== undefined) {
    return { verdict: "CORRUPT", code: "probe-data", detail: probe.corrupt };
  }
  if (probe.ok) return { verdict: "PASS", code: "probe-ok", detail: probe.detail };
  const log = newLogErrors(be, logStart);
  if (refused !== null) {
    return { verdict: "REJECT", code: "refused", detail: `${refused}; ${probe.why}` };
  }
  if (disconnected) {
    return {
      verdict: "REJECT",
      code: "disconnect",
      detail: `the back-end closed the connection; ${probe.why}`,
    };
  }
  if (status >= 0 && (status & 0x40) !== 0) {
    return {
      verdict: "REJECT",
      code: "needs-reset",
      detail: `status ${hex(status)} (NEEDS_RESET); ${probe.why}`,
    };
  }
  if (log !== null) {
    return { verdict: "REJECT", code: "log-error", detail: `logged "${log}"; ${probe.why}` };
  }
  return { verdict: "WEDGED", code: "no-progress", detail: probe.why };
}

const ERROR_LINE =
  /error|fail|invalid|panic|illegal|bad |cannot|can't|too (many|long|large)|exceed|out of|overflow|not (found|mapped)|wrong|unsupported|corrupt|loop/i;

const STATUS_DUMP = /\t-[A-Z_]+: [01]\s*$/;

function newLogErrors(be: DeviceBackend, start: number): string | null {
  const text = be.be.log().slice(start);
  for (const line of text.split("\n")) {
    if (STATUS_DUMP.test(line)) continue; // DPDK prints every status bit, "-FAILED: 0" included
    if (ERROR_LINE.test(line)) return line.trim().slice(0, 200);
  }
  return null;
}

function tail(be: DeviceBackend, start: number): string {
  return be.be.log().slice(start).trim().split("\n").slice(-3).join(" | ").slice(0, 400) ||
    "(empty)";
}

// ---- hostile split rings ---------------------------------------------------------------------

const D = SPLIT_HOSTILE_MAP;

/** What one case's run reports: the liveness probe, a stray write, a clean refusal. */
interface CaseOutcome {
  probe: Probe;
  corrupt?: string | null;
  refused: string | null;
}
function splitRingCase(
  ctx: Ctx,
  c: Extract<DeviceCase, { kind: "split-ring" }>,
  o: CaseOptions,
): Required<CaseOutcome> {
  const { dev, m } = ctx;
  const s = c.input.size;
  const S = Math.max(2 * s, 16);
  const img = splitHostileImage(c.input);
  const bytes = img.bytes;
  // Relocate image-relative addresses (descriptor table and indirect tables) to the block.
  const v = new DataView(bytes.buffer);
  const reloc = (from: number, to: number) => {
    for (let o = from; o + 16 <= to; o += 16) {
      const a = v.getBigUint64(o, true);
      if (a === 0n && v.getBigUint64(o + 8, true) === 0n) continue;
      if (a < BigInt(D.end + 0x10000)) v.setBigUint64(o, a + BigInt(IMG), true);
    }
  };
  reloc(D.desc, D.desc + 16 * s);
  reloc(D.tables, D.data);
  m.ram.set(bytes, IMG - GPA_BASE);
  if (c.events !== null) {
    v.setUint16(D.avail, c.events.flags, true);
    m.ram.set(
      new Uint8Array([c.events.flags & 0xff, c.events.flags >> 8]),
      IMG + D.avail - GPA_BASE,
    );
    const ue = IMG + D.avail + 4 + 2 * S - GPA_BASE;
    m.ram[ue] = c.events.usedEvent & 0xff;
    m.ram[ue + 1] = c.events.usedEvent >> 8;
  }
  const availIdx = m.ram[IMG + D.avail + 2 - GPA_BASE] | (m.ram[IMG + D.avail + 3 - GPA_BASE] << 8);
  // Offered heads: every available ring entry the available index covers.
  const offered = new Map<number, number>();
  // An index more than S ahead wraps the ring: entry k is then offered once per lap.
  for (let k = 0; k < Math.min(availIdx, S); k++) {
    const at = IMG + D.avail + 4 + 2 * k - GPA_BASE;
    const h = m.ram[at] | (m.ram[at + 1] << 8);
    offered.set(h, (offered.get(h) ?? 0) + Math.floor((availIdx - 1 - k) / S) + 1);
  }
  const usedBytes = 6 + 8 * S;
  m.grant(IMG + D.used, usedBytes);
  const net = ctx.be.type === "net";
  const h = c.vring === "tx" ? 1 : 0;
  // Granted before anything can fail: every WRITE descriptor of the image (and of the indirect
  // tables it names); the probe's chains grant their own.
  m.grantDescriptors(IMG + D.desc, S);
  const prep = prepareProbe(ctx, c.vring, offered.size + PROBE_FRAMES);
  m.takeSnapshot();
  const ua = (g: number) => dev.ringAddress(g);
  for (let i = 0; i < dev.vrings.length; i++) {
    if (i === h) {
      dev.startQueue(i, {
        num: S,
        desc: ua(IMG + D.desc),
        driver: ua(IMG + D.avail),
        device: ua(IMG + D.used),
      });
    } else dev.startQueue(i);
  }
  dev.driverOk();
  if (net && h === 1) prep.postRx();
  dev.notify(h);
  settle(dev, o.settleMs ?? 30);
  // The probe: valid chains appended after the hostile ones, on the same vring.
  const ring = new RawSplitRing(m, IMG + D.desc, IMG + D.avail, IMG + D.used, S, s);
  let probe: Probe;
  let refused: string | null = null;
  try {
    probe = prep.run(ring);
  } catch (e) {
    if (!isVhostUserError(e)) throw e;
    probe = { ok: false, why: e.message };
    refused = `${e.code}${e.request ? ` on ${e.request}` : ""}`;
  }
  // Used ring oracle: IDs offered, never more often than offered.
  const usedIdx = ring.usedIdx();
  for (const p of ring.probeHeads) offered.set(p, (offered.get(p) ?? 0) + 1);
  const seen = new Map<number, number>();
  let corrupt: string | null = null;
  for (let k = 0; k < Math.min(usedIdx, S) && corrupt === null; k++) {
    const id = ring.usedId(k);
    const n = (seen.get(id) ?? 0) + 1;
    seen.set(id, n);
    if (!offered.has(id)) {
      corrupt = `unoffered-id: used ring entry ${k} completes ID ${id}, never offered (offered ${
        [...offered.keys()].join(",")
      })`;
    } else if (n > offered.get(id)!) {
      corrupt = `replayed-id: ID ${id} completed ${n} times, offered ${
        offered.get(id)
      } (a stale descriptor replayed)`;
    }
  }
  if (
    corrupt === null && c.input.corruption.kind !== "idx-jump" &&
    c.input.corruption.kind !== "idx-back" && c.input.raw === null
  ) {
    const made = ring.availIdx();
    if (usedIdx > made) corrupt = `used-idx-overrun: used idx ${usedIdx} > available idx ${made}`;
  }
  return { probe, corrupt, refused };
}

/** A hostile ring the probe appends valid chains to (split or packed). */
interface HostileRing {
  /** Free descriptor slots left. */
  readonly free: number;
  /** Adds one chain of [gpa, len, write] segments and publishes it; returns the handle {@link completed} takes. */
  add(segs: [number, number, boolean][]): number;
  /** Did the device complete the chain `add` returned? */
  completed(handle: number): boolean;
}

/** Our own accesses to a hostile split ring after its image (the probe's chains). */
class RawSplitRing implements HostileRing {
  readonly probeHeads: number[] = [];
  #next: number;
  constructor(
    readonly m: CaseMemory,
    readonly desc: number,
    readonly avail: number,
    readonly used: number,
    readonly size: number,
    firstFree: number,
    /** Free descriptor indices to use instead of `firstFree, firstFree + 1, ...` (real rings). */
    readonly freeList: number[] | null = null,
  ) {
    this.#next = firstFree;
  }
  #u16(gpa: number): number {
    const o = gpa - GPA_BASE;
    return this.m.ram[o] | (this.m.ram[o + 1] << 8);
  }
  availIdx(): number {
    return this.#u16(this.avail + 2);
  }
  usedIdx(): number {
    return this.#u16(this.used + 2);
  }
  usedId(k: number): number {
    const o = this.used + 4 + 8 * (k % this.size) - GPA_BASE;
    return new DataView(this.m.ram.buffer, this.m.ram.byteOffset).getUint32(o, true);
  }
  /** Used index when the ring was handed over: older entries are not this run's (real rings). */
  usedFrom = 0;
  /** Is `head` in the used ring (any entry from {@link usedFrom} up to used idx)? */
  completed(head: number): boolean {
    const n = Math.min((this.usedIdx() - this.usedFrom) & 0xffff, this.size);
    for (let k = 0; k < n; k++) if (this.usedId(this.usedFrom + k) === head) return true;
    return false;
  }
  /** Free descriptor slots left. */
  get free(): number {
    return this.freeList !== null ? this.freeList.length : this.size - this.#next;
  }
  /** Adds one chain of [gpa, len, write] segments and publishes it; returns its head. */
  add(segs: [number, number, boolean][]): number {
    const slots = this.freeList !== null
      ? this.freeList.splice(0, segs.length)
      : segs.map((_, i) => this.#next + i);
    const head = slots[0];
    segs.forEach(([g, len, w], i) => {
      const last = i === segs.length - 1;
      const dv = new Uint8Array(16);
      const v = new DataView(dv.buffer);
      v.setBigUint64(0, BigInt(g), true);
      v.setUint32(8, len, true);
      v.setUint16(12, (last ? 0 : 1) | (w ? 2 : 0), true);
      v.setUint16(14, last ? 0 : slots[i + 1], true);
      if (w) this.m.grant(g, len);
      this.m.write(this.desc + 16 * slots[i], dv);
    });
    if (this.freeList === null) this.#next += segs.length;
    const idx = this.availIdx();
    this.m.u16(this.avail + 4 + 2 * (idx % this.size), head);
    this.m.u16(this.avail + 2, (idx + 1) & 0xffff);
    this.probeHeads.push(head);
    return head;
  }
}

// ---- hostile packed rings --------------------------------------------------------------------

const P = PACKED_HOSTILE_MAP;
const DESC_F_NEXT = 1, DESC_F_WRITE = 2, DESC_F_INDIRECT = 4;
const AVAIL = 1 << 7, USED = 1 << 15;

/** Relocates image-relative descriptor addresses of the 16-byte entries in [from, to) by `by`. */
function relocate(v: DataView, from: number, to: number, limit: number, by: number): void {
  for (let o = from; o + 16 <= to; o += 16) {
    const a = v.getBigUint64(o, true);
    if (a === 0n && v.getBigUint64(o + 8, true) === 0n) continue;
    if (a < BigInt(limit)) v.setBigUint64(o, a + BigInt(by), true);
  }
}

/**
 * Grants every device-writable descriptor of the packed ring or indirect table at `gpa` (`n`
 * entries; §2.8.13 layout: addr, len, id, flags at +14) and of the indirect tables it names.
 */
function grantPacked(m: CaseMemory, gpa: number, n: number, depth = 0): void {
  m.tables.push([gpa, n, true]);
  const v = new DataView(m.ram.buffer, m.ram.byteOffset);
  for (let i = 0; i < n; i++) {
    const o = gpa + 16 * i - GPA_BASE;
    if (o < 0 || o + 16 > RAM) return;
    const addr = v.getBigUint64(o, true), len = v.getUint32(o + 8, true);
    const flags = v.getUint16(o + 14, true);
    if (flags & DESC_F_INDIRECT) {
      if (depth === 0 && addr < 2n ** 52n) {
        grantPacked(m, Number(addr), Math.min(Math.floor(len / 16), 4096), 1);
      }
    } else if (flags & DESC_F_WRITE) m.grant(addr, len);
  }
}

/** A hostile packed ring after its image: the probe's lists go at the next free slots (§2.8.6). */
class RawPackedRing implements HostileRing {
  #next: number;
  #wrap: number;
  #taken: number;
  #id = 0x7f00;
  constructor(
    readonly m: CaseMemory,
    readonly ring: number,
    readonly size: number,
    start: number,
    next: number,
    wrap: number,
  ) {
    this.#next = next;
    this.#wrap = wrap;
    this.#taken = (next - start + (wrap === 1 ? 0 : size)) % (2 * size);
  }
  get free(): number {
    return this.size - this.#taken;
  }
  add(segs: [number, number, boolean][]): number {
    const id = this.#id++;
    const bytes = segs.map(([g, len, w], i) => {
      const b = new Uint8Array(16);
      const v = new DataView(b.buffer);
      v.setBigUint64(0, BigInt(g), true);
      v.setUint32(8, len, true);
      v.setUint16(12, id, true);
      const f = (i < segs.length - 1 ? DESC_F_NEXT : 0) | (w ? DESC_F_WRITE : 0) |
        (this.#wrap ? AVAIL : USED);
      v.setUint16(14, f, true);
      if (w) this.m.grant(g, len);
      return { at: this.ring + 16 * ((this.#next + i) % this.size), b };
    });
    // Every descriptor but the head first; the head's flags make the list available.
    for (let i = bytes.length - 1; i >= 0; i--) this.m.write(bytes[i].at, bytes[i].b);
    this.#next += segs.length;
    if (this.#next >= this.size) {
      this.#next -= this.size;
      this.#wrap ^= 1;
    }
    this.#taken += segs.length;
    return id;
  }
  /** Used descriptors the device wrote (slots whose bytes differ from the snapshot): [slot, id]. */
  usedElements(): [number, number][] {
    const out: [number, number][] = [];
    const v = new DataView(this.m.ram.buffer, this.m.ram.byteOffset);
    for (let i = 0; i < this.size; i++) {
      const o = this.ring + 16 * i - GPA_BASE;
      let changed = false;
      for (let k = 0; k < 16 && !changed; k++) changed = this.m.ram[o + k] !== this.m.snap[o + k];
      if (!changed) continue;
      const f = v.getUint16(o + 14, true);
      if (((f & AVAIL) !== 0) === ((f & USED) !== 0)) out.push([i, v.getUint16(o + 12, true)]);
    }
    return out;
  }
  completed(id: number): boolean {
    return this.usedElements().some(([, x]) => x === id);
  }
}

function packedRingCase(
  ctx: Ctx,
  c: Extract<DeviceCase, { kind: "packed-ring" }>,
  o: CaseOptions,
): Required<CaseOutcome> {
  const { dev, m } = ctx;
  const s = c.input.size;
  const N = Math.max(2 * s, 16);
  const img = packedHostileImage(c.input, N);
  const bytes = img.bytes;
  const v = new DataView(bytes.buffer);
  relocate(v, P.ring, P.ring + 16 * N, P.end + 0x10000, IMG);
  relocate(v, P.tables, P.data, P.end + 0x10000, IMG);
  m.ram.set(bytes, IMG - GPA_BASE);
  // Offered IDs: every ID a ring or table entry carries, as often as it occurs.
  const offered = new Map<number, number>();
  for (let k = 0; k < N; k++) {
    const at = P.ring + 16 * k;
    if (v.getBigUint64(at, true) === 0n && v.getBigUint64(at + 8, true) === 0n) continue;
    const id = v.getUint16(at + 12, true);
    offered.set(id, (offered.get(id) ?? 0) + 1);
  }
  const ringGpa = IMG + P.ring;
  m.grant(ringGpa, 16 * N); // used descriptors overwrite the ring
  m.grant(ringGpa + 16 * N + 4, 4); // the device event suppression structure
  grantPacked(m, ringGpa, N);
  const h = c.vring === "tx" ? 1 : 0;
  const prep = prepareProbe(ctx, c.vring, offered.size + PROBE_FRAMES);
  m.takeSnapshot();
  const ua = (g: number) => dev.ringAddress(g);
  for (let i = 0; i < dev.vrings.length; i++) {
    if (i === h) {
      dev.startQueue(i, {
        num: N,
        base: img.start | 0x8000,
        desc: ua(ringGpa),
        driver: ua(ringGpa + 16 * N),
        device: ua(ringGpa + 16 * N + 4),
      });
    } else dev.startQueue(i);
  }
  dev.driverOk();
  if (ctx.be.type === "net" && h === 1) prep.postRx();
  dev.notify(h);
  settle(dev, o.settleMs ?? 30);
  const ring = new RawPackedRing(m, ringGpa, N, img.start, img.next, img.nextWrap);
  let probe: Probe;
  let refused: string | null = null;
  try {
    probe = prep.run(ring);
  } catch (e) {
    if (!isVhostUserError(e)) throw e;
    probe = { ok: false, why: e.message };
    refused = `${e.code}${e.request ? ` on ${e.request}` : ""}`;
  }
  for (let id = 0x7f00; id < 0x7f10; id++) offered.set(id, (offered.get(id) ?? 0) + 1);
  const seen = new Map<number, number>();
  let corrupt: string | null = null;
  for (const [slot, id] of ring.usedElements()) {
    const n = (seen.get(id) ?? 0) + 1;
    seen.set(id, n);
    if (!offered.has(id)) {
      corrupt =
        `unoffered-id: the used descriptor in slot ${slot} completes ID ${id}, never offered`;
      break;
    }
    if (n > offered.get(id)!) {
      corrupt = `replayed-id: ID ${id} completed ${n} times, offered ${offered.get(id)}`;
      break;
    }
  }
  return { probe, corrupt, refused };
}

// ---- real rings (captured from a Linux guest) --------------------------------------------------

/** Where a real ring's areas go in the image block. */
const REAL = { desc: 0, driver: 0x1000, device: 0x2000, tables: 0x3000, data: 0x8000 } as const;

/** The captured ring state of case `c`, with the case's corruption applied. */
function realRingSeed(c: Extract<DeviceCase, { kind: "real-ring" }>): SeedRingState {
  const seed0 = REAL_RING_SEEDS.find((x) => x.name === c.seed);
  if (seed0 === undefined) {
    throw new Error(`real ring seed "${c.seed}" not loaded (tests/fixtures/ missing?)`);
  }
  return applyCorruption(seed0, c.corruption);
}

/**
 * A copy of descriptor bytes `b` with their addresses moved into the image block: an indirect
 * table's address to where `tables` placed it, any other address inside the captured RAM
 * (`ramSize` bytes) into the 128 KiB data window (page offset kept); other values (a corrupted
 * address past the captured RAM) stay as they are.
 */
function relocateDescriptors(
  b: Uint8Array,
  tables: ReadonlyMap<bigint, number>,
  ramSize: number,
): Uint8Array {
  const out = b.slice();
  const v = new DataView(out.buffer);
  for (let at = 0; at + 16 <= out.length; at += 16) {
    const a = v.getBigUint64(at, true);
    const t = tables.get(a);
    if (t !== undefined && (v.getUint16(at + 12, true) & DESC_F_INDIRECT) !== 0) {
      v.setBigUint64(at, BigInt(t), true);
    } else if (a !== 0n && a < BigInt(ramSize)) {
      v.setBigUint64(at, BigInt(IMG + REAL.data) + (a % 0x20000n), true);
    }
  }
  return out;
}

/**
 * Writes the captured ring into the image block ({@link REAL}): descriptor table, driver and
 * device areas, and up to five indirect tables (one page each), addresses relocated.
 */
function placeRealRing(m: CaseMemory, seed: SeedRingState): void {
  m.ram.fill(0, IMG - GPA_BASE, IMG + REAL.data - GPA_BASE);
  const tables = new Map<bigint, number>();
  seed.indirectTables.slice(0, 5).forEach((t, k) =>
    tables.set(BigInt(t.addr), IMG + REAL.tables + 0x1000 * k)
  );
  const put = (gpa: number, b: Uint8Array) => m.ram.set(b, gpa - GPA_BASE);
  put(IMG + REAL.desc, relocateDescriptors(seed.descTable, tables, seed.ramSize));
  put(IMG + REAL.driver, seed.driverArea);
  put(IMG + REAL.device, seed.deviceArea);
  for (const [addr, gpa] of tables) {
    const t = seed.indirectTables.find((x) => BigInt(x.addr) === addr)!;
    put(gpa, relocateDescriptors(t.bytes.subarray(0, 0x1000), tables, seed.ramSize));
  }
}

/** The 16-bit little-endian value at `at` of `b` (a ring index). */
function le16(b: Uint8Array, at: number): number {
  return b[at] | (b[at + 1] << 8);
}

/** The heads the captured driver offered and the device has not consumed (at most Queue Size). */
function offeredHeads(seed: SeedRingState): Set<number> {
  const n = seed.size;
  const availIdx = le16(seed.driverArea, 2);
  const offered = new Set<number>();
  for (
    let k = seed.lastAvailIdx, i = 0;
    k !== availIdx && i < n;
    k = (k + 1) & 0xffff, i++
  ) {
    offered.add(le16(seed.driverArea, 4 + 2 * (k % n)));
  }
  return offered;
}

/**
 * Descriptors outside every chain an offered head starts (chains bounded by the Queue Size):
 * the probe's chains take these.
 */
function freeDescriptors(seed: SeedRingState, offered: ReadonlySet<number>): number[] {
  const n = seed.size;
  const inUse = new Set<number>();
  const dv = new DataView(seed.descTable.buffer, seed.descTable.byteOffset);
  for (const h0 of offered) {
    for (let d = h0, i = 0; d < n && i < n && !inUse.has(d); i++) {
      inUse.add(d);
      if ((dv.getUint16(16 * d + 12, true) & DESC_F_NEXT) === 0) break;
      d = dv.getUint16(16 * d + 14, true);
    }
  }
  const freeList: number[] = [];
  for (let d = 0; d < n; d++) if (!inUse.has(d)) freeList.push(d);
  return freeList;
}

/** Starts every queue; vring `h` on the placed captured ring at its captured avail index. */
function startOnRealRing(dev: VhostUserDevice, h: number, seed: SeedRingState): void {
  const ua = (g: number) => dev.ringAddress(g);
  for (let i = 0; i < dev.vrings.length; i++) {
    if (i !== h) {
      dev.startQueue(i);
      continue;
    }
    dev.startQueue(i, {
      num: seed.size,
      base: seed.lastAvailIdx,
      desc: ua(IMG + REAL.desc),
      driver: ua(IMG + REAL.driver),
      device: ua(IMG + REAL.device),
    });
  }
}

/**
 * The used ring oracle: every entry the device added since `usedBefore` completes a head it
 * was offered, and the used index moved by at most the Queue Size `n`. Returns the violation.
 */
function realRingUsedViolation(
  m: CaseMemory,
  n: number,
  usedBefore: number,
  offered: ReadonlySet<number>,
): string | null {
  const uv = new DataView(m.ram.buffer, m.ram.byteOffset + IMG + REAL.device - GPA_BASE);
  const usedNow = uv.getUint16(2, true);
  for (let k = usedBefore; k !== usedNow; k = (k + 1) & 0xffff) {
    if (((k - usedBefore) & 0xffff) > n) {
      return `used-idx-overrun: used idx moved from ${usedBefore} to ${usedNow}, more than ${n}`;
    }
    const id = uv.getUint32(4 + 8 * (k % n), true);
    if (!offered.has(id)) {
      return `unoffered-id: used ring entry ${k % n} completes ID ${id}, never offered (offered ${
        [...offered].slice(0, 8).join(",")
      }${offered.size > 8 ? ",..." : ""})`;
    }
  }
  return null;
}

function realRingCase(
  ctx: Ctx,
  c: Extract<DeviceCase, { kind: "real-ring" }>,
  o: CaseOptions,
): Required<CaseOutcome> {
  const { dev, m } = ctx;
  const seed = realRingSeed(c);
  const n = seed.size;
  placeRealRing(m, seed);
  const availIdx = le16(seed.driverArea, 2);
  const offered = offeredHeads(seed);
  const freeList = freeDescriptors(seed, offered);
  m.grant(IMG + REAL.device, seed.deviceArea.length);
  m.grantDescriptors(IMG + REAL.desc, n);
  const h = c.vring === "tx" ? 1 : 0;
  const prep = prepareProbe(ctx, c.vring, offered.size + PROBE_FRAMES);
  m.takeSnapshot();
  const usedBefore = le16(seed.deviceArea, 2);
  startOnRealRing(dev, h, seed);
  dev.driverOk();
  if (ctx.be.type === "net" && h === 1) prep.postRx();
  dev.notify(h);
  settle(dev, o.settleMs ?? 30);
  // The probe: valid chains after the captured ones, on the same vring, in free descriptors.
  const ring = new RawSplitRing(
    m,
    IMG + REAL.desc,
    IMG + REAL.driver,
    IMG + REAL.device,
    n,
    0,
    freeList,
  );
  ring.usedFrom = usedBefore;
  let probe: Probe;
  let refused: string | null = null;
  if (
    ring.free < (ctx.be.type === "blk" ? 6 : 1) || ((availIdx - seed.lastAvailIdx) & 0xffff) >= n
  ) {
    probe = { ok: false, why: "no free descriptor or available ring entry for the probe" };
  } else {
    try {
      probe = prep.run(ring);
    } catch (e) {
      if (!isVhostUserError(e)) throw e;
      probe = { ok: false, why: e.message };
      refused = `${e.code}${e.request ? ` on ${e.request}` : ""}`;
    }
  }
  for (const p of ring.probeHeads) offered.add(p);
  const corrupt = realRingUsedViolation(m, n, usedBefore, offered);
  return { probe, corrupt, refused };
}

// ---- probes -----------------------------------------------------------------------------------

interface PreparedProbe {
  /** Posts the RX buffers of a net device's well-behaved RX vring. */
  postRx(): void;
  /** Runs the probe on a hostile split ring (`null`: on the driver queues; `posted`: RX already posted). */
  run(ring: HostileRing | null, posted?: boolean): Probe;
}

/** GPAs of the probe areas (after the driver queues' rings). */
function areas(dev: VhostUserDevice) {
  const b = dev.bufferGpa;
  return { rx: b, tx: b + 0x10000, probe: b + 0x20000 };
}

const PROBE_FRAMES = 6;

function prepareProbe(ctx: Ctx, vring: "rx" | "tx" | "req", rxFrames?: number): PreparedProbe {
  return ctx.be.type === "net" ? netProbe(ctx, vring, rxFrames) : blkProbe(ctx);
}

/**
 * The network probe. `rxFrames`: frames to send at most while a probe RX buffer waits behind
 * hostile ones (a real RX ring holds up to its Queue Size of captured buffers before it).
 */
function netProbe(ctx: Ctx, vring: "rx" | "tx" | "req", rxFrames = PROBE_FRAMES): PreparedProbe {
  const { dev, m } = ctx;
  const a = areas(dev);
  const seq0 = 0x5e000000 + ctx.caseNo * 16;
  for (let k = 0; k < PROBE_FRAMES; k++) {
    m.ram.set(frameBytes(seq0 + k), a.tx + k * 0x1000 - GPA_BASE);
  }
  m.grant(a.rx, 16 * 0x1000);
  m.ram.fill(0, a.rx - GPA_BASE, a.rx - GPA_BASE + 16 * 0x1000); // RX buffers start zeroed
  const postRx = () => {
    for (let i = 0; i < 16; i++) {
      dev.vrings[0].queue.add(SgList.of(), SgList.of([a.rx + i * 0x1000, 2048]), i);
    }
    dev.kick(0);
  };
  const ours = (f: [number, number, number]) => f[2] >= seq0 && f[2] < seq0 + PROBE_FRAMES;
  return {
    postRx,
    run(ring, posted = false) {
      const deadline = performance.now() + ctx.probeMs;
      let sent = 0;
      const reclaimTx = () => {
        if (vring !== "tx" || ring === null) {
          for (
            let t = dev.vrings[1].queue.getUsed();
            t !== undefined;
            t = dev.vrings[1].queue.getUsed()
          ) { /* reclaim */ }
        }
      };
      const send = () => {
        const g = a.tx + (sent % PROBE_FRAMES) * 0x1000;
        if (vring === "tx" && ring !== null) {
          if (ring.free < 1) return;
          ring.add([[g, NET_HDR + 60, false]]);
          dev.notify(1);
        } else {
          reclaimTx();
          dev.vrings[1].queue.add(SgList.of([g, NET_HDR + 60]), SgList.of(), 1000 + sent);
          dev.kick(1);
        }
        sent++;
      };
      if (vring === "rx" && ring !== null) {
        // The valid RX buffer behind the hostile ones; frames are sent until it fills.
        const head = ring.add([[a.probe, 2048, true]]);
        dev.notify(0);
        while (performance.now() < deadline) {
          for (let b = 0; b < 16 && sent < rxFrames && dev.vrings[1].queue.numFree > 0; b++) send();
          settle(dev, 25);
          if (ring.completed(head)) {
            const f = frameAt(m, a.probe);
            if (f[0] === 2 && f[1] === 1 && ours(f)) {
              return {
                ok: true,
                detail: `frame ${hex(f[2])} back in the probe RX buffer, MACs swapped`,
              };
            }
            return {
              ok: false,
              corrupt: `the probe RX buffer completed with frame (dst ${f[0]}, src ${f[1]}, seq ${
                hex(f[2])
              }), not one of ours with MACs swapped`,
              why: "bad frame",
            };
          }
        }
        return {
          ok: false,
          why:
            `the probe RX buffer (head ${head}) was not filled within ${ctx.probeMs} ms (${sent} frames sent)`,
        };
      }
      // TX side hostile (or none): frames out, one back on the RX driver queue.
      if (ring === null && !posted) postRx();
      let lastTry = -1e9;
      while (performance.now() < deadline) {
        if (sent < PROBE_FRAMES && performance.now() - lastTry > 120) {
          send();
          lastTry = performance.now();
        }
        const r = dev.waitUsed(0, 25);
        if (r.kind === "used") {
          if (r.token >= 16) continue; // a hostile RX buffer of a translation case
          const f = frameAt(m, a.rx + r.token * 0x1000);
          dev.vrings[0].queue.add(SgList.of(), SgList.of([a.rx + r.token * 0x1000, 2048]), r.token);
          dev.kick(0);
          if (!ours(f)) continue; // a hostile chain's frame
          if (f[0] === 2 && f[1] === 1) {
            return {
              ok: true,
              detail: `frame ${hex(f[2])} round-tripped, MACs swapped (${sent} sent)`,
            };
          }
          return {
            ok: false,
            corrupt: `frame ${hex(f[2])} came back without its MACs swapped (dst ${f[0]}, src ${
              f[1]
            })`,
            why: "bad frame",
          };
        }
        if (r.kind === "timeout") continue;
        if (r.kind === "driver-error") {
          return {
            ok: false,
            corrupt: `the RX used ring broke the driver: ${r.error.code}: ${r.error.message}`,
            why: "driver-error",
          };
        }
        return { ok: false, why: `${r.kind}: ${r.message}` };
      }
      return { ok: false, why: `no probe frame came back within ${ctx.probeMs} ms (${sent} sent)` };
    },
  };
}

const BLK_T_IN = 0, BLK_T_OUT = 1;

function blkHeader(type: number, sector: number): Uint8Array {
  const h = new DataView(new ArrayBuffer(16));
  h.setUint32(0, type, true);
  h.setBigUint64(8, BigInt(sector), true);
  return new Uint8Array(h.buffer);
}

function blkProbe(ctx: Ctx): PreparedProbe {
  const { dev, m, be } = ctx;
  const a = areas(dev).probe;
  const rs = ctx.caseNo % (DISK_SECTORS - 64); // read: untouched sectors
  const ws = DISK_SECTORS - 1 - (ctx.caseNo % 32); // write: the last 32 sectors
  const data = new Uint8Array(SECTOR).map((_, i) => (i * 13 + ctx.caseNo) & 0xff);
  const put = (g: number, b: Uint8Array) => m.ram.set(b, g - GPA_BASE);
  put(a, blkHeader(BLK_T_IN, rs));
  put(a + 0x100, blkHeader(BLK_T_OUT, ws));
  put(a + 0x3000, data);
  put(a + 0x2000, new Uint8Array([0xff, 0xff]));
  const readSegs: [number, number, boolean][] = [[a, 16, false], [a + 0x1000, SECTOR, true], [
    a + 0x2000,
    1,
    true,
  ]];
  const writeSegs: [number, number, boolean][] = [[a + 0x100, 16, false], [
    a + 0x3000,
    SECTOR,
    false,
  ], [a + 0x2001, 1, true]];
  const check = (): Probe => {
    const st = m.ram[a + 0x2000 - GPA_BASE], sw = m.ram[a + 0x2001 - GPA_BASE];
    if (st !== 0) {
      return {
        ok: false,
        corrupt: `read of sector ${rs} completed with status ${st}`,
        why: "status",
      };
    }
    if (sw !== 0) {
      return {
        ok: false,
        corrupt: `write of sector ${ws} completed with status ${sw}`,
        why: "status",
      };
    }
    const got = m.ram.subarray(a + 0x1000 - GPA_BASE, a + 0x1000 - GPA_BASE + SECTOR);
    if (be.disk !== null) {
      for (let i = 0; i < SECTOR; i++) {
        if (got[i] !== diskByte(rs, i)) {
          return {
            ok: false,
            corrupt: `read of sector ${rs}: byte ${i} is ${got[i]}, the image has ${
              diskByte(rs, i)
            }`,
            why: "data",
          };
        }
      }
      const f = Deno.openSync(be.disk, { read: true });
      try {
        const buf = new Uint8Array(SECTOR);
        f.seekSync(ws * SECTOR, Deno.SeekMode.Start);
        let n = 0;
        while (n < SECTOR) {
          const k = f.readSync(buf.subarray(n));
          if (k === null) break;
          n += k;
        }
        for (let i = 0; i < SECTOR; i++) {
          if (buf[i] !== data[i]) {
            return {
              ok: false,
              corrupt: `the write to sector ${ws} did not land (byte ${i} is ${buf[i]})`,
              why: "data",
            };
          }
        }
      } finally {
        f.close();
      }
    }
    return {
      ok: true,
      detail: `read of sector ${rs} returned the image's bytes; write to sector ${ws} landed`,
    };
  };
  return {
    postRx() {},
    run(ring) {
      const deadline = performance.now() + ctx.probeMs;
      if (ring !== null) {
        const hr = ring.add(readSegs), hw = ring.add(writeSegs);
        dev.notify(0);
        while (performance.now() < deadline) {
          settle(dev, 15);
          if (ring.completed(hr) && ring.completed(hw)) return check();
        }
        return {
          ok: false,
          why: `the probe requests (heads ${hr}, ${hw}) did not complete within ${ctx.probeMs} ms`,
        };
      }
      const q = dev.vrings[0].queue;
      for (const [t, segs] of [[1, readSegs], [2, writeSegs]] as const) {
        for (const [g, len, w] of segs) if (w) m.grant(g, len);
        q.add(
          SgList.of(...segs.filter((x) => !x[2]).map(([g, l]) => [g, l] as [number, number])),
          SgList.of(...segs.filter((x) => x[2]).map(([g, l]) => [g, l] as [number, number])),
          t,
        );
      }
      dev.kick(0);
      let done = 0;
      while (done < 2) {
        const r = dev.waitUsed(0, Math.max(1, deadline - performance.now()));
        if (r.kind === "used") done++;
        else if (r.kind === "driver-error") {
          return {
            ok: false,
            corrupt: `the used ring broke the driver: ${r.error.code}`,
            why: "driver-error",
          };
        } else return { ok: false, why: `${r.kind}: ${r.message}` };
      }
      return check();
    },
  };
}

// ---- hostile activation ----------------------------------------------------------------------

function activationCase(
  ctx: Ctx,
  c: Extract<DeviceCase, { kind: "activation" }>,
  o: CaseOptions,
): { probe: Probe; refused: string | null } {
  const { dev, m } = ctx;
  const a = c.activation;
  const h = c.vring === "tx" ? 1 : 0;
  const base = a.frame === "image" ? dev.ringAddress(IMG) : 0n;
  const toUa = (x: number) => (base + BigInt(x)) & 0xffff_ffff_ffff_ffffn;
  // The ring areas start zeroed (a fresh ring); their contents are not the hostile part here.
  m.ram.fill(0, IMG - GPA_BASE, IMG + D.data - GPA_BASE);
  if (a.frame === "image") m.grant(IMG + a.device, 6 + 8 * Math.min(a.size, 0x10000));
  const prep = prepareProbe(ctx, c.vring);
  m.takeSnapshot();
  let refused: string | null = null;
  for (let i = 0; i < dev.vrings.length; i++) {
    if (i !== h) {
      dev.startQueue(i);
      continue;
    }
    try {
      dev.startQueue(i, {
        num: a.size,
        base: a.base,
        desc: toUa(a.desc),
        driver: toUa(a.driver),
        device: toUa(a.device),
      });
    } catch (e) {
      if (!isVhostUserError(e) || e.code === "DISCONNECTED" || e.code === "TIMEOUT") throw e;
      refused = `${e.code}${e.request ? ` on ${e.request}` : ""}`;
    }
  }
  dev.driverOk();
  dev.notify(h);
  settle(dev, o.settleMs ?? 30);
  // Liveness: stop the hostile vring, set it up validly, and run valid work on the driver queues.
  const b = dev.getVringBase(h);
  if (b.kind === "disconnected" || b.kind === "exited" || b.kind === "timeout") {
    return {
      probe: { ok: false, why: `GET_VRING_BASE after the hostile set-up: ${b.kind}` },
      refused,
    };
  }
  dev.startQueue(h);
  dev.driverOk();
  return { probe: prep.run(null), refused };
}

// ---- translation edge cases (ACCESS_PLATFORM) -------------------------------------------------

/** IOVA window no DMA mapping uses (the IOVA allocator stays far below it). */
const WILD_IOVA = 0x3f_0000_0000;

/** Finds the descriptor of vring `index` with length `len` (unique in the case) and sets its address. */
function rewriteDesc(ctx: Ctx, index: number, len: number, addr: bigint): number {
  const v = ctx.dev.vrings[index];
  const dv = new DataView(ctx.m.ram.buffer, ctx.m.ram.byteOffset);
  for (let i = 0; i < v.queue.size; i++) {
    const o = v.ringGpa + 16 * i - GPA_BASE;
    if (dv.getUint32(o + 8, true) === len) {
      dv.setBigUint64(o, addr, true);
      ctx.m.snap.set(ctx.m.ram.subarray(o, o + 8), o);
      return i;
    }
  }
  throw new Error(`no descriptor of length ${len} on vring ${index}`);
}

type TranslationCase = Extract<DeviceCase, { kind: "translation" }>;
/** GPAs of the probe areas ({@link areas}). */
type ProbeAreas = ReturnType<typeof areas>;

/** Length of the hostile buffer: a length no other descriptor has ({@link rewriteDesc}). */
const HOSTILE_LEN = NET_HDR + 59;
/** Bytes of the scattered buffer on its first IOVA page. */
const SCATTER_SPLIT = 20;

/** IOVA of the first of the two scattered pages of case value `value`. */
function scatteredIova(value: number): number {
  return WILD_IOVA + 0x100000 * (1 + (value % 16));
}

/** Frame sequence number of case `caseNo`'s scattered TX frame. */
function scatteredSeq(caseNo: number): number {
  return 0x5e000000 + caseNo * 16 + 15;
}

/**
 * Scattered pages: maps IOVA page 0 to GPA `a.probe` and page 1 to `a.probe + 0x3000`; on TX
 * the frame is written across them, on RX both parts are granted to the device.
 */
function mapScatteredPages(ctx: Ctx, c: TranslationCase, a: ProbeAreas): void {
  const { dev, m } = ctx;
  const sIova = scatteredIova(c.value);
  const split = SCATTER_SPLIT;
  const f = frameBytes(scatteredSeq(ctx.caseNo));
  if (c.vring === "tx") {
    m.ram.set(f.subarray(0, split), a.probe + 0x1000 - split - GPA_BASE);
    m.ram.set(f.subarray(split), a.probe + 0x3000 - GPA_BASE);
  }
  dev.dma.domain!.table!.map(sIova, a.probe, 0x1000, IOPTE_READ | IOPTE_WRITE);
  dev.dma.domain!.table!.map(sIova + 0x1000, a.probe + 0x3000, 0x1000, IOPTE_READ | IOPTE_WRITE);
  if (c.vring === "rx") {
    m.grant(a.probe + 0x1000 - split, split);
    m.grant(a.probe + 0x3000, 2048 - split);
  }
}

/** Never-mapped: a descriptor whose address is an IOVA no mapping covers. */
function offerNeverMapped(ctx: Ctx, c: TranslationCase, a: ProbeAreas): string {
  const { dev } = ctx;
  const iova = BigInt(WILD_IOVA) + BigInt(c.value) * 4096n;
  if (c.vring === "tx") {
    dev.vrings[1].queue.add(SgList.of([a.tx + 0x8000, HOSTILE_LEN]), SgList.of(), 900);
    rewriteDesc(ctx, 1, HOSTILE_LEN, iova);
    dev.kick(1);
  } else {
    dev.vrings[0].queue.add(SgList.of(), SgList.of([a.probe, HOSTILE_LEN]), 900);
    rewriteDesc(ctx, 0, HOSTILE_LEN, iova);
    dev.kick(0);
  }
  return `a ${c.vring.toUpperCase()} descriptor at IOVA 0x${iova.toString(16)}, never mapped`;
}

/** Adds the hostile buffer on `c.vring`, rewrites its address to bus address `bus` and kicks. */
function offerAtBusAddress(
  ctx: Ctx,
  c: TranslationCase,
  a: ProbeAreas,
  bus: number | bigint,
): void {
  const { dev } = ctx;
  if (c.vring === "rx") {
    dev.vrings[0].queue.add(SgList.of(), SgList.of([a.probe + 0x2000, HOSTILE_LEN]), 900);
  } else dev.vrings[1].queue.add(SgList.of([a.tx + 0x9000, HOSTILE_LEN]), SgList.of(), 900);
  rewriteDesc(ctx, c.vring === "rx" ? 0 : 1, HOSTILE_LEN, BigInt(bus));
  dev.kick(c.vring === "rx" ? 0 : 1);
}

/**
 * Write-to-readonly. RX: a buffer the device must write, mapped DMA_TO_DEVICE (read-only);
 * TX: a buffer it must read, mapped DMA_FROM_DEVICE (write-only).
 */
function offerWrongDirection(ctx: Ctx, c: TranslationCase, a: ProbeAreas): string {
  const gpa = c.vring === "rx" ? a.probe : a.tx + 0x8000;
  const bus = ctx.dev.iotlb!.map(
    gpa,
    HOSTILE_LEN,
    c.vring === "rx" ? DMA_TO_DEVICE : DMA_FROM_DEVICE,
  );
  offerAtBusAddress(ctx, c, a, bus);
  return `a ${c.vring.toUpperCase()} buffer mapped ${
    c.vring === "rx" ? "read-only" : "write-only"
  }`;
}

/** Scattered pages: a buffer that starts `SCATTER_SPLIT` bytes before the end of IOVA page 0. */
function offerScatteredBuffer(ctx: Ctx, c: TranslationCase, a: ProbeAreas): string {
  const { dev } = ctx;
  const start = BigInt(scatteredIova(c.value) + 0x1000 - SCATTER_SPLIT);
  if (c.vring === "tx") {
    dev.vrings[1].queue.add(SgList.of([a.tx + 0x9000, HOSTILE_LEN + 1]), SgList.of(), 900);
    rewriteDesc(ctx, 1, HOSTILE_LEN + 1, start);
    dev.kick(1);
  } else {
    dev.vrings[0].queue.add(SgList.of(), SgList.of([a.tx + 0x9000, 2048]), 900);
    rewriteDesc(ctx, 0, 2048, start);
    dev.kick(0);
  }
  return `a ${c.vring.toUpperCase()} buffer over IOVA pages mapped to GPAs 0x${
    a.probe.toString(16)
  } and 0x${(a.probe + 0x3000).toString(16)}`;
}

/**
 * Invalidate-in-flight / lazy-stale-window: a buffer is posted (its translation pushed), then
 * unmapped while the device holds it: strict sends INVALIDATE at once, lazy only at the flush.
 */
function offerThenUnmap(ctx: Ctx, c: TranslationCase, a: ProbeAreas): string {
  const { dev } = ctx;
  const iotlb = dev.iotlb!;
  // Warm-up: one frame out, so the back-end is forwarding before the window opens (the
  // lazy flush comes 10 ms after the unmap).
  dev.vrings[1].queue.add(SgList.of([a.tx + 0xa000, HOSTILE_LEN + 5]), SgList.of(), 950);
  dev.kick(1);
  dev.waitUsed(1, 300);
  const gpa = c.vring === "rx" ? a.probe : a.tx + 0x8000;
  const dir = c.vring === "rx" ? DMA_FROM_DEVICE : DMA_TO_DEVICE;
  const bus = iotlb.map(gpa, HOSTILE_LEN, dir);
  offerAtBusAddress(ctx, c, a, bus);
  iotlb.unmap(bus, HOSTILE_LEN, dir);
  return `a ${c.vring.toUpperCase()} buffer unmapped while in flight (${
    c.what === "lazy-stale-window"
      ? `lazy: ${iotlb.pendingInvalidations().length} INVALIDATE(s) pending`
      : "strict INVALIDATE sent"
  })`;
}

/** Offers the case's hostile buffer; returns the note that prefixes the verdict's detail. */
function offerHostileBuffer(ctx: Ctx, c: TranslationCase, a: ProbeAreas): string {
  switch (c.what) {
    case "never-mapped":
      return offerNeverMapped(ctx, c, a);
    case "write-to-readonly":
      return offerWrongDirection(ctx, c, a);
    case "rw-on-writeonly":
      return "from-device buffers mapped write-only (no write-implies-read)";
    case "scattered-pages":
      return offerScatteredBuffer(ctx, c, a);
    case "invalidate-in-flight":
    case "lazy-stale-window":
      return offerThenUnmap(ctx, c, a);
  }
}

/** Whether frame `want` (or a canary-filled one) landed in one of the 16 RX buffers. */
function scatteredFrameSeen(m: CaseMemory, rxBase: number, want: number): boolean {
  for (let i = 0; i < 16; i++) {
    const s = frameAt(m, rxBase + i * 0x1000)[2];
    if (s === want || s === 0xa5a5a5a5) return true;
  }
  return false;
}

/**
 * The back-end drops a frame whose page misses; the miss is served, so the scattered frame is
 * sent again (up to 3 times, 150 ms each) until it comes back, reposting RX buffers meanwhile.
 */
function resendScatteredFrame(ctx: Ctx, c: TranslationCase, a: ProbeAreas, want: number): void {
  const { dev, m } = ctx;
  const rx = dev.vrings[0].queue, tx = dev.vrings[1].queue;
  const start = BigInt(scatteredIova(c.value) + 0x1000 - SCATTER_SPLIT);
  for (let attempt = 0; attempt < 3 && !scatteredFrameSeen(m, a.rx, want); attempt++) {
    tx.add(SgList.of([a.tx + 0x9000, HOSTILE_LEN + 2 + attempt]), SgList.of(), 901 + attempt);
    rewriteDesc(ctx, 1, HOSTILE_LEN + 2 + attempt, start);
    dev.kick(1);
    const end = performance.now() + 150;
    while (performance.now() < end && !scatteredFrameSeen(m, a.rx, want)) {
      const r = dev.waitUsed(0, 25);
      if (r.kind === "used" && r.token < 16) {
        if (scatteredFrameSeen(m, a.rx, want)) break;
        rx.add(SgList.of(), SgList.of([a.rx + r.token * 0x1000, 2048]), r.token);
        dev.kick(0);
      }
      for (let t = tx.getUsed(); t !== undefined; t = tx.getUsed()) { /* reclaim */ }
    }
  }
}

/**
 * Judges the scattered TX frame in the RX buffers: a final failing probe when it came back
 * garbled or with canary bytes, else whether it was `"found"` or is `"missing"`.
 */
function scatteredFrameOutcome(
  m: CaseMemory,
  a: ProbeAreas,
  want: number,
  note: string,
): Probe | "found" | "missing" {
  for (let i = 0; i < 16; i++) {
    const f = frameAt(m, a.rx + i * 0x1000);
    if (f[2] !== want) continue;
    if (f[0] !== 2 || f[1] !== 1) {
      return {
        ok: false,
        corrupt: `the scattered frame came back garbled (dst ${f[0]}, src ${f[1]})`,
        why: "bad frame",
      };
    }
    return "found";
  }
  // The device read past the first IOVA page in its own address space instead of
  // following the IOVA to the second page: the frame comes back with canary bytes.
  for (let i = 0; i < 16; i++) {
    if (frameAt(m, a.rx + i * 0x1000)[2] === 0xa5a5a5a5) {
      const where = `GPA 0x${(a.probe + 0x1000).toString(16)}`;
      return {
        ok: false,
        corrupt:
          `${note}: the frame came back with canary bytes from ${where}, which no IOVA of the buffer maps: the device read past the first IOVA page in its own address space`,
        why: "bad frame",
      };
    }
  }
  return "missing";
}

function runTranslationCase(
  ctx: Ctx,
  c: TranslationCase,
  o: CaseOptions,
): Required<CaseOutcome> {
  const { dev, m } = ctx;
  const a = areas(dev);
  const prep = netProbe(ctx, "tx");
  m.ram.set(frameBytes(0x7e000000 + ctx.caseNo), a.tx + 0x8000 - GPA_BASE);
  if (c.what === "scattered-pages") mapScatteredPages(ctx, c, a);
  m.takeSnapshot();
  for (const v of dev.vrings) dev.startQueue(v.index);
  dev.driverOk();
  // The hostile RX buffer goes first (the device fills RX buffers in ring order).
  const rxFirst = c.vring === "rx";
  if (!rxFirst) prep.postRx();
  const note = offerHostileBuffer(ctx, c, a);
  if (rxFirst) prep.postRx();
  // After an unmap the probe starts at once: frames arrive inside the lazy stale window.
  if (c.what !== "invalidate-in-flight" && c.what !== "lazy-stale-window") {
    settle(dev, o.settleMs ?? 30);
  }
  let probe = prep.run(null, true);
  if (c.what === "scattered-pages" && c.vring === "tx") {
    // The scattered frame itself must come back intact.
    const want = scatteredSeq(ctx.caseNo);
    if (probe.ok) resendScatteredFrame(ctx, c, a, want);
    const outcome = scatteredFrameOutcome(m, a, want, note);
    if (typeof outcome !== "string") return { probe: outcome, corrupt: null, refused: null };
    if (outcome === "missing" && probe.ok) {
      probe = { ok: false, why: "the scattered frame never came back (probe frames did)" };
    }
  }
  if (probe.ok) probe = { ok: true, detail: `${note}; ${probe.detail}` };
  else probe = { ...probe, why: `${note}; ${probe.why}` };
  return { probe, corrupt: null, refused: null };
}
