/**
 * Fuzz target `viommu-hostile-device`: the virtio-iommu **driver** (`VirtioIommuDmaApi` over the
 * requestq transport and our split-ring driver queue) against a hostile virtio-iommu device, as
 * the ring drivers are fuzzed against hostile devices. The device is the real one, with a
 * drawn tamper applied to each reply after it processed the request: a bad status, a used
 * length of 0, shorter or longer than the writable part, a used element for an ID never made
 * available (instead of, or after, the real reply), no reply at all; and PROBE properties that
 * lie (RESV_MEM regions reversed, overlapping, covering the whole input range, bad property
 * lengths, reserved type bits, unknown types, a NONE terminator before real properties).
 *
 * Oracles:
 * - `uncatalogued-throw`: `init`/`map`/`unmap` throw nothing but `DmaMapError`;
 * - `bad-reply-accepted`: a reply that is not a valid OK (status other than OK, used length 0 or
 *   past the writable part, an ID never sent, no reply) makes the call fail `transport` (an
 *   extra used element for an ID never sent fails the call or the next one): never a bus address;
 * - `map-leak`: a MAP that failed leaves the driver's live mapping count unchanged;
 * - `resv-mapped`: every IOVA the driver hands out lies outside every well-formed RESV_MEM
 *   region the device reported (spec §5.13.6.8.2: the driver SHOULD NOT map them; Linux
 *   reserves them) and keeps the buffer's offset in the granule;
 * - `probe-learnt`: after an honest PROBE reply the driver knows exactly the device's RESV_MEM
 *   regions;
 * - `probe-beyond-used`: a RESV_MEM region the driver learnt lies in a property wholly inside
 *   the first `used` bytes of the PROBE reply (spec §2.7.8.2: the driver MUST NOT make
 *   assumptions about data in device-writable buffers beyond the first `len` bytes).
 * @module
 */

import fc from "fast-check";
import { z } from "zod";
import { DmaMapError } from "../../src/dma/mod.ts";
import { GuestMemory } from "../../src/memory/mod.ts";
import {
  createViommuQueues,
  type ViommuResvMem,
  VirtioIommuDevice,
  VirtioIommuDmaApi,
} from "../../src/devices/mod.ts";
import { decodeViommuConfig } from "../../src/devices/_internal.ts";
import { type FuzzTarget, OracleFailure } from "../target.ts";

/** Tamper kinds applied to one reply. */
export const TAMPERS = [
  "honest",
  "status",
  "used-zero",
  "used-short",
  "used-long",
  "bogus-id",
  "extra-reply",
  "no-reply",
  "probe-lie",
] as const;

/** Input: the endpoint's RESV_MEM regions and one tamper per request, in order. */
export interface ViommuHostileDeviceInput {
  /** RESV_MEM regions `[subtype, startPage, pages, reversed]` (in 4 KiB pages of a 1 GiB space). */
  resv: [number, number, number, boolean][];
  /** `[op, a, b]`: 0 map, 1 unmap; a: buffer, b: length index. */
  ops: [number, number, number][];
  /** Tamper per request sent (PROBE, ATTACH, then one per MAP/UNMAP): `[kind, arg]`. */
  tampers: [number, number][];
}

const n = z.int().nonnegative();
/** zod schema of {@link ViommuHostileDeviceInput}. */
export const ViommuHostileDeviceInputSchema = z.strictObject({
  resv: z.array(z.tuple([n, n, n, z.boolean()])),
  ops: z.array(z.tuple([n, n, n])),
  tampers: z.array(z.tuple([n, n])),
});

const MEM = 2 * 1024 * 1024;
const RING_GPA = 0x10_0000;
const LENGTHS = [1, 100, 4096, 4097, 3 * 4096, 40 * 4096];
const STATUS_LIES = [1, 2, 3, 4, 5, 6, 7, 8, 0xff];

