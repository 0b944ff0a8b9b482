/**
 * The queue model behind the fuzz targets `model-split` and `model-packed` (each registered in
 * its own file in `fuzz/targets/`): stateful model-based test of a well-behaved
 * queue pair of either layout with `fc.commands`, interleaving add / kick / pop / push / flush /
 * get-used / reset. The packed variant also runs Queue Sizes that are not powers of 2.
 *
 * Both peers sleep until notified (oracle `lost-notification`, spec §2.7.7 / §2.7.10 split,
 * §2.8.10 packed): the device sleeps after `setNotifications(true)` finds nothing available (or,
 * with notifications still on, after `pop` found nothing), and only a `kick` that returns true
 * wakes it; the driver sleeps after `enableCallbacks()` finds nothing used, and only a `flush`
 * that returns true wakes it. A kick that publishes buffers to the sleeping device, or a flush
 * that publishes used buffers to the sleeping driver, without asking for the notification is a
 * lost notification (the peer would sleep forever); so is work found pending when a sleeping
 * peer is finally probed at the end of the sequence. On waking, each peer may turn its
 * notifications off (drawn), as vhost and Linux NAPI do.
 *
 * Model: the set of outstanding tokens with the bytes each carries and its writable capacity,
 * and the device's popped-but-not-pushed chains. Oracle: every token comes back exactly once
 * (from `getUsed`, or from `detachUnused` after a reset) and, from `getUsed`, with `usedLen`
 * and the bytes the loopback device wrote; no error is ever thrown (the pair is well behaved),
 * except `RING_FULL` when the model says the ring is full.
 *
 * @module
 */

import fc from "fast-check";
import {
  type Chain,
  createQueuePair,
  featureMask,
  isVirtqError,
  type PackedDriverQueue,
  type QueuePair,
  type RingLayout,
  SgList,
  type SplitDriverQueue,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_IN_ORDER,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_VERSION_1,
} from "../../src/mod.ts";
import { type FuzzTarget, OracleFailure } from "../target.ts";

const SLOT = 0x1000; // bytes of data space per token slot (readable half, writable half)

interface Outstanding {
  bytes: Uint8Array; // what the device will copy back (readable bytes, clipped to capacity)
  cap: number;
}

/** The model. */
export interface SplitModel {
  outstanding: Map<number, Outstanding>;
  returned: Set<number>;
  next: number;
  size: number;
}

/** The real system. */
export interface SplitReal {
  pair: QueuePair<number>;
  popped: Chain[];
  pushedSinceFlush: number;
  /** Buffers added since the last kick. */
  addedSinceKick: number;
  /** The device sleeps until a kick returns true. */
  deviceAsleep: boolean;
  /** The device asked for available buffer notifications (its last `setNotifications`). */
  deviceNotify: boolean;
  /** The driver sleeps until a flush returns true. */
  driverAsleep: boolean;
  /** On waking, the device turns available buffer notifications off. */
  deviceWakeDisables: boolean;
  /** On waking, the driver turns used buffer notifications off. */
  driverWakeDisables: boolean;
  /** VIRTIO_F_INDIRECT_DESC negotiated: without it no chain may use an indirect table. */
  indirect: boolean;
}

function wakeDevice(r: SplitReal): void {
  r.deviceAsleep = false;
  if (r.deviceWakeDisables) {
    r.pair.device.setNotifications(false);
    r.deviceNotify = false;
  }
}

function wakeDriver(r: SplitReal): void {
  r.driverAsleep = false;
  if (r.driverWakeDisables) r.pair.driver.disableCallbacks();
}

function fail(oracle: string, msg: string): never {
  throw new OracleFailure(oracle, msg);
}

function slotGpa(r: SplitReal, token: number): number {
  return r.pair.dataGpa + (token % 64) * SLOT;
}

