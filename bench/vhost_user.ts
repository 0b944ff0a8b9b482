/**
 * Bench suite `vhost-user`: round trips and throughput against real vhost-user back-ends, per
 * ring layout and per DMA mode, with a hand-laid minimal ring on the same back-end in the same
 * run, so the driver engine's overhead is a ratio; IOTLB messages per chain beside every
 * ACCESS_PLATFORM line. Wall time strict vs lazy vs prefault here is real, not modelled.
 *
 * - testpmd (vhost PMD, macswap, `iommu-support=1`): one frame out on vring 1, back on vring 0;
 *   round trip = add + kick until the swapped frame is in the RX used ring. Throughput = bursts
 *   of 32 frames in flight.
 * - qemu-storage-daemon (vhost-user-blk): one 512-byte read (header, data, status), depth 1;
 *   throughput = depth 8.
 *
 * Engine and hand-laid sessions alternate connections to one back-end process, `--rounds`
 * times, and the best round counts (noise on a shared machine only adds time).
 *
 * Both testpmd drivers (engine and hand-laid) do a frame's housekeeping (reclaiming the
 * transmitted buffer, giving the receive buffer back) before its round trip ends.
 * `--defer-housekeeping` moves it, for both, after the next frame's transmit is published; on
 * testpmd that doubles both round trips (about 0.65 to 1.4 us), so its ratio near 1.0 is diluted,
 * not an engine gain: kept for the experiment, not the headline.
 *
 * Both wait the same way: poll the used ring, read the clock once per 64 empty polls
 * (`performance.now()` costs about 100 ns in Deno), as `VhostUserDevice.waitUsed` does.
 *
 * Isolation (`--isolate layout`, the default): with both layouts, each layout's testpmd part runs
 * in its own Deno process (own isolate, own testpmd), as the main bench runs each family in its
 * own isolate. In one isolate the call sites both drivers go through (`waitUsed`'s `getUsed`,
 * `kick`, `add`; the hand-laid ring's closures and its `post` / `poll`) see the split and the
 * packed classes, so a change to one layout's driver moves the other's figures through V8's
 * inlining budget; apart, each sees one layout, for the engine and the hand-laid ring alike.
 *
 * `--paired`: the engine (vrings 0/1) and the hand-laid ring (vrings 2/3) share one session on
 * two queue pairs of the testpmd port, alternating blocks of 500 frames, so a load change on a
 * shared machine falls on both sides of the ratio instead of on one session. testpmd's lcore then
 * polls the idle pair too (one empty dequeue per loop, on either side alike). Not the default.
 *
 * Run: `deno task bench:vhost-user [--smoke] [--frames N] [--rounds R] [--backend testpmd|qsd]
 * [--json FILE]` (also `deno task bench --suite vhost-user` with the permissions it needs).
 *
 * @module
 */

import { parseArgs } from "@std/cli/parse-args";
import { SgList } from "../src/virtio/mod.ts";
import type { RingLayout } from "../src/virtio/mod.ts";
import {
  backendUnavailable,
  eventfdRead,
  startQsd,
  startTestpmd,
  type VhostBackend,
  type VhostDmaMode,
  VhostUserDevice,
} from "../src/vhost_user/mod.ts";
import { DESC_F_WRITE, HandPackedRing, type HandRing, HandSplitRing } from "./vhost_user_rings.ts";

/** One measured line. */
export interface VhostBenchRow {
  /** Back-end. */
  backend: "testpmd" | "qsd";
  /** What was measured. */
  op: "round-trip" | "throughput";
  /** Ring layout. */
  layout: RingLayout;
  /** `engine` (the project's driver queue) or `hand` (hand-laid minimal ring). */
  driver: "engine" | "hand";
  /** DMA mode (with the IOTLB fill for ACCESS_PLATFORM modes), e.g. `iommu-lazy+prefault`. */
  dma: string;
  /** Operations measured. */
  n: number;
  /** Percentiles of one operation, microseconds (round trips). */
  p50Us: number | null;
  /** 90th percentile, us. */
  p90Us: number | null;
  /** 99th percentile, us. */
  p99Us: number | null;
  /** Operations per second (throughput lines; for round trips 1e6 / mean). */
  perSec: number;
  /** IOTLB messages (UPDATE + INVALIDATE + MISS) per chain, ACCESS_PLATFORM lines. */
  iotlbPerChain: number | null;
  /** Transmissions per frame (> 1 when the back-end dropped frames on IOTLB misses). */
  sendsPerOp: number;
  /** Kick eventfd writes by the driver per operation (round trips), else `null`. */
  kicksPerOp: number | null;
  /**
   * Call eventfd writes by the back-end per operation, both vrings (round trips; a lower bound
   * when the driver slept and consumed calls), else `null`.
   */
  callsPerOp: number | null;
  /** Set when the case could not complete (what happened). */
  failure: string | null;
}

const HELP = `deno task bench:vhost-user [options]
  --smoke            a few hundred operations per case (CI)
  --frames N         operations per case (default 20000)
  --rounds R         alternate engine / hand-laid sessions R times (order swapped each round);
                     the table shows the best round, the ratio lines the median of the
                     per-round ratios and min-of-N (default 3)
  --pin CPU          pin this process to CPU with taskset (testpmd polls on lcore 1: use 0)
  --backend NAME     testpmd or qsd (repeatable; default both)
  --identity-only    testpmd: only the identity engine vs hand-laid lines (no IOMMU modes)
  --defer-housekeeping
                     testpmd round trips: reclaim the transmitted buffer and give the receive
                     buffer back after the next frame's transmit is published (default: before
                     the round trip ends), for both drivers; doubles both round trips on testpmd
  --layout L         testpmd: only layout L (split or packed; repeatable; default both)
  --isolate MODE     layout (default): with both layouts, each layout's testpmd part runs in its
                     own Deno process (own isolate, own testpmd), as the main bench runs each
                     family in its own isolate: call sites shared by the engine and hand-laid
                     loops (waitUsed, kick, the hand ring's closures) then see one ring layout,
                     not both; none: both layouts in this process
  --paired           testpmd engine vs hand-laid: both in one session on two queue pairs of
                     the port (engine vrings 0/1, hand-laid 2/3), alternating blocks of 500
                     frames, so load changes land on both sides (no engine throughput line)
  --json FILE        write the rows as JSON
Needs --allow-all (FFI to libc, child processes). Back-ends: apt-get install -y
--no-install-recommends qemu-system-common dpdk-dev librte-net-vhost23.`;

