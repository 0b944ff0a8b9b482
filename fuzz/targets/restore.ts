/**
 * Fuzz target `restore`: a live queue (split or packed, optionally VIRTIO_F_IN_ORDER) runs a
 * random workload (adds, pops, completions in any allowed order), its device state is saved
 * (`saveState`), optionally corrupted (a position moved, a wrap counter flipped, an in-flight entry
 * dropped, added, replaced or reordered) or sent through the vhost-user vring base encoding
 * (`encodeVringBase` / `decodeVringBase`, packed wrap bit in bit 15, optionally flipped), and
 * restored into a fresh device over the same rings.
 *
 * Oracles: an uncorrupted state is accepted (`valid-state-rejected`); for split rings a state is
 * accepted exactly when an independent reference says the rings allow it (avail idx, used idx,
 * in-use count, IN_ORDER heads) (`contradicted-state-accepted` / `valid-state-rejected`); a
 * packed vring base round-trips its positions (`vhost-roundtrip`); after any accepted restore
 * the queue drains: every outstanding token comes back exactly once and the driver never sees a
 * hostile used element (`corrupt-state-consumed`); a device-side catalogue error at a later pop is
 * a detection (not silent) and ends the run.
 * @module
 */

import fc from "fast-check";
import { z } from "zod";
import {
  type Chain,
  createDeviceQueue,
  createQueuePair,
  decodeVringBase,
  encodeVringBase,
  featureMask,
  IdentityAddressSpace,
  isRestorable,
  isVirtqError,
  type RestorableDeviceQueue,
  SgList,
  VIRTIO_F_IN_ORDER,
  VIRTIO_F_RING_PACKED,
  VIRTIO_F_VERSION_1,
  type VirtqueueState,
} from "../../src/mod.ts";
import { type FuzzTarget, OracleFailure } from "../target.ts";

const CORRUPTIONS = [
  "none",
  "lastAvail",
  "used",
  "availWrap",
  "usedWrap",
  "drop",
  "extra",
  "replace",
  "swap",
  "vhost",
  "vhostWrapFlip",
] as const;

const inputSchema = z.strictObject({
  packed: z.boolean(),
  inOrder: z.boolean(),
  sizeLog2: z.number().int().min(1).max(4),
  steps: z.array(z.strictObject({
    add: z.number().int().min(0).max(4),
    pop: z.number().int().min(0).max(4),
    complete: z.array(z.number().int().min(0).max(15)).max(4),
  })).max(20),
  corruption: z.enum(CORRUPTIONS),
  amount: z.number().int().min(-20).max(20),
  /** Descriptors per buffer (1: the avail ring can hold Queue Size entries; default 2). */
  segs: z.number().int().min(1).max(2).optional(),
  /** After the steps, add buffers until the descriptor table is full (no pops). */
  fill: z.boolean().optional(),
});

/** One input (JSON-safe). */
export type RestoreInput = z.infer<typeof inputSchema>;

/** The save/restore and vring base functions under test (planted bugs replace them). */
export interface RestoreEngine {
  /** Saves the device state. */
  save(q: RestorableDeviceQueue): VirtqueueState;
  /** Restores `state` into a fresh queue made by `fresh`; returns the queue used and the chains. */
  restore(
    fresh: () => RestorableDeviceQueue,
    state: VirtqueueState,
  ): { q: RestorableDeviceQueue; chains: Chain[] };
  /** vhost-user encoding. */
  encode(state: VirtqueueState): number;
}

const REAL: RestoreEngine = {
  save: (q) => q.saveState(),
  restore: (fresh, state) => {
    const q = fresh();
    return { q, chains: q.restoreState(state) };
  },
  encode: encodeVringBase,
};

function arbitrary(): fc.Arbitrary<RestoreInput> {
  return fc.record({
    packed: fc.boolean(),
    inOrder: fc.boolean(),
    sizeLog2: fc.integer({ min: 1, max: 4 }),
    steps: fc.array(
      fc.record({
        add: fc.integer({ min: 0, max: 4 }),
        pop: fc.integer({ min: 0, max: 4 }),
        // half the picks complete the oldest in-flight chain: packed rings completed in pop
        // order stay restorable (overtaken lists are a documented limit), and a pool reused
        // out of ring order (pop A, B; complete A; pop C) tests the saved in-flight order
        complete: fc.array(
          fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 15 })),
          { maxLength: 3 },
        ),
      }, { noNullPrototype: true }),
      { maxLength: 16 },
    ),
    corruption: fc.oneof(
      { weight: 4, arbitrary: fc.constant("none" as const) },
      { weight: 8, arbitrary: fc.constantFrom(...CORRUPTIONS) },
    ),
    amount: fc.integer({ min: -20, max: 20 }).filter((a) => a !== 0),
    segs: fc.constantFrom(1, 2),
    fill: fc.boolean(),
  }, { noNullPrototype: true });
}