const arb: fc.Arbitrary<ViommuHostileDeviceInput> = fc.record({
  resv: fc.array(
    fc.tuple(
      fc.constantFrom(0, 1, 2),
      fc.nat({ max: 0x3ffff }),
      fc.nat({ max: 4096 }),
      fc.boolean(),
    ),
    { maxLength: 4 },
  ),
  ops: fc.array(fc.tuple(fc.constantFrom(0, 0, 1), fc.nat({ max: 255 }), fc.nat({ max: 5 })), {
    minLength: 1,
    maxLength: 12,
  }),
  tampers: fc.array(
    fc.tuple(
      fc.oneof(
        { weight: 6, arbitrary: fc.constant(0) },
        { weight: 8, arbitrary: fc.nat({ max: TAMPERS.length - 1 }) },
      ),
      fc.nat({ max: 1023 }),
    ),
    { maxLength: 16 },
  ),
}, { noNullPrototype: true });

let memory: GuestMemory | null = null;

/** What the hostile device did to the reply of request `i`. */
interface Reply {
  kind: (typeof TAMPERS)[number];
  bad: boolean; // the reply is not a valid OK
  extra: boolean; // an extra used element for an ID never sent follows
  probeUsed: number; // PROBE: the used length reported (-1 otherwise)
  probeBytes: Uint8Array | null; // PROBE: the writable part as the device left it
}

/** RESV_MEM regions (`start-end`) of the properties lying wholly in `area` (spec §5.13.6.8). */
function resvIn(area: Uint8Array): Set<string> {
  const v = new DataView(area.buffer, area.byteOffset, area.length);
  const out = new Set<string>();
  for (let off = 0; off + 4 <= area.length;) {
    const word = v.getUint16(off, true), len = v.getUint16(off + 2, true);
    if (word === 0) break;
    if (off + 4 + len > area.length) break;
    if (word === 1 && len >= 20) {
      out.add(`${v.getBigUint64(off + 8, true)}-${v.getBigUint64(off + 16, true)}`);
    }
    off += 4 + len;
  }
  return out;
}

/** Engine seam: how the driver API is built (tests plant bugs here). */
export interface ViommuHostileEngine {
  /** Wraps the driver API built over the hostile device. */
  wrap(api: VirtioIommuDmaApi): VirtioIommuDmaApi;
}

function run(input: ViommuHostileDeviceInput, engine: ViommuHostileEngine): void {
  const mem = memory ??= GuestMemory.flat(MEM);
  mem.fill(RING_GPA, 0x8000);
  const resvMem: ViommuResvMem[] = input.resv.map(([sub, page, pages, rev]) => {
    const a = page * 4096, b = a + Math.max(pages, 1) * 4096 - 1;
    return { subtype: sub === 0 ? 1 : sub, start: rev ? b : a, end: rev ? a : b };
  });
  const device = new VirtioIommuDevice({
    endpoints: [{ id: 8, resvMem }],
    config: { inputStart: 0, inputEnd: 2 ** 30 - 1 },
  });
  const features = device.negotiate(device.deviceFeatures);
  const queues = createViommuQueues({ memory: mem, device, ringGpa: RING_GPA });
  const replies = tamperReplies(mem, device, queues.requestq, input.tampers);
  const cfg = decodeViommuConfig(device.readConfig());
  const api = engine.wrap(
    new VirtioIommuDmaApi({
      transport: queues.transport,
      config: cfg,
      features,
      endpoint: 8,
      domain: 1,
    }),
  );
  const call = checkedCaller(replies);
  const inited = call("init", () => (api.init(), true));
  if (inited === null) return;
  checkProbe(replies[0], cfg.probeSize, api, resvMem);
  runMapOps(input.ops, api, call);
}

/** The request queue as the tamperer sees it (GPAs of its areas, Queue Size). */
interface RequestQueueView {
  readonly addresses: { readonly descAddr: number | bigint; readonly deviceAddr: number | bigint };
  readonly size: number;
}