const NET_HDR = 12, FRAME = NET_HDR + 60, RX_SLOTS = 16, TX_SLOTS = 8, BURST = 32;
const SPIN_MS = 5;
/** Used-ring polls per clock reading in the hand-laid wait (as `VhostUserDevice.waitUsed`). */
const POLLS_PER_CLOCK = 64;

function pct(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

/**
 * The latency fields of a round-trip row from per-operation latencies (us): count,
 * percentiles and operations per second (1e6 / mean).
 */
function latencyFields(
  lat: Float64Array,
): Pick<VhostBenchRow, "n" | "p50Us" | "p90Us" | "p99Us" | "perSec"> {
  const s = lat.slice().sort();
  let sum = 0;
  for (const x of s) sum += x;
  return {
    n: s.length,
    p50Us: pct(s, 0.5),
    p90Us: pct(s, 0.9),
    p99Us: pct(s, 0.99),
    perSec: 1e6 / (sum / s.length),
  };
}

// ---- testpmd (virtio-net) ----------------------------------------------------------------

const views = new WeakMap<VhostUserDevice, Map<number, DataView>>();

// Lays a 60-byte frame (dst 02::1, src 02::2, type 0x88b5) after a zero virtio-net header the
// first time a slot is used; afterwards only the sequence number changes (no allocation).
function netFrame(dev: VhostUserDevice, gpa: number, seq: number): void {
  let m = views.get(dev);
  if (!m) views.set(dev, m = new Map());
  let v = m.get(gpa);
  if (!v) {
    v = dev.shared.memory.dataView(gpa, FRAME);
    for (let i = 0; i < NET_HDR; i++) v.setUint8(i, 0);
    const mac = [2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x88, 0xb5];
    for (let i = 0; i < mac.length; i++) v.setUint8(NET_HDR + i, mac[i]);
    m.set(gpa, v);
  }
  v.setUint32(NET_HDR + 14, seq, true);
}

interface NetOpts {
  layout: RingLayout;
  dma: VhostDmaMode;
  fill: "prefault" | "on-demand";
  frames: number;
  /** Housekeeping before the round trip ends (default), else after the next publish. */
  inlineHousekeeping?: boolean;
}

/** A row with nothing measured yet (n 0, no percentiles, no failure). */
function benchRow(
  backend: VhostBenchRow["backend"],
  op: VhostBenchRow["op"],
  layout: RingLayout,
  driver: VhostBenchRow["driver"],
  dma: string,
): VhostBenchRow {
  return {
    backend,
    op,
    layout,
    driver,
    dma,
    n: 0,
    p50Us: null,
    p90Us: null,
    p99Us: null,
    perSec: 0,
    iotlbPerChain: null,
    sendsPerOp: 1,
    kicksPerOp: null,
    callsPerOp: null,
    failure: null,
  };
}

/** The engine: round trips then bursts on one session. */
function netEngine(be: VhostBackend, o: NetOpts): VhostBenchRow[] {
  const dev = VhostUserDevice.open({
    socket: be.socket,
    layout: o.layout,
    queues: 2,
    dma: o.dma,
    iotlb: o.fill,
    iotlbShortInvalidate: true,
    connectRetryMs: 2000,
    backendExited: () => be.exited(),
  });
  const dma = o.dma === "identity" ? "identity" : `${o.dma}+${o.fill}`;
  const rt = benchRow("testpmd", "round-trip", o.layout, "engine", dma);
  const tp = benchRow("testpmd", "throughput", o.layout, "engine", dma);
  try {
    const ns = netSession(dev, o.inlineHousekeeping ?? true);
    for (let i = 0; i < 50; i++) netOnce(ns, i, i % TX_SLOTS, 200, 25); // warm-up
    // DPDK drops a frame whose buffer misses in its IOTLB instead of waiting (VHOST_USER.md):
    // on demand, retransmit after 2 ms, and spin little so misses are served promptly.
    const onDemand = o.fill === "on-demand" && o.dma !== "identity";
    netRoundTrips(ns, o.frames, onDemand, rt);
    netBursts(ns, o.frames, onDemand, tp);
  } catch (e) {
    const m = (e as Error).message;
    if (rt.n === 0) rt.failure = m;
    else tp.failure = m;
  } finally {
    dev.close();
  }
  return [rt, tp];
}

type Vring = VhostUserDevice["vrings"][number];

/** One testpmd session's rings and scatter-gather lists, laid once (no allocation per frame). */
interface NetSession {
  dev: VhostUserDevice;
  rx: Vring;
  tx: Vring;
  txGpa: number;
  none: SgList;
  rxSg: SgList[];
  txSg: SgList[];
  /** Kick eventfd writes so far. */
  kicks: number;
  /** Housekeeping before the round trip ends instead of after the next publish. */
  inline: boolean;
  /** Token of the receive buffer still to give back (deferred housekeeping), or -1. */
  pendingRx: number;
}

/** Lays the receive buffers (2 x RX_SLOTS, all made available) and the transmit lists. */
function netSession(dev: VhostUserDevice, inline: boolean): NetSession {
  const [rx, tx] = dev.vrings;
  const rxGpa = dev.bufferGpa, txGpa = dev.bufferGpa + 0x10_0000;
  const none = SgList.of();
  const rxSg = Array.from(
    { length: RX_SLOTS * 2 },
    (_, i) => SgList.of([rxGpa + i * 4096, 2048]),
  );
  const txSg = Array.from({ length: BURST }, (_, i) => SgList.of([txGpa + i * 4096, FRAME]));
  for (let i = 0; i < RX_SLOTS * 2; i++) rx.queue.add(none, rxSg[i], i);
  // A polling driver: no used buffer notifications while waitUsed spins (it asks for one only
  // before it sleeps), and none on the transmit vring, reclaimed by polling.
  rx.queue.disableCallbacks();
  tx.queue.disableCallbacks();
  dev.kick(0);
  return { dev, rx, tx, txGpa, none, rxSg, txSg, kicks: 0, inline, pendingRx: -1 };
}

/** Reclaims transmitted buffers and gives the pending receive buffer back (and kicks). */
function netHousekeeping(ns: NetSession): void {
  const tx = ns.tx.queue;
  // one getUsed call site (as the hand-laid ring's one poll site), so V8's inlining budget for
  // this function holds getUsed's completion path as well as add and kick
  while (tx.getUsed() !== undefined) { /* reclaim */ }
  const p = ns.pendingRx;
  if (p >= 0) {
    ns.pendingRx = -1;
    ns.rx.queue.add(ns.none, ns.rxSg[p], p);
    if (ns.dev.kick(0)) ns.kicks++;
  }
}

/**
 * One frame through, retransmitting while the port comes up or misses are served. The
 * housekeeping of the previous frame runs after this frame's transmit is published (or, with
 * `ns.inline`, this frame's before returning).
 * @returns the transmissions it took.
 */
function netOnce(
  ns: NetSession,
  seq: number,
  slot: number,
  retxMs: number,
  maxSends: number,
): number {
  const { dev, tx, none } = ns;
  netFrame(dev, ns.txGpa + slot * 4096, seq);
  for (let sends = 1; sends <= maxSends; sends++) {
    tx.queue.add(ns.txSg[slot], none, slot);
    if (dev.kick(1)) ns.kicks++;
    if (!ns.inline) netHousekeeping(ns);
    const r = dev.waitUsed(0, retxMs, retxMs >= SPIN_MS ? SPIN_MS * 1000 : 100);
    if (r.kind === "used") {
      ns.pendingRx = r.token;
      if (ns.inline) netHousekeeping(ns);
      return sends;
    }
    if (ns.inline) netHousekeeping(ns);
    if (r.kind !== "timeout") throw new Error(`frame ${seq}: ${r.kind}`);
  }
  throw new Error(`frame ${seq}: not back after ${maxSends} sends`);
}

/** IOTLB messages (updates, invalidations, misses) since `s0`. */
function iotlbMessages(
  dev: VhostUserDevice,
  s0: { updates: number; invalidates: number; misses: number },
): number {
  const d = dev.iotlb!.stats;
  return d.updates - s0.updates + d.invalidates - s0.invalidates + d.misses - s0.misses;
}

/** Round trips: one frame at a time, latency percentiles into `rt`. */
function netRoundTrips(
  ns: NetSession,
  frames: number,
  onDemand: boolean,
  rt: VhostBenchRow,
): void {
  const dev = ns.dev;
  const s0 = dev.iotlb ? { ...dev.iotlb.stats } : null;
  const lat = new Float64Array(frames);
  let sends = 0;
  const retx = onDemand ? 2 : 1000;
  ns.kicks = 0;
  eventfdRead(ns.rx.callFd);
  eventfdRead(ns.tx.callFd);
  for (let seq = 0; seq < frames; seq++) {
    const t0 = performance.now();
    sends += netOnce(ns, seq, seq % TX_SLOTS, retx, 50);
    lat[seq] = (performance.now() - t0) * 1000;
  }
  netHousekeeping(ns);
  Object.assign(rt, {
    ...latencyFields(lat),
    sendsPerOp: sends / frames,
    kicksPerOp: ns.kicks / frames,
    callsPerOp: Number(eventfdRead(ns.rx.callFd) + eventfdRead(ns.tx.callFd)) / frames,
  });
  if (s0 && dev.iotlb) rt.iotlbPerChain = iotlbMessages(dev, s0) / (2 * frames);
}

/** Throughput: bursts of 32 frames in flight, frames per second into `tp`. */
function netBursts(ns: NetSession, frames: number, onDemand: boolean, tp: VhostBenchRow): void {
  const { dev, rx, tx, none, txSg, rxSg } = ns;
  const s1 = dev.iotlb ? { ...dev.iotlb.stats } : null;
  const bursts = Math.max(1, Math.floor(frames / BURST));
  let done = 0, bsends = 0;
  const t0 = performance.now();
  for (let b = 0; b < bursts; b++) {
    for (let i = 0; i < BURST; i++) {
      netFrame(dev, ns.txGpa + i * 4096, b * BURST + i);
      tx.queue.add(txSg[i], none, i);
    }
    dev.kick(1);
    bsends += BURST;
    let got = 0;
    while (got < BURST) {
      const r = dev.waitUsed(0, onDemand ? 20 : 1000, onDemand ? 100 : SPIN_MS * 1000);
      if (r.kind !== "used") break; // dropped frames (misses): count what came back
      rx.queue.add(none, rxSg[r.token], r.token);
      got++;
    }
    dev.kick(0);
    for (let t = tx.queue.getUsed(); t !== undefined; t = tx.queue.getUsed()) { /* reclaim */ }
    done += got;
  }
  const secs = (performance.now() - t0) / 1000;
  Object.assign(tp, { n: done, perSec: done / secs, sendsPerOp: bsends / Math.max(1, done) });
  if (s1 && dev.iotlb) tp.iotlbPerChain = iotlbMessages(dev, s1) / Math.max(1, 2 * done);
}

/** A hand-laid ring over vring `i`'s areas (as the engine laid them out, not started). */
function handRing(dev: VhostUserDevice, layout: RingLayout, i: number): HandRing {
  const mem = dev.shared.memory;
  const a = dev.vrings[i].queue.addresses, size = dev.vrings[i].queue.size;
  return layout === "split"
    ? new HandSplitRing(
      mem,
      Number(a.descAddr),
      Number(a.driverAddr),
      Number(a.deviceAddr),
      size,
    )
    : new HandPackedRing(
      mem,
      Number(a.descAddr),
      Number(a.driverAddr),
      Number(a.deviceAddr),
      size,
    );
}

/** The hand-laid polling net driver: one frame through, and the kicks it wrote. */
interface HandNetDriver {
  /**
   * Sends frame `seq` from TX slot `slot` until it comes back on RX (at most `maxSends`
   * transmissions). @returns the transmissions it took.
   */
  once(seq: number, slot: number, maxSends: number): number;
  /** Kick eventfd writes since the last {@link resetKicks}. */
  kicks(): number;
  /** Zeroes the kick count. */
  resetKicks(): void;
}

/**
 * Lays the receive buffers (as many as the engine's session makes available, 2 x RX_SLOTS) and
 * the transmit segments once, turns used buffer notifications off on both vrings (a polling
 * driver, as the engine's session), and returns the per-frame step. Call after DRIVER_OK.
 * Housekeeping as the engine's session (`inline`: before a round trip ends, else after the
 * next publish).
 */
function handNetDriver(
  dev: VhostUserDevice,
  rx: HandRing,
  tx: HandRing,
  inline: boolean,
  rxIdx = 0,
  bufGpa = dev.bufferGpa,
): HandNetDriver {
  const txIdx = rxIdx + 1;
  const rxGpa = bufGpa, txGpa = bufGpa + 0x10_0000;
  const rxv = dev.vrings[rxIdx];
  let kicks = 0;
  const fe = dev.frontend;
  const rxSeg = Array.from(
    { length: RX_SLOTS * 2 },
    (_, i) => [[rxGpa + i * 4096, 2048, DESC_F_WRITE]] as const,
  );
  const txSeg = Array.from(
    { length: TX_SLOTS },
    (_, i) => [[txGpa + i * 4096, FRAME, 0]] as const,
  );
  for (let i = 0; i < RX_SLOTS * 2; i++) rx.post(i, rxSeg[i]);
  // No used buffer notifications while it spins, on either vring, so the back-end writes no
  // call eventfd per frame.
  rx.callbacks(false);
  tx.callbacks(false);
  if (rx.needKick()) dev.notify(rxIdx);
  // as waitUsed: polls first, then the clock once per POLLS_PER_CLOCK empty polls
  const wait = (deadlineMs: number): number => {
    for (let i = 0; i < POLLS_PER_CLOCK; i++) {
      const id = rx.poll();
      if (id >= 0) return id;
    }
    const t0 = performance.now();
    for (;;) {
      for (let i = 0; i < POLLS_PER_CLOCK; i++) {
        const id = rx.poll();
        if (id >= 0) return id;
      }
      const now = performance.now();
      if (now - t0 < SPIN_MS) continue;
      if (now - t0 > deadlineMs) return -1;
      // as waitUsed: ask for a call, look again, sleep, stop asking
      rx.callbacks(true);
      const late = rx.poll();
      if (late >= 0) {
        rx.callbacks(false);
        return late;
      }
      if (fe.waitCall(rxv.callFd, 20) === "call") eventfdRead(rxv.callFd);
      rx.callbacks(false);
    }
  };
  let pendingRx = -1;
  const housekeeping = () => {
    while (tx.poll() >= 0) { /* reclaim */ }
    if (pendingRx >= 0) {
      rx.post(pendingRx, rxSeg[pendingRx]);
      pendingRx = -1;
      if (rx.needKick()) {
        dev.notify(rxIdx);
        kicks++;
      }
    }
  };
  const once = (seq: number, slot: number, maxSends: number): number => {
    netFrame(dev, txGpa + slot * 4096, seq);
    for (let sends = 1; sends <= maxSends; sends++) {
      tx.post(slot, txSeg[slot]);
      if (tx.needKick()) {
        dev.notify(txIdx);
        kicks++;
      }
      if (!inline) housekeeping();
      const id = wait(sends < maxSends ? 200 : 1000);
      if (id >= 0) {
        pendingRx = id;
        if (inline) housekeeping();
        return sends;
      }
      if (inline) housekeeping();
    }
    throw new Error(`frame ${seq}: not back after ${maxSends} sends`);
  };
  return {
    once,
    kicks: () => kicks,
    resetKicks: () => {
      kicks = 0;
    },
  };
}

/** The hand-laid ring on the same back-end: round trips only, identity DMA. */
function netHand(
  be: VhostBackend,
  layout: RingLayout,
  frames: number,
  inlineHousekeeping = true,
): VhostBenchRow {
  const dev = VhostUserDevice.open({
    socket: be.socket,
    layout,
    queues: 2,
    start: false,
    connectRetryMs: 2000,
    backendExited: () => be.exited(),
  });
  const row = benchRow("testpmd", "round-trip", layout, "hand", "identity");
  try {
    const rx = handRing(dev, layout, 0), tx = handRing(dev, layout, 1);
    for (const v of dev.vrings) dev.startQueue(v.index);
    dev.driverOk();
    const rxv = dev.vrings[0], txv = dev.vrings[1];
    const driver = handNetDriver(dev, rx, tx, inlineHousekeeping);
    const once = driver.once;
    for (let i = 0; i < 50; i++) once(i, i % TX_SLOTS, 25);
    driver.resetKicks();
    eventfdRead(rxv.callFd);
    eventfdRead(txv.callFd);
    const lat = new Float64Array(frames);
    for (let seq = 0; seq < frames; seq++) {
      const t0 = performance.now();
      once(seq, seq % TX_SLOTS, 1);
      lat[seq] = (performance.now() - t0) * 1000;
    }
    Object.assign(row, {
      ...latencyFields(lat),
      kicksPerOp: driver.kicks() / frames,
      callsPerOp: Number(eventfdRead(rxv.callFd) + eventfdRead(txv.callFd)) / frames,
    });
  } catch (e) {
    row.failure = (e as Error).message;
  } finally {
    dev.close();
  }
  return row;
}

/** Frames per block of the `--paired` session (engine and hand-laid blocks alternate). */
const PAIRED_BLOCK = 500;

/**
 * `--paired`: the engine and the hand-laid ring in ONE session, on two queue pairs of the same
 * testpmd port (protocol MQ; testpmd started with 2 queue pairs, one forwarding lcore polling
 * both): the engine on vrings 0/1 (the exact `netOnce` path of {@link netEngine}), the
 * hand-laid ring on vrings 2/3 (the exact `once` of {@link netHand}), each with its own buffers.
 * They alternate in blocks of {@link PAIRED_BLOCK} frames (which goes first swaps every block),
 * so a load change on the shared machine lands on both sides instead of on one session. The
 * idle pair costs testpmd one empty poll per loop on either side alike.
 * @returns the engine and hand-laid round-trip rows.
 */
function netPaired(
  be: VhostBackend,
  layout: RingLayout,
  frames: number,
  inline: boolean,
): [VhostBenchRow, VhostBenchRow] {
  const dev = VhostUserDevice.open({
    socket: be.socket,
    layout,
    queues: 4,
    start: false,
    memorySize: 8 << 20,
    connectRetryMs: 2000,
    backendExited: () => be.exited(),
  });
  const er = benchRow("testpmd", "round-trip", layout, "engine", "identity");
  const hr = benchRow("testpmd", "round-trip", layout, "hand", "identity");
  try {
    const hrx = handRing(dev, layout, 2), htx = handRing(dev, layout, 3);
    for (const v of dev.vrings) dev.startQueue(v.index);
    dev.driverOk();
    const ns = netSession(dev, inline);
    const hand = handNetDriver(dev, hrx, htx, inline, 2, dev.bufferGpa + 0x20_0000);
    for (let i = 0; i < 50; i++) {
      netOnce(ns, i, i % TX_SLOTS, 200, 25);
      hand.once(i, i % TX_SLOTS, 25);
    }
    ns.kicks = 0;
    hand.resetKicks();
    for (const v of dev.vrings) eventfdRead(v.callFd);
    const le = new Float64Array(frames), lh = new Float64Array(frames);
    let ie = 0, ih = 0, sends = 0;
    const engineBlock = () => {
      for (const end = Math.min(frames, ie + PAIRED_BLOCK); ie < end; ie++) {
        const t0 = performance.now();
        sends += netOnce(ns, ie, ie % TX_SLOTS, 1000, 50);
        le[ie] = (performance.now() - t0) * 1000;
      }
    };
    const handBlock = () => {
      for (const end = Math.min(frames, ih + PAIRED_BLOCK); ih < end; ih++) {
        const t0 = performance.now();
        hand.once(ih, ih % TX_SLOTS, 1);
        lh[ih] = (performance.now() - t0) * 1000;
      }
    };
    for (let b = 0; ie < frames || ih < frames; b++) {
      if (b % 2 === 0) {
        engineBlock();
        handBlock();
      } else {
        handBlock();
        engineBlock();
      }
    }
    netHousekeeping(ns);
    const calls = (i: number) => Number(eventfdRead(dev.vrings[i].callFd));
    Object.assign(er, {
      ...latencyFields(le),
      sendsPerOp: sends / frames,
      kicksPerOp: ns.kicks / frames,
      callsPerOp: (calls(0) + calls(1)) / frames,
    });
    Object.assign(hr, {
      ...latencyFields(lh),
      kicksPerOp: hand.kicks() / frames,
      callsPerOp: (calls(2) + calls(3)) / frames,
    });
  } catch (e) {
    const m = (e as Error).message;
    if (er.n === 0) er.failure = m;
    if (hr.n === 0) hr.failure = m;
  } finally {
    dev.close();
  }
  return [er, hr];
}

// ---- qemu-storage-daemon (virtio-blk) --------------------------------------------------------

const BLK_SECTOR = 512;

function blkHeader(dev: VhostUserDevice, gpa: number, sector: number): void {
  const v = dev.shared.memory.dataView(gpa, 17);
  v.setUint32(0, 0, true); // VIRTIO_BLK_T_IN
  v.setUint32(4, 0, true);
  v.setBigUint64(8, BigInt(sector), true);
  v.setUint8(16, 0xff);
}

function blkRow(driver: "engine" | "hand", op: "round-trip" | "throughput"): VhostBenchRow {
  return benchRow("qsd", op, "split", driver, "identity");
}

function blkEngine(be: VhostBackend, n: number): VhostBenchRow[] {
  const dev = VhostUserDevice.open({
    socket: be.socket,
    layout: "split",
    queueSize: 128,
    connectRetryMs: 2000,
    backendExited: () => be.exited(),
  });
  const rt = blkRow("engine", "round-trip"), tp = blkRow("engine", "throughput");
  try {
    const q = dev.vrings[0].queue;
    q.disableCallbacks(); // polling, as the hand-laid ring: waitUsed asks for calls to sleep
    const slot = (i: number) => dev.bufferGpa + i * 4096;
    const rd = Array.from({ length: 8 }, (_, i) => SgList.of([slot(i), 16]));
    const wr = Array.from(
      { length: 8 },
      (_, i) => SgList.of([slot(i) + 512, BLK_SECTOR], [slot(i) + 16, 1]),
    );
    const submit = (i: number, sector: number) => {
      blkHeader(dev, slot(i), sector);
      q.add(rd[i], wr[i], i);
    };
    const lat = new Float64Array(n);
    for (let k = -50; k < n; k++) {
      const t0 = performance.now();
      submit(0, (k + 50) % 2048);
      dev.kick(0);
      const r = dev.waitUsed(0, 3000, SPIN_MS * 1000);
      if (r.kind !== "used") throw new Error(`read ${k}: ${r.kind}`);
      if (k >= 0) lat[k] = (performance.now() - t0) * 1000;
    }
    Object.assign(rt, latencyFields(lat));
    let sent = 0, done = 0;
    const t0 = performance.now();
    for (let i = 0; i < 8; i++) submit(i, sent++ % 2048);
    dev.kick(0);
    while (done < n) {
      const r = dev.waitUsed(0, 3000, SPIN_MS * 1000);
      if (r.kind !== "used") throw new Error(`depth 8 read: ${r.kind}`);
      done++;
      if (sent < n) {
        submit(r.token, sent++ % 2048);
        dev.kick(0);
      }
    }
    Object.assign(tp, { n, perSec: n / ((performance.now() - t0) / 1000) });
  } catch (e) {
    (rt.n ? tp : rt).failure = (e as Error).message;
  } finally {
    dev.close();
  }
  return [rt, tp];
}

function blkHand(be: VhostBackend, n: number): VhostBenchRow {
  const dev = VhostUserDevice.open({
    socket: be.socket,
    layout: "split",
    queueSize: 128,
    start: false,
    connectRetryMs: 2000,
    backendExited: () => be.exited(),
  });
  const row = blkRow("hand", "round-trip");
  try {
    const v = dev.vrings[0];
    const a = v.queue.addresses;
    const ring = new HandSplitRing(
      dev.shared.memory,
      Number(a.descAddr),
      Number(a.driverAddr),
      Number(a.deviceAddr),
      v.queue.size,
    );
    dev.startQueue(0);
    dev.driverOk();
    ring.callbacks(false);
    const g = dev.bufferGpa;
    const segs = [[g, 16, 0], [g + 512, BLK_SECTOR, DESC_F_WRITE], [
      g + 16,
      1,
      DESC_F_WRITE,
    ]] as const;
    const lat = new Float64Array(n);
    for (let k = -50; k < n; k++) {
      const t0 = performance.now();
      blkHeader(dev, g, (k + 50) % 2048);
      ring.post(0, segs);
      if (ring.needKick()) dev.notify(0);
      let id = ring.poll();
      while (id < 0) {
        if (performance.now() - t0 > SPIN_MS) {
          if (performance.now() - t0 > 3000) throw new Error(`read ${k}: timeout`);
          ring.callbacks(true);
          if ((id = ring.poll()) >= 0) {
            ring.callbacks(false);
            break;
          }
          if (dev.frontend.waitCall(v.callFd, 20) === "call") eventfdRead(v.callFd);
          ring.callbacks(false);
        }
        id = ring.poll();
      }
      if (k >= 0) lat[k] = (performance.now() - t0) * 1000;
    }
    Object.assign(row, latencyFields(lat));
  } catch (e) {
    row.failure = (e as Error).message;
  } finally {
    dev.close();
  }
  return row;
}

// ---- runner ---------------------------------------------------------------------------------

/** One round of the engine-vs-hand-laid comparison: both p50 round trips of one layout, in µs. */
export interface RatioRound {
  /** Ring layout. */
  layout: RingLayout;
  /** Engine identity round trip p50 (µs). */
  engineUs: number;
  /** Hand-laid ring round trip p50 (µs). */
  handUs: number;
}

/** The engine's cost against the hand-laid ring over the rounds of one layout. */
export interface EngineHandRatio {
  /** Ring layout. */
  layout: RingLayout;
  /** engine p50 / hand p50 of each round (same round, back to back). */
  perRound: number[];
  /** Median of {@link perRound}: the headline figure (robust to a round disturbed by load). */
  medianOfRounds: number;
  /** min over rounds of engine p50 / min over rounds of hand p50 (min-of-N). */
  minOfN: number;
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const k = s.length >> 1;
  return s.length === 0 ? NaN : s.length % 2 ? s[k] : (s[k - 1] + s[k]) / 2;
}

/**
 * Engine / hand-laid ratios per layout from interleaved rounds (rounds with a missing side are
 * skipped). @returns one entry per layout that has at least one complete round.
 */
export function engineHandRatios(rounds: readonly RatioRound[]): EngineHandRatio[] {
  const out: EngineHandRatio[] = [];
  for (const layout of ["split", "packed"] as const) {
    const rs = rounds.filter((r) =>
      r.layout === layout && r.engineUs > 0 && r.handUs > 0 && isFinite(r.engineUs + r.handUs)
    );
    if (rs.length === 0) continue;
    out.push({
      layout,
      perRound: rs.map((r) => r.engineUs / r.handUs),
      medianOfRounds: median(rs.map((r) => r.engineUs / r.handUs)),
      minOfN: Math.min(...rs.map((r) => r.engineUs)) / Math.min(...rs.map((r) => r.handUs)),
    });
  }
  return out;
}

/** The ratio lines printed under the table. */
export function formatRatios(ratios: readonly EngineHandRatio[]): string {
  return ratios.map((r) =>
    `engine/hand-laid round trip, testpmd ${r.layout}: median of ${r.perRound.length} rounds ${
      r.medianOfRounds.toFixed(3)
    }x, min-of-N ${r.minOfN.toFixed(3)}x (rounds: ${r.perRound.map((x) => x.toFixed(2)).join(" ")})`
  ).join("\n");
}

/** Pins every thread of this process to `cpu` with taskset (util-linux); a warning when it cannot. */
function pinSelf(cpu: string): void {
  try {
    const r = new Deno.Command("taskset", {
      args: ["-a", "-p", "-c", cpu, String(Deno.pid)],
      stdout: "null",
      stderr: "piped",
    }).outputSync();
    if (!r.success) {
      console.error(`bench vhost-user: taskset: ${new TextDecoder().decode(r.stderr).trim()}`);
    }
  } catch (e) {
    console.error(`bench vhost-user: --pin ${cpu}: taskset not run: ${(e as Error).message}`);
  }
}

function best(rows: VhostBenchRow[]): VhostBenchRow[] {
  const byKey = new Map<string, VhostBenchRow>();
  for (const r of rows) {
    const k = `${r.backend}|${r.op}|${r.layout}|${r.driver}|${r.dma}`;
    const old = byKey.get(k);
    const better = (a: VhostBenchRow, b: VhostBenchRow) =>
      a.failure === null &&
      (b.failure !== null || a.op === "throughput"
        ? a.perSec > b.perSec
        : (a.p50Us ?? Infinity) < (b.p50Us ?? Infinity));
    if (!old || better(r, old)) byKey.set(k, r);
  }
  return [...byKey.values()];
}

function fmt(x: number | null, d = 2): string {
  return x === null ? "-" : x.toFixed(d);
}

/** The table: one line per case, engine/hand ratio on engine identity round trips. */
export function formatVhostRows(rows: readonly VhostBenchRow[]): string {
  const hand = new Map<string, number>();
  for (const r of rows) {
    if (r.driver === "hand" && r.p50Us !== null) hand.set(`${r.backend}|${r.layout}`, r.p50Us);
  }
  const lines = [
    "backend  op          layout  driver  dma                           n       p50us    p90us    p99us    ops/s      vs-hand  iotlb/chain  sends/op  kicks/op  calls/op",
  ];
  for (const r of rows) {
    const h = hand.get(`${r.backend}|${r.layout}`);
    const ratio = r.op === "round-trip" && r.p50Us !== null && h
      ? (r.p50Us / h).toFixed(2) + "x"
      : "-";
    lines.push(
      [
        r.backend.padEnd(8),
        r.op.padEnd(11),
        r.layout.padEnd(7),
        r.driver.padEnd(7),
        r.dma.padEnd(29),
        String(r.n).padEnd(7),
        fmt(r.p50Us).padStart(8),
        fmt(r.p90Us).padStart(8),
        fmt(r.p99Us).padStart(8),
        r.perSec.toFixed(0).padStart(10),
        ratio.padStart(8),
        fmt(r.iotlbPerChain).padStart(12),
        r.sendsPerOp.toFixed(2).padStart(9),
        fmt(r.kicksPerOp).padStart(9),
        fmt(r.callsPerOp).padStart(9),
      ].join(" ") + (r.failure ? `  FAILED: ${r.failure}` : ""),
    );
  }
  return lines.join("\n");
}

/** The checked flags of `deno task bench:vhost-user`. */
interface SuiteArgs {
  /** Frames (or requests) per measurement. */
  frames: number;
  /** Interleaved engine-vs-hand rounds. */
  rounds: number;
  /** Back-ends to run, in order. */
  backends: ("testpmd" | "qsd")[];
  /** `--identity-only`: skip the ACCESS_PLATFORM DMA modes on testpmd. */
  identityOnly: boolean;
  /** Testpmd housekeeping before a round trip ends (unless `--defer-housekeeping`). */
  inlineHousekeeping: boolean;
  /** `--paired`: engine and hand-laid ring in one session on two queue pairs. */
  paired: boolean;
  /** `--layout`: the testpmd layouts to run, in order. */
  layouts: RingLayout[];
  /** `--isolate`: `layout` runs each layout's testpmd part in its own process. */
  isolate: "layout" | "none";
  /** `--json` report path. */
  json: string | undefined;
  /** `--pin` CPU list. */
  pin: string | undefined;
}

const SUITE_VALUE_FLAGS = ["frames", "rounds", "json", "backend", "suite", "layout", "isolate"];

/**
 * Parses and checks the command line. @returns the options, or the exit code when the run
 * ends here (0 after `--help`, 2 after printing one line on bad arguments or missing
 * permissions).
 */
function parseSuiteArgs(argv: readonly string[]): SuiteArgs | number {
  let bad: string | null = null;
  const values = SUITE_VALUE_FLAGS;
  // "--frames -5": a negative number after a value flag is its value (then range-checked).
  const joined = argv.flatMap((x, i, all) =>
    /^-[\d.]/.test(x) && values.includes(all[i - 1]?.replace(/^--/, "")) ? [] : [
      values.includes(x.replace(/^--/, "")) && /^-[\d.]/.test(all[i + 1] ?? "")
        ? `${x}=${all[i + 1]}`
        : x,
    ]
  );
  const a = parseArgs(joined, {
    boolean: ["help", "smoke", "identity-only", "defer-housekeeping", "paired"],
    string: ["frames", "rounds", "json", "backend", "suite", "pin", "layout", "isolate"],
    collect: ["backend", "suite", "layout"],
    unknown: (f: string) => {
      bad ??= f;
      return true;
    },
  });
  if (a.help) {
    console.log(HELP);
    return 0;
  }
  if (bad !== null) {
    console.error(`bench vhost-user: unknown argument ${bad}. Fix: see --help`);
    return 2;
  }
  if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") {
    console.error(
      "bench vhost-user: needs --allow-all (FFI, child processes): deno task bench:vhost-user",
    );
    return 2;
  }
  const frames = Number(a.frames ?? (a.smoke ? 300 : 20000));
  const rounds = Number(a.rounds ?? (a.smoke ? 1 : 3));
  if (!Number.isInteger(frames) || frames < 10) {
    console.error(`bench vhost-user: --frames ${a.frames}: an integer >= 10`);
    return 2;
  }
  if (!Number.isInteger(rounds) || rounds < 1) {
    console.error(`bench vhost-user: --rounds ${a.rounds}: an integer >= 1`);
    return 2;
  }
  const backends = (a.backend as string[]).length ? (a.backend as string[]) : ["testpmd", "qsd"];
  for (const b of backends) {
    if (b !== "testpmd" && b !== "qsd") {
      console.error(`bench vhost-user: --backend ${b}: use testpmd or qsd`);
      return 2;
    }
  }
  const layouts = (a.layout as string[]).length ? (a.layout as string[]) : ["split", "packed"];
  for (const l of layouts) {
    if (l !== "split" && l !== "packed") {
      console.error(`bench vhost-user: --layout ${l}: use split or packed`);
      return 2;
    }
  }
  const isolate = a.isolate ?? "layout";
  if (isolate !== "layout" && isolate !== "none") {
    console.error(`bench vhost-user: --isolate ${isolate}: use layout or none`);
    return 2;
  }
  return {
    frames,
    rounds,
    backends: backends as ("testpmd" | "qsd")[],
    layouts: [...new Set(layouts)] as RingLayout[],
    isolate,
    identityOnly: a["identity-only"],
    inlineHousekeeping: !a["defer-housekeeping"],
    paired: a.paired,
    json: a.json,
    pin: a.pin === undefined ? undefined : String(a.pin),
  };
}