let restores = 0;

/** Builds the target over an engine (the real one, or one with a planted bug). */
export function makeRestoreTarget(
  engine: RestoreEngine = REAL,
  suffix = "",
): FuzzTarget<RestoreInput> {
  const run = (input: RestoreInput): void => {
    const layout = input.packed ? "packed" : "split";
    const size = 1 << input.sizeLog2;
    const features = featureMask(VIRTIO_F_VERSION_1) |
      (input.inOrder ? featureMask(VIRTIO_F_IN_ORDER) : 0n) |
      (input.packed ? featureMask(VIRTIO_F_RING_PACKED) : 0n);
    const p = createQueuePair<number>({ layout, size, features, memorySize: 1 << 20 });
    const dev = p.device;
    if (!isRestorable(dev)) {
      throw new OracleFailure("not-restorable", `${layout} engine has no saveState`);
    }
    const w = runWorkload(p, dev, input);
    const saved = engine.save(dev);
    const state = corruptState(engine, input, saved, size, w.pushedTotal);
    if (state === null) return;
    // Independent reference for split: what the rings allow.
    const trueHeads = w.inFlight.map((c) => c.id);
    const consistent = input.packed ? null : splitReference(input, state, size, w, trueHeads);
    restores++;
    const fresh = (): RestorableDeviceQueue => {
      const q = createDeviceQueue(layout, {
        memory: p.memory,
        dma: new IdentityAddressSpace(),
        size,
        addresses: p.driver.addresses,
        features,
      });
      if (!isRestorable(q)) throw new OracleFailure("not-restorable", "fresh queue");
      return q;
    };
    const restored = restoreChecked(engine, fresh, state, input, w.overtaken, consistent);
    if (restored === null) return;
    if (consistent === false) {
      throw new OracleFailure(
        "contradicted-state-accepted",
        `restored ${JSON.stringify(state)} (avail idx ${w.added & 0xffff}, used idx ${
          w.pushedTotal & 0xffff
        }, in flight [${trueHeads}])`,
      );
    }
    if (!drainDevice(restored.q, restored.chains, size)) return;
    checkReturned(p, input, w, state, saved);
  };
  return {
    name: "restore",
    description:
      `saved queue state (positions, wrap counters, in-flight heads, vhost-user vring base) restored into a fresh device over live rings${suffix}`,
    arbitrary,
    run,
    workUnit: "restores",
    workDone: () => restores,
    encode: (i) => i,
    decode: (j) => inputSchema.parse(j),
    plantedFaults: ["save-drops-inflight", "rewind-on-mismatch", "vhost-wrap-bit-lost"],
    withPlantedFault: (fault) => makeRestoreTarget(planted(fault), ` (planted: ${fault})`),
  };
}

type Pair = ReturnType<typeof createQueuePair<number>>;

/** What the workload did, kept on the driver side independently of the device. */
interface Workload {
  added: number;
  pushedTotal: number;
  /**
   * Packed: a completion out of pop order writes its used descriptor over the slots of an older
   * in-flight list, which then cannot be re-walked from the ring (documented limit: restore
   * reports RESTORE_RING_MISMATCH, a VMM must save those elements itself).
   */
  overtaken: boolean;
  inFlight: Chain[];
  returned: Set<number>;
}

/** Runs the input's steps (adds, pops, completions) on the live queue. */
function runWorkload(p: Pair, dev: RestorableDeviceQueue, input: RestoreInput): Workload {
  const w: Workload = {
    added: 0,
    pushedTotal: 0,
    overtaken: false,
    inFlight: [],
    returned: new Set<number>(),
  };
  // One-descriptor buffers let the avail ring fill (avail idx Queue Size ahead of the device).
  const segs = input.segs ?? 2;
  const steps = input.fill === true
    ? [...input.steps, { add: 1 << input.sizeLog2, pop: 0, complete: [] }]
    : input.steps;
  for (const s of steps) {
    for (let i = 0; i < s.add && p.driver.numFree >= segs; i++) {
      p.driver.add(
        segs === 2 ? SgList.of([p.dataGpa + 32 * (w.added % 512), 8]) : SgList.of(),
        SgList.of([p.dataGpa + 0x10000, 8]),
        w.added,
      );
      w.added++;
    }
    p.driver.kick();
    for (let i = 0; i < s.pop; i++) {
      const c = dev.pop();
      if (c === null) break;
      w.inFlight.push(c);
    }
    for (const pick of s.complete) {
      if (w.inFlight.length === 0) break;
      const at = input.inOrder ? 0 : pick % w.inFlight.length;
      if (at !== 0) w.overtaken = true;
      dev.push(w.inFlight.splice(at, 1)[0], 0);
      w.pushedTotal++;
    }
    dev.flush();
    for (let t = p.driver.getUsed(); t !== undefined; t = p.driver.getUsed()) w.returned.add(t);
  }
  return w;
}

