/**
 * Real rings as fuzz seeds for the hostile-driver and hostile-device targets: states captured
 * from a Linux 6.1 guest under QEMU 7.2 (`tests/fixtures/`), each mutated by **one**
 * targeted corruption (a descriptor field, a ring index or entry, an event suppression field,
 * an indirect table entry) set to a boundary value. Plug into a target's arbitrary as one
 * branch of `fc.oneof`:
 *
 * ```ts
 * const seeds = await loadRealRingSeeds();              // top-level await in the target module
 * arbitrary: () => fc.oneof(syntheticArb, realRingArbitrary(seeds.filter((s) => s.layout === "split")))
 * run: ({ seed, corruption }) => { const s = applyCorruption(seed, corruption); placeSeedRing(s, ...) }
 * ```
 * @module
 */

import fc from "fast-check";
import { z } from "zod";
import {
  extractSeedRings,
  fixturesDir,
  fixturesSource,
  inspectQueue,
  placeSeedRing,
  type QueueReport,
  readFixture,
  seedMemory,
  seedQueueSpec,
  type SeedRingState,
} from "../../src/inspect/_internal.ts";
import type { RingLayout } from "../../src/virtio/mod.ts";
import type { GuestMemory } from "../../src/memory/mod.ts";
import { type FuzzTarget, OracleFailure } from "../target.ts";

/** Where a corruption lands. */
export type SeedArea = "desc" | "driver" | "device" | "table";

/** One targeted corruption of a seed: write `value` (`width` bytes, LE) at `offset` of `area`. */
export interface SeedCorruption {
  /** Area: descriptor table/ring, driver area, device area, or the first indirect table. */
  area: SeedArea;
  /** Byte offset inside the area. */
  offset: number;
  /** Width of the write in bytes. */
  width: 1 | 2 | 4;
  /** Value written (masked to `width`). */
  value: number;
  /** Human-readable field name, for counterexamples. */
  field: string;
}

/**
 * Loads every queue of both scenarios as seeds.
 * @param dir fixtures directory (default: `$VIRTQ_FIXTURES_DIR`, else the bundled
 * `tests/fixtures/qemu-7.2-linux-6.1`).
 * @throws InspectInputError when the fixtures are missing or invalid (the message says where).
 */
export async function loadRealRingSeeds(dir: string = fixturesDir()): Promise<SeedRingState[]> {
  const out: SeedRingState[] = [];
  for (const sc of ["scenarioA", "scenarioB"]) {
    out.push(...extractSeedRings(await readFixture(`${dir}/${sc}.index.json`), sc));
  }
  return out;
}

/** The fields one corruption can target in a seed, with their offsets and widths. */
export function seedFields(seed: SeedRingState): Omit<SeedCorruption, "value">[] {
  const f: Omit<SeedCorruption, "value">[] = [];
  const n = seed.size;
  // Prefer descriptors the device will visit: heads from the device's position on.
  for (let i = 0; i < n; i++) {
    const b = i * 16;
    f.push({ area: "desc", offset: b, width: 4, field: `desc[${i}].addr.lo` });
    f.push({ area: "desc", offset: b + 4, width: 4, field: `desc[${i}].addr.hi` });
    f.push({ area: "desc", offset: b + 8, width: 4, field: `desc[${i}].len` });
    if (seed.layout === "split") {
      f.push({ area: "desc", offset: b + 12, width: 2, field: `desc[${i}].flags` });
      f.push({ area: "desc", offset: b + 14, width: 2, field: `desc[${i}].next` });
    } else {
      f.push({ area: "desc", offset: b + 12, width: 2, field: `desc[${i}].id` });
      f.push({ area: "desc", offset: b + 14, width: 2, field: `desc[${i}].flags` });
    }
  }
  if (seed.layout === "split") {
    f.push({ area: "driver", offset: 0, width: 2, field: "avail.flags" });
    f.push({ area: "driver", offset: 2, width: 2, field: "avail.idx" });
    for (let k = 0; k < n; k++) {
      f.push({ area: "driver", offset: 4 + 2 * k, width: 2, field: `avail.ring[${k}]` });
    }
    f.push({ area: "driver", offset: 4 + 2 * n, width: 2, field: "used_event" });
    f.push({ area: "device", offset: 2, width: 2, field: "used.idx" });
    for (let k = 0; k < n; k++) {
      f.push({ area: "device", offset: 4 + 8 * k, width: 4, field: `used.ring[${k}].id` });
      f.push({ area: "device", offset: 8 + 8 * k, width: 4, field: `used.ring[${k}].len` });
    }
  } else {
    for (const area of ["driver", "device"] as const) {
      f.push({ area, offset: 0, width: 2, field: `${area}_event.off_wrap` });
      f.push({ area, offset: 2, width: 2, field: `${area}_event.flags` });
    }
  }
  const t = seed.indirectTables[0];
  if (t) {
    for (let j = 0; j < t.bytes.length / 16; j++) {
      f.push({ area: "table", offset: j * 16 + 8, width: 4, field: `indirect[${j}].len` });
      f.push({ area: "table", offset: j * 16 + 12, width: 2, field: `indirect[${j}].flags/id` });
      f.push({ area: "table", offset: j * 16 + 14, width: 2, field: `indirect[${j}].next` });
    }
  }
  return f;
}