/** The ACCESS_PLATFORM DMA modes measured on testpmd, engine only. */
const IOMMU_MODES: readonly [VhostDmaMode, "prefault" | "on-demand"][] = [
  ["iommu-strict", "prefault"],
  ["iommu-lazy", "prefault"],
  ["iommu-strict", "on-demand"],
  ["iommu-lazy", "on-demand"],
  ["iommu-passthrough", "on-demand"],
];

const progress = (s: string) => console.error(s);

/**
 * Engine vs hand-laid identity round trips on testpmd, each layout per round, back to back on
 * one back-end with the order swapped every round so drift cancels. Pushes the rows and the
 * per-round p50 pairs.
 */
function engineVsHandRounds(
  be: VhostBackend,
  frames: number,
  rounds: number,
  rows: VhostBenchRow[],
  ratioRounds: RatioRound[],
  inlineHousekeeping: boolean,
  paired = false,
  layouts: readonly RingLayout[] = ["split", "packed"],
): void {
  for (let r = 0; r < rounds; r++) {
    for (const layout of layouts) {
      progress(`testpmd ${layout} round ${r + 1}/${rounds}: engine vs hand-laid`);
      if (paired) {
        const [pe, ph] = netPaired(be, layout, frames, inlineHousekeeping);
        rows.push(pe, ph);
        if (pe.p50Us !== null && ph.p50Us !== null) {
          ratioRounds.push({ layout, engineUs: pe.p50Us, handUs: ph.p50Us });
        }
        continue;
      }
      const eng = () =>
        netEngine(be, { layout, dma: "identity", fill: "prefault", frames, inlineHousekeeping });
      let e: VhostBenchRow[], h: VhostBenchRow;
      if (r % 2 === 0) {
        e = eng();
        h = netHand(be, layout, frames, inlineHousekeeping);
      } else {
        h = netHand(be, layout, frames, inlineHousekeeping);
        e = eng();
      }
      rows.push(...e, h);
      if (e[0].p50Us !== null && h.p50Us !== null) {
        ratioRounds.push({ layout, engineUs: e[0].p50Us, handUs: h.p50Us });
      }
    }
  }
}

