/**
 * Fuzz target `differential`: the same well-behaved workload (adds, kicks, pops, completions in
 * any order, flushes of batches, get-used) over a split and a packed queue pair in lockstep. Every token must come
 * back on both layouts with the same used length and the same bytes in its writable buffers, and
 * those bytes must be what the loopback device wrote (the readable bytes, up to the writable
 * capacity). Both layouts run the same features (indirect, event index, in-order).
 * @module
 */

import fc from "fast-check";
import { z } from "zod";
import { GuestMemory } from "../../src/memory/mod.ts";
import {
  type Chain,
  createQueuePair,
  featureMask,
  type QueuePair,
  type RingLayout,
  SgList,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_IN_ORDER,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_VERSION_1,
} from "../../src/virtio/mod.ts";
import { type FuzzTarget, OracleFailure } from "../target.ts";

const BUF_BASE = 0x10_0000;
const MEM = 0x20_0000;

const opSchema = z.discriminatedUnion("op", [
  z.strictObject({
    op: z.literal("add"),
    readable: z.array(z.number().int().min(1).max(0x100)).max(4),
    writable: z.array(z.number().int().min(1).max(0x100)).max(4),
  }),
  z.strictObject({ op: z.literal("kick") }),
  z.strictObject({ op: z.literal("pop"), count: z.number().int().min(1).max(64) }),
  z.strictObject({ op: z.literal("complete"), pick: z.number().int().min(0) }),
  z.strictObject({ op: z.literal("flush") }),
  z.strictObject({ op: z.literal("get") }),
]);

const inputSchema = z.strictObject({
  sizeLog2: z.number().int().min(0).max(6),
  indirect: z.boolean(),
  eventIdx: z.boolean(),
  inOrder: z.boolean(),
  indirectPolicy: z.enum(["never", "always", "auto"]),
  ops: z.array(opSchema).max(200),
});

/** One input of the differential target (JSON-safe). */
export type DifferentialInput = z.infer<typeof inputSchema>;
type Op = DifferentialInput["ops"][number];

function arbitrary(): fc.Arbitrary<DifferentialInput> {
  const lens = fc.array(fc.integer({ min: 1, max: 0x100 }), { maxLength: 3 });
  const op: fc.Arbitrary<Op> = fc.oneof(
    {
      weight: 4,
      arbitrary: fc.record({ op: fc.constant("add" as const), readable: lens, writable: lens }, {
        noNullPrototype: true,
      }),
    },
    { weight: 1, arbitrary: fc.constant({ op: "kick" as const }) },
    {
      weight: 2,
      arbitrary: fc.record({
        op: fc.constant("pop" as const),
        count: fc.integer({ min: 1, max: 8 }),
      }, { noNullPrototype: true }),
    },
    {
      weight: 3,
      arbitrary: fc.record({ op: fc.constant("complete" as const), pick: fc.nat({ max: 16 }) }, {
        noNullPrototype: true,
      }),
    },
    { weight: 1, arbitrary: fc.constant({ op: "flush" as const }) },
    { weight: 2, arbitrary: fc.constant({ op: "get" as const }) },
  );
  return fc.record({
    sizeLog2: fc.integer({ min: 0, max: 6 }),
    indirect: fc.boolean(),
    eventIdx: fc.boolean(),
    inOrder: fc.boolean(),
    indirectPolicy: fc.constantFrom("never" as const, "always" as const, "auto" as const),
    ops: fc.array(op, { minLength: 5, maxLength: 120, size: "large" }),
  }, { noNullPrototype: true });
}

interface Side {
  layout: RingLayout;
  pair: QueuePair<number>;
  inFlight: Chain[];
  results: Map<number, { len: number; bytes: number[] }>;
}

interface Buffer {
  token: number;
  readable: number[];
  writable: number[];
  segs: number;
}

function slotGpa(token: number): number {
  return BUF_BASE + (token % 256) * 0x1000;
}

function sgOf(b: Buffer): [SgList, SgList] {
  const r = new SgList(), w = new SgList();
  let off = 0;
  for (const l of b.readable) r.push(slotGpa(b.token) + off, l), off += 0x100;
  for (const l of b.writable) w.push(slotGpa(b.token) + off, l), off += 0x100;
  return [r, w];
}

/** Collects every used buffer of one side with the bytes the device wrote into it. */
function collectUsed(s: Side, buffers: Map<number, Buffer>, size: number): void {
  for (let i = 0; i <= size; i++) {
    const t = s.pair.driver.getUsed();
    if (t === undefined) return;
    const b = buffers.get(t);
    if (b === undefined || s.results.has(t)) {
      throw new OracleFailure(
        "bad-token",
        `${s.layout}: token ${t} unexpected or returned twice`,
      );
    }
    const len = s.pair.driver.usedLen;
    const [, w] = sgOf(b);
    const bytes: number[] = [];
    for (let k = 0; k < w.count && bytes.length < len; k++) {
      const v = s.pair.memory.view(w.gpa[k], Math.min(w.len[k], len - bytes.length));
      bytes.push(...v);
    }
    s.results.set(t, { len, bytes });
  }
  throw new OracleFailure("no-termination", `${s.layout}: getUsed did not end`);
}