class AddCmd implements fc.Command<SplitModel, SplitReal> {
  constructor(readonly nr: number, readonly nw: number, readonly len: number) {}
  check(): boolean {
    return true;
  }
  run(m: SplitModel, r: SplitReal): void {
    if (this.nr + this.nw === 0) return;
    // At most 64 outstanding tokens (data slots), beyond that skip.
    if (m.outstanding.size >= 64) return;
    const t = m.next;
    const base = slotGpa(r, t);
    // Lists of varied initial capacity (0, 1, 2 or SgList.of()) so that pushes grow them.
    const rd = new SgList(t % 3), wr = t % 2 === 0 ? SgList.of() : new SgList(1);
    const bytes = new Uint8Array(this.nr * this.len);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (t * 13 + i * 7 + 1) & 0xff;
    r.pair.memory.write(base, bytes);
    for (let i = 0; i < this.nr; i++) rd.push(base + i * this.len, this.len);
    for (let i = 0; i < this.nw; i++) wr.push(base + SLOT / 2 + i * this.len, this.len);
    r.pair.memory.fill(base + SLOT / 2, SLOT / 2, 0);
    if (rd.totalBytes() !== this.nr * this.len || wr.totalBytes() !== this.nw * this.len) {
      fail("sg-list", `${this}: totalBytes ${rd.totalBytes()} / ${wr.totalBytes()}`);
    }
    try {
      r.pair.driver.add(rd, wr, t);
    } catch (e) {
      if (isVirtqError(e, "RING_FULL")) return;
      throw e;
    }
    r.addedSinceKick++;
    const cap = this.nw * this.len;
    m.outstanding.set(t, { bytes: bytes.subarray(0, Math.min(cap, bytes.length)), cap });
    m.next++;
  }
  toString(): string {
    return `add(${this.nr}r,${this.nw}w,${this.len}B)`;
  }
}

class KickCmd implements fc.Command<SplitModel, SplitReal> {
  check(): boolean {
    return true;
  }
  run(_m: SplitModel, r: SplitReal): void {
    const added = r.addedSinceKick;
    r.addedSinceKick = 0;
    const notify = r.pair.driver.kick();
    if (!r.deviceAsleep) return;
    if (notify) wakeDevice(r);
    else if (added > 0) {
      fail(
        "lost-notification",
        `kick published ${added} buffer(s) to the sleeping device without notifying it`,
      );
    }
  }
  toString(): string {
    return "kick";
  }
}

class PopCmd implements fc.Command<SplitModel, SplitReal> {
  constructor(readonly n: number) {}
  check(): boolean {
    return true;
  }
  run(_m: SplitModel, r: SplitReal): void {
    if (r.deviceAsleep) return; // a sleeping device does not look at the ring
    for (let i = 0; i < this.n; i++) {
      const c = r.pair.device.pop();
      if (c === null) return;
      chainsDone++;
      // Declined INDIRECT_DESC (§2.7.5.3.1 / §2.8.7.1): the driver never uses a table.
      if (c.indirect && !r.indirect) {
        fail("feature-implied", `buffer ${c.id} uses an indirect table, INDIRECT_DESC declined`);
      }
      r.popped.push(c);
    }
  }
  toString(): string {
    return `pop(${this.n})`;
  }
}

class PushCmd implements fc.Command<SplitModel, SplitReal> {
  constructor(readonly n: number) {}
  check(): boolean {
    return true;
  }
  run(_m: SplitModel, r: SplitReal): void {
    for (let i = 0; i < this.n && r.popped.length > 0; i++) {
      const c = r.popped.shift()!; // in pop order (required with IN_ORDER)
      r.pair.device.push(c, c.copyReadableToWritable());
      r.pushedSinceFlush++;
    }
  }
  toString(): string {
    return `push(${this.n})`;
  }
}

/**
 * API misuse the queue must refuse with the catalogued `PUSH_INVALID` and no state change
 * (spec §2.7.8 / §2.8.21: a used element names a buffer the device holds, `len` at most its
 * writable bytes): pushing a popped chain with `written` past its writable capacity, or pushing
 * a chain a second time (the chain was pushed and is no longer in flight).
 */
