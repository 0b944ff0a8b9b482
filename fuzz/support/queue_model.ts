/**
 * The queue model behind the fuzz targets `model-split` and `model-packed` (each registered in
 * its own file in `fuzz/targets/`): stateful model-based test of a well-behaved
 * queue pair of either layout with `fc.commands`, interleaving add / kick / pop / push / flush /
 * get-used / reset. The packed variant also runs Queue Sizes that are not powers of 2.
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
    r.pair.driver.kick();
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
    for (let i = 0; i < this.n; i++) {
      const c = r.pair.device.pop();
      if (c === null) return;
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
    r.pair.device.flush();
    r.pushedSinceFlush = 0;
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

class ResetCmd implements fc.Command<SplitModel, SplitReal> {
  check(): boolean {
    return true;
  }
  run(m: SplitModel, r: SplitReal): void {
    r.pair.device.reset();
    r.popped.length = 0;
    r.pushedSinceFlush = 0;
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
    cmds: fc.commands(splitCommands, { maxCommands: 80, replayPath }),
  }, { noNullPrototype: true });
}

/** Runs one input on `layout` (default split; exported for tests). */
export function runModelSplit(input: ModelSplitInput, layout: RingLayout = "split"): void {
  const bits = [VIRTIO_F_VERSION_1];
  if (input.indirect) bits.push(VIRTIO_F_INDIRECT_DESC);
  if (input.eventIdx) bits.push(VIRTIO_F_EVENT_IDX);
  if (input.inOrder) bits.push(VIRTIO_F_IN_ORDER);
  if (layout === "packed") bits.push(34); // VIRTIO_F_RING_PACKED: the layout is negotiated
  const setup = () => {
    const pair = createQueuePair<number>({
      layout,
      size: input.size,
      features: featureMask(...bits),
      memorySize: (1 << 20) + 64 * SLOT,
      driverPolicy: { indirect: input.indirectPolicy },
    });
    return {
      model: { outstanding: new Map(), returned: new Set<number>(), next: 0, size: input.size },
      real: { pair, popped: [], pushedSinceFlush: 0 },
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
  new PopCmd(1 << 16).run(m, r);
  new PushCmd(1 << 16).run(m, r);
  new FlushCmd().run(m, r);
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

/** The `model-<layout>` target (an `fc.commands` target). */
export class QueueModelTarget implements FuzzTarget<ModelSplitInput> {
  readonly name: string;
  readonly description: string;
  readonly usesCommands = true;
  readonly #layout: RingLayout;
  constructor(layout: RingLayout) {
    this.#layout = layout;
    this.name = `model-${layout}`;
    this.description =
      `model-based ${layout} pair: add/kick/pop/push/flush/getUsed/reset; every token back once with the device's bytes`;
  }
  arbitrary(): fc.Arbitrary<ModelSplitInput> {
    return inputArb(this.#layout);
  }
  /** Same arbitrary with fast-check's `replayPath` for exact corpus replays. */
  replayArbitrary(replayPath: string): fc.Arbitrary<ModelSplitInput> {
    return inputArb(this.#layout, replayPath);
  }
  run(input: ModelSplitInput): void {
    runModelSplit(input, this.#layout);
  }
}