/**
 * Wraps `device.processRequestQueue` so that every reply it publishes gets the drawn tamper
 * (request `i` the `i`-th of `tampers`, honest past the end). @returns the record of what was
 * done to each reply, filled as requests are processed.
 */
function tamperReplies(
  mem: GuestMemory,
  device: VirtioIommuDevice,
  q: RequestQueueView,
  tampers: readonly [number, number][],
): Reply[] {
  const descGpa = Number(q.addresses.descAddr), usedGpa = Number(q.addresses.deviceAddr);
  const size = q.size;
  const replies: Reply[] = [];
  const real = device.processRequestQueue.bind(device);
  let deviceIdx = -1; // the used idx the device itself last published
  device.processRequestQueue = () => {
    const before = mem.readU16(usedGpa + 2);
    const r = real();
    const after = mem.readU16(usedGpa + 2);
    const published = deviceIdx;
    deviceIdx = after;
    for (let idx = before; idx !== after; idx = (idx + 1) & 0xffff) {
      // a used element the device had already published and we withheld ("no-reply"): the late
      // reply to a request whose call already failed, re-exposed by the device's next idx write
      const behind = (published - idx) & 0xffff;
      if (published >= 0 && behind > 0 && behind < 0x8000) continue;
      const [k, arg] = tampers[replies.length] ?? [0, 0];
      const e = usedGpa + 4 + 8 * (idx % size);
      const x = (after + (idx - before)) & 0xffff; // where an extra reply is appended
      replies.push(tamperOne(mem, descGpa, usedGpa, size, e, x, TAMPERS[k % TAMPERS.length], arg));
    }
    return r;
  };
  return replies;
}

/**
 * Applies tamper `kind` to the used element at GPA `e` (its chain's writable descriptor found
 * through the descriptor table at `descGpa`); an extra reply goes to used slot `x`.
 */
function tamperOne(
  mem: GuestMemory,
  descGpa: number,
  usedGpa: number,
  size: number,
  e: number,
  x: number,
  kind: (typeof TAMPERS)[number],
  arg: number,
): Reply {
  const id = mem.readU32(e);
  // the writable descriptor of the chain (direct chains: head readable, next writable)
  let wGpa = -1, wLen = 0;
  for (let d = id, hops = 0; hops < 4 && d < size; hops++) {
    const o = descGpa + 16 * d;
    const flags = mem.readU16(o + 12);
    if (flags & 2) {
      wGpa = Number(mem.readU64(o));
      wLen = mem.readU32(o + 8);
      break;
    }
    if (!(flags & 1)) break;
    d = mem.readU16(o + 14);
  }
  const reply: Reply = { kind, bad: false, extra: false, probeUsed: -1, probeBytes: null };
  const isProbe = wLen > 4;
  if (isProbe) reply.probeUsed = mem.readU32(e + 4);
  switch (kind) {
    case "status":
      if (wGpa >= 0) mem.writeU8(wGpa + wLen - 4, STATUS_LIES[arg % STATUS_LIES.length]);
      reply.bad = true;
      break;
    case "used-zero":
      mem.writeU32(e + 4, 0);
      reply.bad = true;
      break;
    case "used-short": {
      const u = 1 + (arg % Math.max(1, wLen - 1));
      mem.writeU32(e + 4, u);
      if (isProbe) reply.probeUsed = u;
      break;
    }
    case "used-long":
      mem.writeU32(e + 4, wLen + 1 + (arg % 64));
      reply.bad = true;
      break;
    case "bogus-id":
      mem.writeU32(e, arg % 2 === 0 ? size + (arg % 7) : (id + 1 + (arg % (size - 1))) % size);
      reply.bad = true;
      break;
    case "extra-reply": {
      const ex = usedGpa + 4 + 8 * (x % size);
      mem.writeU32(ex, (id + 1 + (arg % (size - 1))) % size);
      mem.writeU32(ex + 4, 4);
      mem.writeU16(usedGpa + 2, (mem.readU16(usedGpa + 2) + 1) & 0xffff);
      reply.extra = true;
      break;
    }
    case "no-reply":
      mem.writeU16(usedGpa + 2, (mem.readU16(usedGpa + 2) - 1) & 0xffff);
      reply.bad = true;
      break;
    case "probe-lie":
      if (isProbe && wGpa >= 0) {
        // a property whose header lies: reserved type bits, a length past the area, an
        // unknown type, or a NONE terminator (with the length of the RESV_MEM it replaces:
        // what follows it is not to be read, §5.13.6.8), written over the first property
        const word = [0x8001, 0x0001, 0x0007, 0x0001, 0x0000][arg % 5];
        const len = [20, 0xffff, 20, 3, 20][arg % 5];
        mem.writeU16(wGpa, word);
        mem.writeU16(wGpa + 2, len);
      }
      break;
  }
  if (isProbe && wGpa >= 0) {
    reply.probeBytes = new Uint8Array(wLen);
    mem.read(wGpa, reply.probeBytes);
  }
  return reply;
}