class PushInvalidCmd implements fc.Command<SplitModel, SplitReal> {
  constructor(readonly kind: "too-much" | "twice", readonly extra: number) {}
  check(): boolean {
    return true;
  }
  run(_m: SplitModel, r: SplitReal): void {
    if (r.popped.length === 0) return;
    const dev = r.pair.device;
    let c = r.popped[0];
    let written = c.writableBytes + 1 + this.extra;
    if (this.kind === "twice") {
      c = r.popped.shift()!;
      written = c.copyReadableToWritable();
      dev.push(c, written);
      r.pushedSinceFlush++;
    }
    try {
      dev.push(c, written);
    } catch (e) {
      if (isVirtqError(e, "PUSH_INVALID")) return;
      fail("api-misuse", `${this}: threw ${e}, expected PUSH_INVALID`);
    }
    fail("api-misuse", `${this}: accepted, expected PUSH_INVALID`);
  }
  toString(): string {
    return `pushInvalid(${this.kind},${this.extra})`;
  }
}

class FlushCmd implements fc.Command<SplitModel, SplitReal> {
  check(): boolean {
    return true;
  }
  run(_m: SplitModel, r: SplitReal): void {
    const published = r.pushedSinceFlush;
    const notify = r.pair.device.flush();
    r.pushedSinceFlush = 0;
    if (!r.driverAsleep) return;
    if (notify) wakeDriver(r);
    else if (published > 0) {
      fail(
        "lost-notification",
        `flush published ${published} used buffer(s) to the sleeping driver without notifying it`,
      );
    }
  }
  toString(): string {
    return "flush";
  }
}

class GetUsedCmd implements fc.Command<SplitModel, SplitReal> {
  constructor(readonly n: number) {}
  check(): boolean {
    return true;
  }
  run(m: SplitModel, r: SplitReal): void {
    if (r.driverAsleep) return; // a sleeping driver does not look at the ring
    for (let i = 0; i < this.n; i++) {
      const t = r.pair.driver.getUsed();
      if (t === undefined) return;
      const o = m.outstanding.get(t);
      if (o === undefined) {
        fail("token-twice", `token ${t} ${m.returned.has(t) ? "returned twice" : "unknown"}`);
      }
      const len = r.pair.driver.usedLen;
      if (len !== o.bytes.length) {
        fail("used-len", `token ${t}: usedLen ${len}, expected ${o.bytes.length}`);
      }
      const got = new Uint8Array(len);
      r.pair.memory.read(slotGpa(r, t) + SLOT / 2, got);
      for (let k = 0; k < len; k++) {
        if (got[k] !== o.bytes[k]) {
          fail("bytes", `token ${t}: byte ${k} is ${got[k]}, expected ${o.bytes[k]}`);
        }
      }
      m.outstanding.delete(t);
      m.returned.add(t);
    }
  }
  toString(): string {
    return `getUsed(${this.n})`;
  }
}

/**
 * The device goes to sleep when it finds nothing to do (vhost's `vhost_enable_notify` loop): with
 * notifications off it turns them on and sleeps unless `setNotifications(true)` reports buffers
 * already available (then it stays awake to poll); with them on it sleeps after a `pop` that
 * returns nothing (a chain it finds is kept, to be pushed later).
 */
class DeviceSleepCmd implements fc.Command<SplitModel, SplitReal> {
  check(): boolean {
    return true;
  }
  run(_m: SplitModel, r: SplitReal): void {
    if (r.deviceAsleep) return;
    const dev = r.pair.device;
    if (!r.deviceNotify) {
      r.deviceNotify = true;
      if (!dev.setNotifications(true)) r.deviceAsleep = true;
      return;
    }
    const c = dev.pop();
    if (c === null) r.deviceAsleep = true;
    else r.popped.push(c);
  }
  toString(): string {
    return "deviceSleep";
  }
}

/**
 * The driver goes to sleep (Linux `virtqueue_enable_cb` before waiting for an interrupt): it
 * asks for used buffer notifications and sleeps unless `enableCallbacks()` reports used buffers
 * already pending (then it stays awake to poll).
 */
class DriverSleepCmd implements fc.Command<SplitModel, SplitReal> {
  check(): boolean {
    return true;
  }
  run(_m: SplitModel, r: SplitReal): void {
    if (r.driverAsleep) return;
    if (r.pair.driver.enableCallbacks()) r.driverAsleep = true;
  }
  toString(): string {
    return "driverSleep";
  }
}