/**
 * Applies the input's corruption to the saved state (or sends it through the vhost-user vring
 * base). Returns `null` when the run ends here (a flipped split vring base rejected as it must).
 */
function corruptState(
  engine: RestoreEngine,
  input: RestoreInput,
  saved: VirtqueueState,
  size: number,
  pushedTotal: number,
): VirtqueueState | null {
  const layout = input.packed ? "packed" : "split";
  const state: VirtqueueState = { ...saved, inFlight: [...saved.inFlight] };
  const amt = input.amount;
  const wrapPos = (o: number, w: number, d: number) => {
    const lin = (((o + (w === 1 ? 0 : size) + d) % (2 * size)) + 2 * size) % (2 * size);
    return [lin % size, lin < size ? 1 : 0];
  };
  switch (input.corruption) {
    case "lastAvail":
      if (input.packed) {
        [state.lastAvail, state.availWrap] = wrapPos(state.lastAvail, state.availWrap, amt);
      } else state.lastAvail = (state.lastAvail + amt) & 0xffff;
      break;
    case "used":
      if (input.packed) [state.used, state.usedWrap] = wrapPos(state.used, state.usedWrap, amt);
      else state.used = (state.used + amt) & 0xffff;
      break;
    case "availWrap":
      if (input.packed) state.availWrap ^= 1;
      break;
    case "usedWrap":
      if (input.packed) state.usedWrap ^= 1;
      break;
    case "drop":
      state.inFlight.pop();
      break;
    case "extra":
      state.inFlight.push(Math.abs(amt) % (input.packed ? 0x10000 : size));
      break;
    case "replace":
      // Identities of out-of-order split in-flight heads are not in the rings: not corrupted.
      if (state.inFlight.length > 0 && (input.packed || input.inOrder)) {
        state.inFlight[0] = (state.inFlight[0] + Math.abs(amt)) % (input.packed ? 0x10000 : size);
      }
      break;
    case "swap":
      if (state.inFlight.length > 1) state.inFlight.reverse();
      break;
    case "vhost":
    case "vhostWrapFlip":
      return throughVringBase(engine, input, saved, layout, size, pushedTotal);
  }
  return state;
}

/** The saved state encoded as a vhost-user vring base (optionally bit 15 flipped) and decoded. */
function throughVringBase(
  engine: RestoreEngine,
  input: RestoreInput,
  saved: VirtqueueState,
  layout: "split" | "packed",
  size: number,
  pushedTotal: number,
): VirtqueueState | null {
  let vhostNum = engine.encode(saved);
  if (input.corruption === "vhostWrapFlip") vhostNum = (vhostNum ^ 0x8000) >>> 0;
  let state: VirtqueueState;
  try {
    state = decodeVringBase(layout, size, vhostNum, pushedTotal & 0xffff);
  } catch (e) {
    if (
      isVirtqError(e, "RESTORE_STATE_INVALID") && input.corruption === "vhostWrapFlip" &&
      !input.packed
    ) return null;
    throw new OracleFailure(
      "vhost-roundtrip",
      `decode of 0x${vhostNum.toString(16)} threw`,
      e,
    );
  }
  if (input.corruption === "vhost") {
    const same = state.lastAvail === saved.lastAvail &&
      (!input.packed ||
        (state.availWrap === saved.availWrap && state.used === saved.used &&
          state.usedWrap === saved.usedWrap));
    if (!same) {
      throw new OracleFailure(
        "vhost-roundtrip",
        `vring base 0x${vhostNum.toString(16)} decodes to ${JSON.stringify(state)}, saved ${
          JSON.stringify(saved)
        }`,
      );
    }
  }
  return state;
}

/** Split rings: whether the rings allow `state` (the independent reference). */
function splitReference(
  input: RestoreInput,
  state: VirtqueueState,
  size: number,
  w: Workload,
  trueHeads: number[],
): boolean {
  const availIdx = w.added & 0xffff, usedIdx = w.pushedTotal & 0xffff;
  const n = state.inFlight.length;
  const distinct = new Set(state.inFlight).size === n &&
    state.inFlight.every((h) => h >= 0 && h < size);
  let consistent = distinct && ((availIdx - state.lastAvail) & 0xffff) <= size &&
    state.used === usedIdx &&
    ((state.lastAvail - state.used) & 0xffff) === n && n <= size;
  if (consistent && input.inOrder) {
    consistent = state.inFlight.every((h, i) => h === trueHeads[i]);
  }
  if (consistent && !input.inOrder) {
    // Same in-flight set (its order is free); the reference knows the true heads.
    const want = [...trueHeads].sort((a, b) => a - b).join();
    consistent = [...state.inFlight].sort((a, b) => a - b).join() === want ||
      // a rewound state (nothing in flight, lastAvail at used) is also valid: re-processing
      (n === 0 && state.lastAvail === state.used);
  }
  return consistent;
}