/** Runs one driver call; null when it failed with a DmaMapError. */
type Caller = <T>(what: string, f: () => T) => T | null;

/**
 * Oracles `uncatalogued-throw` and `bad-reply-accepted` around each driver call: a bad reply
 * fails its own call; an extra reply fails this call or the next one.
 */
function checkedCaller(replies: readonly Reply[]): Caller {
  let pendingExtra = false;
  return <T>(what: string, f: () => T): T | null => {
    const first = replies.length;
    let result: T | null = null, err: DmaMapError | null = null;
    try {
      result = f();
    } catch (e) {
      if (!(e instanceof DmaMapError)) {
        throw new OracleFailure("uncatalogued-throw", `${what} threw ${String(e)}`, e);
      }
      err = e;
    }
    const mine = replies.slice(first);
    const bad = mine.find((r) => r.bad);
    if (bad !== undefined && (err === null || err.reason !== "transport")) {
      throw new OracleFailure(
        "bad-reply-accepted",
        `${what} after a ${bad.kind} reply ${err === null ? "succeeded" : `failed ${err.reason}`}`,
      );
    }
    if (pendingExtra && mine.length > 0 && err === null) {
      throw new OracleFailure(
        "bad-reply-accepted",
        `${what} succeeded after a reply for a request never sent`,
      );
    }
    if (err !== null) pendingExtra = false;
    if (mine.some((r) => r.extra) && err === null) pendingExtra = true;
    return result;
  };
}

/**
 * Oracles `probe-beyond-used` (what the driver learnt comes from the first `used` bytes of the
 * PROBE reply) and `probe-learnt` (an honest reply teaches exactly the device's regions).
 */
function checkProbe(
  probe: Reply | undefined,
  probeSize: number,
  api: VirtioIommuDmaApi,
  resvMem: readonly ViommuResvMem[],
): void {
  if (!probe?.probeBytes) return;
  const within = resvIn(probe.probeBytes.subarray(0, Math.min(probe.probeUsed, probeSize)));
  for (const r of api.resvMem) {
    if (!within.has(`${BigInt(r.start)}-${BigInt(r.end)}`)) {
      throw new OracleFailure(
        "probe-beyond-used",
        `PROBE reply used ${probe.probeUsed} of ${probe.probeBytes.length} bytes, yet the driver ` +
          `learnt RESV_MEM [0x${r.start.toString(16)}, 0x${r.end.toString(16)}] from outside them`,
      );
    }
  }
  if (probe.kind === "honest") {
    const key = (r: ViommuResvMem) => `${BigInt(r.start)}-${BigInt(r.end)}`;
    const want = resvMem.map(key).sort().join(","), got = api.resvMem.map(key).sort().join(",");
    if (want !== got) {
      throw new OracleFailure(
        "probe-learnt",
        `an honest PROBE reply taught the driver [${got}], the device holds [${want}]`,
      );
    }
  }
}