/** Every token came back on both sides with the same length and the loopback's bytes. */
function checkAgreement(sides: Side[], buffers: Map<number, Buffer>): void {
  for (const [t, b] of buffers) {
    const a = sides[0].results.get(t), p = sides[1].results.get(t);
    if (a === undefined || p === undefined) {
      throw new OracleFailure("token-lost", `token ${t}: split ${!!a}, packed ${!!p}`);
    }
    const want = Math.min(
      b.readable.reduce((x, y) => x + y, 0),
      b.writable.reduce((x, y) => x + y, 0),
    );
    if (a.len !== want || p.len !== want) {
      throw new OracleFailure(
        "len-mismatch",
        `token ${t}: split ${a.len}, packed ${p.len}, loopback ${want}`,
      );
    }
    if (a.bytes.join() !== p.bytes.join()) {
      throw new OracleFailure("bytes-mismatch", `token ${t}: written bytes differ`);
    }
    // the loopback wrote the readable bytes, in order
    const src: number[] = [];
    b.readable.forEach((l, k) => {
      for (let j = 0; j < l; j++) src.push((t * 7 + k * 31 + j) & 0xff);
    });
    if (a.bytes.join() !== src.slice(0, want).join()) {
      throw new OracleFailure(
        "bytes-wrong",
        `token ${t}: written bytes are not the readable bytes`,
      );
    }
  }
}

function run(input: DifferentialInput): void {
  const size = 1 << input.sizeLog2;
  const features = featureMask(VIRTIO_F_VERSION_1) |
    (input.indirect ? featureMask(VIRTIO_F_INDIRECT_DESC) : 0n) |
    (input.eventIdx ? featureMask(VIRTIO_F_EVENT_IDX) : 0n) |
    (input.inOrder ? featureMask(VIRTIO_F_IN_ORDER) : 0n);
  const sides: Side[] = (["split", "packed"] as const).map((layout) => ({
    layout,
    pair: createQueuePair<number>({
      layout,
      size,
      features: features | (layout === "packed" ? 1n << 34n : 0n), // VIRTIO_F_RING_PACKED
      memory: GuestMemory.flat(MEM),
      driverPolicy: { indirect: input.indirectPolicy },
    }),
    inFlight: [],
    results: new Map(),
  }));
  const buffers = new Map<number, Buffer>();
  let next = 0;
  let outstandingSegs = 0;
  const collect = (s: Side) => collectUsed(s, buffers, size);
  const apply = (op: Op) => {
    switch (op.op) {
      case "add": {
        const segs = op.readable.length + op.writable.length;
        if (segs === 0 || outstandingSegs + segs > size) return; // room on both layouts
        const b: Buffer = { token: next++, readable: op.readable, writable: op.writable, segs };
        buffers.set(b.token, b);
        outstandingSegs += segs;
        for (const s of sides) {
          const m = s.pair.memory;
          const base = slotGpa(b.token);
          for (let k = 0; k < 8; k++) {
            const v = m.view(base + 0x100 * k, 0x100);
            v.fill(k < b.readable.length ? 0 : 0xee);
            if (k < b.readable.length) {
              for (let j = 0; j < 0x100; j++) v[j] = (b.token * 7 + k * 31 + j) & 0xff;
            }
          }
          const [r, w] = sgOf(b);
          s.pair.driver.add(r, w, b.token);
        }
        return;
      }
      case "kick":
        for (const s of sides) s.pair.driver.kick();
        return;
      case "pop":
        for (const s of sides) {
          for (let i = 0; i < op.count; i++) {
            const c = s.pair.device.pop();
            if (c === null) break;
            chainsDone++;
            s.inFlight.push(c);
          }
        }
        if (sides[0].inFlight.length !== sides[1].inFlight.length) {
          throw new OracleFailure(
            "pop-mismatch",
            `split has ${sides[0].inFlight.length} in flight, packed ${sides[1].inFlight.length}`,
          );
        }
        return;
      case "complete": {
        const n = sides[0].inFlight.length;
        if (n === 0) return;
        const j = input.inOrder ? 0 : op.pick % n;
        for (const s of sides) {
          const c = s.inFlight.splice(j, 1)[0];
          s.pair.device.push(c, c.copyReadableToWritable());
        }
        return;
      }
      case "flush":
        for (const s of sides) s.pair.device.flush();
        return;
      case "get":
        for (const s of sides) collect(s);
        // segments of buffers both layouts have returned are free again
        outstandingSegs = 0;
        for (const [t, b] of buffers) {
          if (!sides[0].results.has(t) || !sides[1].results.has(t)) outstandingSegs += b.segs;
        }
        return;
    }
  };
  for (const op of input.ops) apply(op);
  // Drain: publish, process and collect everything on both sides.
  apply({ op: "kick" });
  for (let round = 0; round <= size + 1 && buffers.size > sides[1].results.size; round++) {
    apply({ op: "pop", count: 64 });
    while (sides[0].inFlight.length > 0) apply({ op: "complete", pick: 0 });
    apply({ op: "flush" });
    apply({ op: "get" });
  }
  checkAgreement(sides, buffers);
}

/** The split/packed differential target. */
/** Chains popped on either layout, over every run in this process (`workDone`). */
let chainsDone = 0;

export const differential: FuzzTarget<DifferentialInput> = {
  name: "differential",
  workUnit: "chains",
  workDone: () => chainsDone,
  description: "same workload over split and packed: identical used lengths and bytes per token",
  arbitrary,
  run,
  encode: (i) => i,
  decode: (json) => inputSchema.parse(json),
};