/** The testpmd part: engine vs hand rounds, then (unless identity only) the IOMMU modes. */
async function benchTestpmd(
  dir: string,
  o: SuiteArgs,
  rows: VhostBenchRow[],
  ratioRounds: RatioRound[],
): Promise<void> {
  if (o.isolate === "layout" && o.layouts.length > 1) {
    for (const layout of o.layouts) await testpmdInChild(dir, o, layout, rows, ratioRounds);
    return;
  }
  const be = await startTestpmd({ dir, iommu: true, queues: o.paired ? 2 : 1 });
  try {
    engineVsHandRounds(
      be,
      o.frames,
      o.rounds,
      rows,
      ratioRounds,
      o.inlineHousekeeping,
      o.paired,
      o.layouts,
    );
    for (const layout of o.identityOnly ? [] : o.layouts) {
      for (const [dma, fill] of IOMMU_MODES) {
        progress(`testpmd ${layout} ${dma}+${fill}`);
        rows.push(
          ...netEngine(be, {
            layout,
            dma,
            fill,
            frames: Math.min(o.frames, 5000),
            inlineHousekeeping: o.inlineHousekeeping,
          }),
        );
      }
    }
  } finally {
    await be.stop();
  }
}

/**
 * `--isolate layout`: the testpmd part of one layout in a child Deno process (its own isolate
 * and its own testpmd), with the same options; its rows and per-round pairs come back through
 * its `--json` report.
 */