/**
 * The drawn MAP / UNMAP calls, with oracles `map-leak` (a failed MAP changes no live mapping
 * count) and `resv-mapped` (each IOVA keeps the buffer's offset in the granule and lies outside
 * every well-formed RESV_MEM region the driver learnt).
 */
function runMapOps(
  ops: readonly [number, number, number][],
  api: VirtioIommuDmaApi,
  call: Caller,
): void {
  const learnt = api.resvMem.filter((r) => BigInt(r.start) <= BigInt(r.end));
  const live: { bus: number; len: number }[] = [];
  for (const [op, a, b] of ops) {
    if (op === 0) {
      const len = LENGTHS[b % LENGTHS.length];
      const gpa = a * 4096 + (a % 7) * 16;
      const liveBefore = api.liveMappings;
      const bus = call("MAP", () => Number(api.map(gpa, len, (a % 3) as 0 | 1 | 2)));
      if (bus === null) {
        if (api.liveMappings !== liveBefore) {
          throw new OracleFailure(
            "map-leak",
            `failed MAP changed live mappings ${liveBefore} -> ${api.liveMappings}`,
          );
        }
        continue;
      }
      if (bus % api.granule !== gpa % api.granule) {
        throw new OracleFailure(
          "resv-mapped",
          `IOVA 0x${bus.toString(16)} lost the offset of GPA 0x${gpa.toString(16)}`,
        );
      }
      const lo = bus - (bus % api.granule), hi = bus + len - 1;
      for (const r of learnt) {
        if (lo <= Number(r.end) && hi >= Number(r.start)) {
          throw new OracleFailure(
            "resv-mapped",
            `IOVA [0x${lo.toString(16)}, 0x${hi.toString(16)}] overlaps RESV_MEM [0x${
              r.start.toString(16)
            }, 0x${r.end.toString(16)}]`,
          );
        }
      }
      live.push({ bus, len });
    } else if (live.length > 0) {
      const m = live.splice(a % live.length, 1)[0];
      call("UNMAP", () => api.unmap(m.bus, m.len, 0));
    }
  }
}

/** Planted bugs of the driver (wrappers over the real one, see docs/FUZZING.md). */
export const VIOMMU_HOSTILE_FAULTS = ["status-ignored"] as const;

/**
 * Builds the target over `engine`.
 * @param engine wraps the driver API (identity for the registered target).
 */
export function makeViommuHostileDeviceTarget(
  engine: ViommuHostileEngine = { wrap: (a) => a },
): FuzzTarget<ViommuHostileDeviceInput> {
  return {
    name: "viommu-hostile-device",
    description:
      "virtio-iommu driver against a hostile device: bad status, used lengths 0/short/long, replies for requests never sent, no reply, lying PROBE properties",
    arbitrary: () => arb,
    run: (input) => run(input, engine),
    encode: (input) => input,
    decode: (json) => ViommuHostileDeviceInputSchema.parse(json) as ViommuHostileDeviceInput,
    plantedFaults: VIOMMU_HOSTILE_FAULTS,
    withPlantedFault: (fault) => {
      if (fault !== "status-ignored") throw new Error(`unknown planted fault ${fault}`);
      // a driver that treats any non-zero used length as success, whatever the status says
      return makeViommuHostileDeviceTarget({
        wrap: (api) => {
          const map = api.map.bind(api);
          api.map = (gpa, len, dir) => {
            try {
              return map(gpa, len, dir);
            } catch (e) {
              if (
                e instanceof DmaMapError && e.reason === "transport" && /answered/.test(e.message)
              ) {
                return gpa;
              }
              throw e;
            }
          };
          return api;
        },
      });
    },
  };
}

/** The registered instance. */
export const viommuHostileDeviceTarget: FuzzTarget<ViommuHostileDeviceInput> =
  makeViommuHostileDeviceTarget();