/** A driver batch: `k` adds (each of `nr` readable and `nw` writable segments), then a kick. */
class AddBatchCmd implements fc.Command<SplitModel, SplitReal> {
  constructor(readonly k: number, readonly add: AddCmd) {}
  check(): boolean {
    return true;
  }
  run(m: SplitModel, r: SplitReal): void {
    for (let i = 0; i < this.k; i++) this.add.run(m, r);
    new KickCmd().run(m, r);
  }
  toString(): string {
    return `addBatch(${this.k}x${this.add})`;
  }
}

/**
 * One round of an awake device: pop up to `n` chains, push every chain it holds, flush, then
 * try to sleep ({@link DeviceSleepCmd}).
 */
class DeviceRoundCmd implements fc.Command<SplitModel, SplitReal> {
  constructor(readonly n: number) {}
  check(): boolean {
    return true;
  }
  run(m: SplitModel, r: SplitReal): void {
    if (r.deviceAsleep) return;
    new PopCmd(this.n).run(m, r);
    new PushCmd(1 << 16).run(m, r);
    new FlushCmd().run(m, r);
    new DeviceSleepCmd().run(m, r);
  }
  toString(): string {
    return `deviceRound(${this.n})`;
  }
}

/** One round of an awake driver: collect every used buffer, then try to sleep. */
class DriverRoundCmd implements fc.Command<SplitModel, SplitReal> {
  check(): boolean {
    return true;
  }
  run(m: SplitModel, r: SplitReal): void {
    if (r.driverAsleep) return;
    new GetUsedCmd(1 << 16).run(m, r);
    new DriverSleepCmd().run(m, r);
  }
  toString(): string {
    return "driverRound";
  }
}

class ResetCmd implements fc.Command<SplitModel, SplitReal> {
  check(): boolean {
    return true;
  }
  run(m: SplitModel, r: SplitReal): void {
    r.pair.device.reset();
    r.popped.length = 0;
    r.pushedSinceFlush = 0;
    r.addedSinceKick = 0;
    // A reset wakes both sides; the re-initialised rings ask for every notification.
    r.deviceAsleep = r.driverAsleep = false;
    r.deviceNotify = true;
    const drv = r.pair.driver as SplitDriverQueue<number> | PackedDriverQueue<number>;
    for (let t = drv.detachUnused(); t !== undefined; t = drv.detachUnused()) {
      if (!m.outstanding.delete(t)) fail("token-twice", `detachUnused returned token ${t} again`);
      m.returned.add(t);
    }
    if (m.outstanding.size !== 0) fail("token-lost", `${m.outstanding.size} tokens not detached`);
    drv.resetRings();
    // §4.1.4.3.2: the queue is re-enabled only after the driver re-initialised the rings.
    r.pair.device.activate();
  }
  toString(): string {
    return "reset";
  }
}

/** The commands (exported for tests). */
export const splitCommands: fc.Arbitrary<fc.Command<SplitModel, SplitReal>>[] = [
  fc.tuple(fc.nat(3), fc.nat(3), fc.integer({ min: 1, max: 300 })).map(([a, b, c]) =>
    new AddCmd(a, b, c)
  ),
  fc.constant(new KickCmd()),
  fc.integer({ min: 1, max: 6 }).map((n) => new PopCmd(n)),
  fc.integer({ min: 1, max: 6 }).map((n) => new PushCmd(n)),
  fc.constant(new FlushCmd()),
  fc.tuple(fc.constantFrom("too-much" as const, "twice" as const), fc.nat(0x1_0000)).map((
    [k, x],
  ) => new PushInvalidCmd(k, x)),
  fc.integer({ min: 1, max: 6 }).map((n) => new GetUsedCmd(n)),
  fc.constant(new ResetCmd()),
  fc.constant(new DeviceSleepCmd()),
  fc.constant(new DriverSleepCmd()),
  // Rounds of sleeping peers (weighted twice): batches of adds, of pops + pushes, of get-used.
  ...[0, 1].flatMap(() => [
    fc.tuple(fc.integer({ min: 1, max: 5 }), fc.nat(3), fc.nat(3), fc.integer({ min: 1, max: 300 }))
      .map(([k, a, b, c]) => new AddBatchCmd(k, new AddCmd(a, b, c))),
    fc.integer({ min: 1, max: 6 }).map((n) => new DeviceRoundCmd(n)),
    fc.constant(new DriverRoundCmd()),
  ]),
];