/** Boundary values a corruption writes (sizes and index limits of the seed included). */
export function boundaryValues(seed: SeedRingState): number[] {
  const n = seed.size;
  return [0, 1, 2, 3, 4, 7, 0x80, 0x8000, 0x8080, n - 1, n, n + 1, 0x7fff, 0xffff, 0xffff_ffff];
}

/** One seed with one targeted corruption. */
export function realRingArbitrary(
  seeds: readonly SeedRingState[],
): fc.Arbitrary<{ seed: SeedRingState; corruption: SeedCorruption }> {
  // One arbitrary per seed, built once: `chain` calls its function for every generated value, and
  // rebuilding the field list (hundreds of entries) each time cost ~10% of a hostile-driver run.
  // The values drawn are the same as building it afresh.
  const perSeed = new Map<
    SeedRingState,
    fc.Arbitrary<{ seed: SeedRingState; corruption: SeedCorruption }>
  >();
  return fc.constantFrom(...seeds).chain((seed) => {
    let arb = perSeed.get(seed);
    if (arb === undefined) {
      const fields = seedFields(seed);
      arb = fc.record({
        seed: fc.constant(seed),
        corruption: fc.record({
          f: fc.constantFrom(...fields),
          value: fc.oneof(fc.constantFrom(...boundaryValues(seed)), fc.nat({ max: 0xffff_ffff })),
        }, { noNullPrototype: true }).map(({ f, value }) => ({ ...f, value })),
      }, { noNullPrototype: true });
      perSeed.set(seed, arb);
    }
    return arb;
  });
}

/** A copy of `seed` with `c` applied (the seed itself is not modified). */
export function applyCorruption(seed: SeedRingState, c: SeedCorruption): SeedRingState {
  const s: SeedRingState = {
    ...seed,
    descTable: seed.descTable.slice(),
    driverArea: seed.driverArea.slice(),
    deviceArea: seed.deviceArea.slice(),
    indirectTables: seed.indirectTables.map((t) => ({ addr: t.addr, bytes: t.bytes.slice() })),
  };
  const area = c.area === "desc"
    ? s.descTable
    : c.area === "driver"
    ? s.driverArea
    : c.area === "device"
    ? s.deviceArea
    : s.indirectTables[0]?.bytes;
  if (area === undefined || c.offset + c.width > area.length) return s;
  const dv = new DataView(area.buffer, area.byteOffset, area.length);
  if (c.width === 1) dv.setUint8(c.offset, c.value & 0xff);
  else if (c.width === 2) dv.setUint16(c.offset, c.value & 0xffff, true);
  else dv.setUint32(c.offset, c.value >>> 0, true);
  return s;
}

const memoryCache = new WeakMap<SeedRingState, GuestMemory>();

/**
 * Runs one mutant of a real ring through our device engine (from the seed's device position)
 * and the inspector's independent walker, in a self-contained memory ({@link seedMemory}).
 * Oracle: nothing throws outside the catalogue (the inspector turns every `VirtqError` into a
 * report entry), and the engine and the walker agree on every chain and on the first error.
 * @returns the inspection report.
 * @throws OracleFailure `engine-walker-disagree` naming the seed, field and value.
 */
export function checkRealRingMutant(seed: SeedRingState, c: SeedCorruption): QueueReport {
  const s = applyCorruption(seed, c);
  // One memory per seed, reused: each run rewrites the ring areas and tables (the only bytes the
  // engine's rebase and pops write), so no run sees another's state.
  let memory = memoryCache.get(seed);
  if (memory === undefined) memoryCache.set(seed, memory = seedMemory(s));
  placeSeedRing(s, memory, {
    descGpa: s.descAddr,
    driverGpa: s.driverAddr,
    deviceGpa: s.deviceAddr,
  });
  for (const t of s.indirectTables) memory.write(Number(t.addr), t.bytes);
  const r = inspectQueue(seedQueueSpec(s), {
    memory,
    ramSize: s.ramSize,
    scratchMemory: true,
    completedChains: false,
    devicePosition: {
      lastAvailIdx: s.lastAvailIdx,
      usedIdx: s.usedIdx,
      availWrap: s.availWrap,
      usedWrap: s.usedWrap,
    },
  });
  const mism = r.engine?.mismatches ?? ["the engine did not run"];
  if (mism.length > 0) {
    throw new OracleFailure(
      "engine-walker-disagree",
      `${seed.name} with ${c.field} = 0x${c.value.toString(16)}: ${mism.join("; ")}`,
    );
  }
  return r;
}

/**
 * Why the real ring seeds could not be loaded (the fixtures directory and the error), or `null`
 * when they were. `deno task fuzz` refuses to start a campaign when this is set (a campaign
 * without the real rings is a different campaign for the same seed), unless `--no-real-rings`
 * asks for synthetic inputs only.
 */
export let REAL_RING_SEEDS_ERROR: string | null = null;