async function testpmdInChild(
  dir: string,
  o: SuiteArgs,
  layout: RingLayout,
  rows: VhostBenchRow[],
  ratioRounds: RatioRound[],
): Promise<void> {
  Deno.mkdirSync(dir, { recursive: true });
  const json = `${dir}/testpmd-${layout}.json`;
  const args = [
    "run",
    "--allow-all",
    new URL(import.meta.url).pathname,
    "--backend=testpmd",
    `--layout=${layout}`,
    "--isolate=none",
    `--rounds=${o.rounds}`,
    `--frames=${o.frames}`,
    `--json=${json}`,
    ...(o.identityOnly ? ["--identity-only"] : []),
    ...(o.paired ? ["--paired"] : []),
    ...(o.inlineHousekeeping ? [] : ["--defer-housekeeping"]),
    ...(o.pin !== undefined ? [`--pin=${o.pin}`] : []),
  ];
  const r = await new Deno.Command(Deno.execPath(), { args, stdout: "null", stderr: "inherit" })
    .output();
  try {
    const rep = JSON.parse(Deno.readTextFileSync(json));
    rows.push(...(rep.rows as VhostBenchRow[]));
    ratioRounds.push(...(rep.ratioRounds as RatioRound[]));
  } catch (e) {
    const row = benchRow("testpmd", "round-trip", layout, "engine", "identity");
    row.failure = `--isolate layout: the ${layout} process exited ${r.code}, no report (${
      (e as Error).message
    })`;
    rows.push(row);
  }
}