/** One input: the configuration and a command sequence. */
export interface ModelSplitInput {
  /** Queue Size. */
  size: number;
  /** Negotiated feature choices. */
  indirect: boolean;
  eventIdx: boolean;
  inOrder: boolean;
  /** Driver indirect policy. */
  indirectPolicy: "never" | "always" | "auto";
  /** On waking, the device turns notifications off (else it leaves them on). */
  deviceWakeDisables?: boolean;
  /** On waking, the driver turns callbacks off (else it leaves them on). */
  driverWakeDisables?: boolean;
  /** The commands. */
  cmds: Iterable<fc.Command<SplitModel, SplitReal>>;
}

function inputArb(layout: RingLayout, replayPath?: string): fc.Arbitrary<ModelSplitInput> {
  return fc.record({
    size: layout === "split" ? fc.constantFrom(2, 4, 8, 64) : fc.constantFrom(1, 2, 3, 5, 8, 63),
    indirect: fc.boolean(),
    eventIdx: fc.boolean(),
    inOrder: fc.boolean(),
    indirectPolicy: fc.constantFrom("never" as const, "always" as const, "auto" as const),
    deviceWakeDisables: fc.boolean(),
    driverWakeDisables: fc.boolean(),
    cmds: fc.commands(splitCommands, { maxCommands: 80, replayPath }),
  }, { noNullPrototype: true });
}

/**
 * Notification bugs a test can plant in the engine (`withPlantedFault`), each a realistic
 * mistake of a real driver or device, none written around the sleeping peers:
 * - `split-kick-old-is-new-minus-1`: the split driver evaluates `vring_need_event` with
 *   old = new - 1 (only the last added buffer), so a batch of adds passes `avail_event` unseen;
 * - `split-flush-old-is-new-minus-1`: the same mistake in the split device's used buffer
 *   notification (`used_event`), for a batch of pushes;
 * - `split-pop-stale-avail-event`: the split device stops keeping `avail_event` current in `pop`
 *   (published only by `setNotifications(true)`);
 * - `packed-set-notifications-wrong-wrap`: the packed device publishes its event offset with the
 *   wrap counter inverted (§2.8.10);
 * - `enable-callbacks-no-recheck`: the driver's `enableCallbacks` does not re-check for used
 *   buffers that arrived while callbacks were off (returns true);
 * - `set-notifications-no-recheck`: the device's `setNotifications(true)` does not re-check for
 *   buffers made available while notifications were off (returns false);
 * - `driver-uses-declined-indirect`: the queues act on the features the driver asked for, not on
 *   those negotiated: INDIRECT_DESC declined, yet the driver builds indirect tables.
 */
export const QUEUE_MODEL_FAULTS: Record<RingLayout, readonly string[]> = {
  split: [
    "split-kick-old-is-new-minus-1",
    "split-flush-old-is-new-minus-1",
    "split-pop-stale-avail-event",
    "enable-callbacks-no-recheck",
    "set-notifications-no-recheck",
    "driver-uses-declined-indirect",
  ],
  packed: [
    "packed-set-notifications-wrong-wrap",
    "enable-callbacks-no-recheck",
    "set-notifications-no-recheck",
    "driver-uses-declined-indirect",
  ],
};

/** `vring_need_event` (spec §2.7.10), written here apart from the engine's. */
function needEvent(event: number, nw: number, old: number): boolean {
  return ((nw - event - 1) & 0xffff) < ((nw - old) & 0xffff);
}

/** Replaces `obj[key]` on this instance only with `make(original bound to obj)`. */
function wrap<O extends object, K extends keyof O>(
  obj: O,
  key: K,
  make: (original: O[K]) => O[K],
): void {
  const original = (obj[key] as (...a: unknown[]) => unknown).bind(obj);
  Object.defineProperty(obj, key, { value: make(original as O[K]), configurable: true });
}