/**
 * Restores `state` into a fresh queue. Returns `null` when a catalogued rejection ends the run
 * (throws when the rejected state was valid).
 */
function restoreChecked(
  engine: RestoreEngine,
  fresh: () => RestorableDeviceQueue,
  state: VirtqueueState,
  input: RestoreInput,
  overtaken: boolean,
  consistent: boolean | null,
): { q: RestorableDeviceQueue; chains: Chain[] } | null {
  try {
    return engine.restore(fresh, state);
  } catch (e) {
    if (!isVirtqError(e, "RESTORE_STATE_INVALID") && !isVirtqError(e, "RESTORE_RING_MISMATCH")) {
      throw new OracleFailure(
        "uncatalogued-throw",
        "restoreState threw outside the catalogue",
        e,
      );
    }
    const packedLimit = input.packed && overtaken && isVirtqError(e, "RESTORE_RING_MISMATCH");
    if ((input.corruption === "none" && !packedLimit) || consistent === true) {
      throw new OracleFailure(
        "valid-state-rejected",
        `${JSON.stringify(state)}: ${(e as Error).message}`,
        e,
      );
    }
    return null;
  }
}

/**
 * Drain: completes every restored chain and everything still available. Returns `false` when
 * the device detected a problem (a device-side catalogue error: not silent, the run ends).
 */
function drainDevice(q: RestorableDeviceQueue, chains: Chain[], size: number): boolean {
  try {
    for (const c of chains) q.push(c, 0);
    for (let guard = 0; guard < 4 * size; guard++) {
      const c = q.pop();
      if (c === null) break;
      q.push(c, 0);
    }
    q.flush();
  } catch (e) {
    if (isVirtqError(e) && e.side === "device") return false; // detected at the first pops
    throw new OracleFailure("corrupt-state-consumed", "the device failed while draining", e);
  }
  return true;
}

/** Each outstanding token must come back exactly once, and no used element may be hostile. */
function checkReturned(
  p: Pair,
  input: RestoreInput,
  w: Workload,
  state: VirtqueueState,
  saved: VirtqueueState,
): void {
  const { returned, added } = w;
  try {
    for (let t = p.driver.getUsed(); t !== undefined; t = p.driver.getUsed()) {
      if (returned.has(t)) {
        throw new OracleFailure("corrupt-state-consumed", `token ${t} returned twice`);
      }
      returned.add(t);
    }
  } catch (e) {
    if (e instanceof OracleFailure) throw e;
    // Documented limit: after out-of-order completions a packed ring no longer shows which
    // lists were consumed, so a position moved inside that history (e.g. a flipped wrap bit of
    // a vring base) is caught by the driver (USED_ID_NOT_HEAD), not by the restore.
    if (
      input.packed && w.overtaken && input.corruption !== "none" && isVirtqError(e) &&
      e.side === "driver"
    ) return;
    throw new OracleFailure(
      "corrupt-state-consumed",
      "the driver saw a hostile used element after restore",
      e,
    );
  }
  if (returned.size !== added) {
    throw new OracleFailure(
      "corrupt-state-consumed",
      `${added - returned.size} of ${added} buffers lost after restoring ${
        JSON.stringify(state)
      } (saved ${JSON.stringify(saved)})`,
    );
  }
}

function planted(fault: string): RestoreEngine {
  switch (fault) {
    case "save-drops-inflight":
      return {
        ...REAL,
        save: (q) => {
          const s = q.saveState();
          return { ...s, inFlight: s.inFlight.slice(0, -1) };
        },
      };
    case "rewind-on-mismatch":
      return {
        ...REAL,
        restore: (fresh, state) => {
          try {
            return REAL.restore(fresh, state);
          } catch {
            const q = fresh(); // the planted bug: consume a contradicted state after a rewind
            return {
              q,
              chains: q.restoreState({
                ...state,
                lastAvail: state.used,
                availWrap: state.usedWrap,
                inFlight: [],
              }),
            };
          }
        },
      };
    case "vhost-wrap-bit-lost":
      return { ...REAL, encode: (s) => (encodeVringBase(s) & ~0x8000) >>> 0 };
  }
  throw new Error(`unknown planted fault ${fault}`);
}

/** The registered target. */
export const restoreTarget: FuzzTarget<RestoreInput> = makeRestoreTarget();