/** The qemu-storage-daemon part: engine and hand-laid blk reads, each round, on a 1 MiB disk. */
async function benchQsd(dir: string, o: SuiteArgs, rows: VhostBenchRow[]): Promise<void> {
  Deno.mkdirSync(dir, { recursive: true });
  const disk = `${dir}/disk.raw`;
  Deno.writeFileSync(disk, new Uint8Array(1 << 20));
  const be = await startQsd({ dir, disk });
  try {
    for (let r = 0; r < o.rounds; r++) {
      progress(`qsd round ${r + 1}/${o.rounds}: engine vs hand-laid`);
      rows.push(...blkEngine(be, Math.min(o.frames, 10000)));
      rows.push(blkHand(be, Math.min(o.frames, 10000)));
    }
  } finally {
    await be.stop();
  }
}

/** Prints the best rows and the engine/hand ratios; writes the `--json` report when asked. */
function reportSuite(rows: VhostBenchRow[], ratioRounds: RatioRound[], o: SuiteArgs): void {
  const out = best(rows);
  console.log(formatVhostRows(out));
  const ratios = engineHandRatios(ratioRounds);
  if (ratios.length > 0) console.log(formatRatios(ratios));
  if (o.json) {
    Deno.writeTextFileSync(
      o.json,
      JSON.stringify(
        { suite: "vhost-user", frames: o.frames, rounds: o.rounds, rows: out, ratios, ratioRounds },
        null,
        2,
      ),
    );
    console.log(`wrote ${o.json}`);
  }
}

/**
 * Runs the suite with CLI arguments; returns the exit code (2 on bad arguments or missing
 * permissions, 1 when a back-end could not start).
 */
export async function runVhostUserSuite(argv: readonly string[]): Promise<number> {
  const o = parseSuiteArgs(argv);
  if (typeof o === "number") return o;
  const dir = `/tmp/virtq-bench-vhost-${Deno.pid}`;
  const rows: VhostBenchRow[] = [];
  const ratioRounds: RatioRound[] = [];
  if (o.pin !== undefined) pinSelf(o.pin);
  let code = 0;
  for (const b of o.backends) {
    const why = backendUnavailable(b);
    if (why) {
      console.log(`${b}: skipped: ${why}`);
      if (Deno.env.get("CI") === "true") code = 1;
      continue;
    }
    if (b === "testpmd") await benchTestpmd(dir, o, rows, ratioRounds);
    else await benchQsd(dir, o, rows);
  }
  reportSuite(rows, ratioRounds, o);
  try {
    Deno.removeSync(dir, { recursive: true });
  } catch { /* gone */ }
  return code;
}

if (import.meta.main) Deno.exit(await runVhostUserSuite(Deno.args));