/** Plants `fault` into the pair's driver or device instance (test-only). */
function plantFault(pair: QueuePair<number>, fault: string): void {
  const m = pair.memory;
  const { driverAddr, deviceAddr } = pair.driver.addresses;
  const avail = Number(driverAddr), used = Number(deviceAddr), size = pair.size;
  const eventIdx = (pair.features & featureMask(VIRTIO_F_EVENT_IDX)) !== 0n;
  const drv = pair.driver, dev = pair.device;
  switch (fault) {
    case "split-kick-old-is-new-minus-1":
      wrap(drv, "kick", (kick) => () => {
        const right = kick();
        if (!eventIdx) return right;
        const nw = m.readU16(avail + 2);
        return needEvent(m.readU16(used + 4 + 8 * size), nw, (nw - 1) & 0xffff);
      });
      break;
    case "split-flush-old-is-new-minus-1":
      wrap(dev, "flush", (flush) => () => {
        const before = m.readU16(used + 2);
        const right = flush();
        const nw = m.readU16(used + 2);
        if (!eventIdx || nw === before) return right;
        return needEvent(m.readU16(avail + 4 + 2 * size), nw, (nw - 1) & 0xffff);
      });
      break;
    case "split-pop-stale-avail-event":
      wrap(dev, "pop", (pop) => () => {
        const at = used + 4 + 8 * size;
        const stale = m.readU16(at);
        try {
          return pop();
        } finally {
          m.writeU16(at, stale);
        }
      });
      break;
    case "packed-set-notifications-wrong-wrap":
      wrap(dev, "setNotifications", (set) => (enabled: boolean) => {
        const r = set(enabled);
        if (enabled && eventIdx) m.writeU16(used, m.readU16(used) ^ 0x8000);
        return r;
      });
      break;
    case "driver-uses-declined-indirect":
      break; // planted in the features the pair is built with
    case "enable-callbacks-no-recheck":
      wrap(drv, "enableCallbacks", (enable) => () => {
        enable();
        return true;
      });
      break;
    case "set-notifications-no-recheck":
      wrap(dev, "setNotifications", (set) => (enabled: boolean) => {
        set(enabled);
        return false;
      });
      break;
    default:
      throw new Error(`unknown planted fault ${fault}`);
  }
}

/**
 * Library misuse the API must refuse with its catalogue code before touching memory (one kind per
 * run, chosen by the queue size): a layout that contradicts VIRTIO_F_RING_PACKED (§6) or features
 * passed as a number (`PAIR_OPTIONS_INVALID`), a scatter-gather segment with a negative length or
 * address (`SEGMENT_INVALID`).
 */
function checkApiMisuse(layout: RingLayout, features: bigint, size: number): void {
  const expect = (
    code: "PAIR_OPTIONS_INVALID" | "SEGMENT_INVALID",
    what: string,
    f: () => void,
  ) => {
    try {
      f();
    } catch (e) {
      if (isVirtqError(e, code)) return;
      fail("api-misuse", `${what}: threw ${e}, expected ${code}`);
    }
    fail("api-misuse", `${what}: accepted, expected ${code}`);
  };
  switch (size % 3) {
    case 0:
      expect(
        "PAIR_OPTIONS_INVALID",
        "layout against VIRTIO_F_RING_PACKED",
        () =>
          createQueuePair<number>({
            layout: layout === "split" ? "packed" : "split",
            size,
            features,
          }),
      );
      break;
    case 1:
      expect("PAIR_OPTIONS_INVALID", "features as a number", () =>
        createQueuePair<number>({
          layout,
          size,
          features: Number(features) as unknown as bigint,
        }));
      break;
    default:
      expect(
        "SEGMENT_INVALID",
        "SgList.of with a negative segment",
        () => SgList.of([0x1000, -size], [size, 16]),
      );
  }
}