/**
 * The real ring seeds of both scenarios, loaded once when this module is imported (top-level
 * await), or empty when the fixtures are missing (see {@link REAL_RING_SEEDS_ERROR}; the fuzz CLI
 * then stops with that message and `tests/inspect/inspect_fixtures_test.ts` fails naming where it
 * looked).
 */
export const REAL_RING_SEEDS: readonly SeedRingState[] = await (async () => {
  try {
    return await loadRealRingSeeds();
  } catch (e) {
    REAL_RING_SEEDS_ERROR = `real ring fixtures not loaded from ${fixturesSource()}: ${
      (e as Error).message
    }`;
    return [];
  }
})();

/** A fuzz input that is a real ring with one corruption (JSON-safe: the seed by name). */
export interface RealRingInput {
  /** The seed's name (`scenarioA/virtio-net/0`) and the corruption applied to it. */
  realRing: { seed: string; corruption: SeedCorruption };
}

const realRingSchema = z.strictObject({
  realRing: z.strictObject({
    seed: z.string().min(1),
    corruption: z.strictObject({
      area: z.enum(["desc", "driver", "device", "table"]),
      offset: z.number().int().min(0),
      width: z.union([z.literal(1), z.literal(2), z.literal(4)]),
      value: z.number().int().min(0).max(0xffff_ffff),
      field: z.string(),
    }),
  }),
});

function isRealRingInput(x: unknown): x is RealRingInput {
  return typeof x === "object" && x !== null && "realRing" in x;
}

function seedNamed(name: string): SeedRingState {
  const s = REAL_RING_SEEDS.find((x) => x.name === name);
  if (s === undefined) {
    throw new Error(
      `real ring seed "${name}" not available: fixtures looked up in ${fixturesSource()}` +
        (REAL_RING_SEEDS_ERROR ? ` (${REAL_RING_SEEDS_ERROR})` : ""),
    );
  }
  return s;
}

/**
 * Wraps a hostile-driver target so that one input in `1 + synthWeight` is a real ring of
 * `layout` (a {@link REAL_RING_SEEDS} state, `fc.constantFrom`) with one targeted corruption,
 * run through {@link checkRealRingMutant} (engine vs the inspector's walker). Other inputs, the
 * corpus format of the base target, its planted faults and `describe` are unchanged.
 * @param base the synthetic target.
 * @param layout which seeds to use.
 * @param synthWeight weight of the base arbitrary against 1 for real rings (default 4).
 */
export function withRealRingSeeds<I>(
  base: FuzzTarget<I>,
  layout: RingLayout,
  synthWeight = 4,
): FuzzTarget<I | RealRingInput> {
  const seeds = REAL_RING_SEEDS.filter((s) => s.layout === layout);
  if (seeds.length === 0 || base.usesCommands) return base as FuzzTarget<I | RealRingInput>;
  const real: fc.Arbitrary<RealRingInput> = realRingArbitrary(seeds).map((
    { seed, corruption },
  ) => ({
    realRing: { seed: seed.name, corruption },
  }));
  let realChains = 0;
  const wrapped: FuzzTarget<I | RealRingInput> = {
    name: base.name,
    description: base.description,
    arbitrary: () =>
      fc.oneof(
        { arbitrary: base.arbitrary() as fc.Arbitrary<I | RealRingInput>, weight: synthWeight },
        { arbitrary: real, weight: 1 },
      ),
    run: (input) => {
      if (isRealRingInput(input)) {
        const r = checkRealRingMutant(seedNamed(input.realRing.seed), input.realRing.corruption);
        realChains += (r.engine?.popped ?? 0) + (r.engine?.error ? 1 : 0);
      } else base.run(input);
    },
    plantedFaults: base.plantedFaults,
    // Work: the base's units plus the chains the engine popped or rejected in real rings.
    ...(base.workUnit !== undefined && base.workDone !== undefined
      ? { workUnit: base.workUnit, workDone: () => base.workDone!() + realChains }
      : {}),
  };

  if (base.encode !== undefined && base.decode !== undefined) {
    const enc = base.encode.bind(base);
    const dec = base.decode.bind(base);
    wrapped.encode = (input) => {
      if (!isRealRingInput(input)) return enc(input);
      const c = input.realRing.corruption;
      // Key order as the schema's, so that encode(decode(json)) is byte-identical.
      return {
        realRing: {
          seed: input.realRing.seed,
          corruption: {
            area: c.area,
            offset: c.offset,
            width: c.width,
            value: c.value,
            field: c.field,
          },
        },
      };
    };
    wrapped.decode = (json) => isRealRingInput(json) ? realRingSchema.parse(json) : dec(json);
  }
  if (base.describe !== undefined) {
    const d = base.describe.bind(base);
    wrapped.describe = (input) =>
      isRealRingInput(input)
        ? `real ring ${input.realRing.seed}, ${input.realRing.corruption.field} = 0x${
          input.realRing.corruption.value.toString(16)
        }`
        : d(input);
  }
  if (base.withPlantedFault !== undefined) {
    const p = base.withPlantedFault.bind(base);
    wrapped.withPlantedFault = (fault) => withRealRingSeeds(p(fault), layout, synthWeight);
  }
  return wrapped;
}