/** Runs one input on `layout` (default split; exported for tests), optionally with a planted fault. */
export function runModelSplit(
  input: ModelSplitInput,
  layout: RingLayout = "split",
  fault?: string,
): void {
  const bits = [VIRTIO_F_VERSION_1];
  if (input.indirect || fault === "driver-uses-declined-indirect") {
    bits.push(VIRTIO_F_INDIRECT_DESC);
  }
  if (input.eventIdx) bits.push(VIRTIO_F_EVENT_IDX);
  if (input.inOrder) bits.push(VIRTIO_F_IN_ORDER);
  if (layout === "packed") bits.push(34); // VIRTIO_F_RING_PACKED: the layout is negotiated
  checkApiMisuse(layout, featureMask(...bits), input.size);
  const setup = () => {
    const pair = createQueuePair<number>({
      layout,
      size: input.size,
      features: featureMask(...bits),
      memorySize: (1 << 20) + 64 * SLOT,
      driverPolicy: { indirect: input.indirectPolicy },
    });
    if (fault !== undefined) plantFault(pair, fault);
    return {
      model: { outstanding: new Map(), returned: new Set<number>(), next: 0, size: input.size },
      real: {
        pair,
        popped: [],
        pushedSinceFlush: 0,
        addedSinceKick: 0,
        deviceAsleep: false,
        deviceNotify: true,
        driverAsleep: false,
        deviceWakeDisables: input.deviceWakeDisables ?? false,
        driverWakeDisables: input.driverWakeDisables ?? false,
        indirect: input.indirect,
      },
    };
  };
  // Run the commands, then drain: push everything, flush, collect; all tokens must be back.
  let final: { model: SplitModel; real: SplitReal } | undefined;
  fc.modelRun(() => {
    final = setup();
    return final;
  }, input.cmds);
  const { model: m, real: r } = final!;
  new KickCmd().run(m, r);
  if (r.deviceAsleep) {
    const c = r.pair.device.pop();
    if (c !== null) {
      fail("lost-notification", `the sleeping device was never notified of buffer ${c.id}`);
    }
    r.deviceAsleep = false;
  }
  new PopCmd(1 << 16).run(m, r);
  new PushCmd(1 << 16).run(m, r);
  new FlushCmd().run(m, r);
  if (r.driverAsleep) {
    const t = r.pair.driver.getUsed();
    if (t !== undefined) {
      fail("lost-notification", `the sleeping driver was never notified of token ${t}`);
    }
    r.driverAsleep = false;
  }
  new GetUsedCmd(1 << 16).run(m, r);
  if (m.outstanding.size !== 0) {
    fail(
      "token-lost",
      `${m.outstanding.size} tokens never came back: ${[...m.outstanding.keys()]}`,
    );
  }
  if (m.returned.size !== m.next) {
    fail("token-lost", `${m.next} added, ${m.returned.size} returned`);
  }
  if (r.pair.driver.numFree !== input.size) fail("free-list", `numFree ${r.pair.driver.numFree}`);
}

/** Chains the device popped, over every run in this process (both layouts; `workDone`). */
let chainsDone = 0;

/** The `model-<layout>` target (an `fc.commands` target). */
export class QueueModelTarget implements FuzzTarget<ModelSplitInput> {
  readonly name: string;
  readonly workUnit = "chains";
  /** Chains the device popped, over every run in this process (both layouts). */
  workDone(): number {
    return chainsDone;
  }
  readonly description: string;
  readonly usesCommands = true;
  readonly plantedFaults: readonly string[];
  readonly #layout: RingLayout;
  readonly #fault?: string;
  /**
   * @param layout the ring layout.
   * @param fault test-only: a planted bug from {@link QUEUE_MODEL_FAULTS}.
   */
  constructor(layout: RingLayout, fault?: string) {
    this.#layout = layout;
    this.#fault = fault;
    this.plantedFaults = QUEUE_MODEL_FAULTS[layout];
    this.name = `model-${layout}`;
    this.description =
      `model-based ${layout} pair: add/kick/pop/push/flush/getUsed/reset, peers that sleep until notified; every token back once with the device's bytes`;
  }
  /** Test-only: the same target over an engine carrying `fault`. */
  withPlantedFault(fault: string): FuzzTarget<ModelSplitInput> {
    if (!this.plantedFaults.includes(fault)) throw new Error(`unknown planted fault ${fault}`);
    return new QueueModelTarget(this.#layout, fault);
  }
  arbitrary(): fc.Arbitrary<ModelSplitInput> {
    return inputArb(this.#layout);
  }
  /** Same arbitrary with fast-check's `replayPath` for exact corpus replays. */
  replayArbitrary(replayPath: string): fc.Arbitrary<ModelSplitInput> {
    return inputArb(this.#layout, replayPath);
  }
  run(input: ModelSplitInput): void {
    runModelSplit(input, this.#layout, this.#fault);
  }
}
