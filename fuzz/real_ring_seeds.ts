/**
 * Real rings as fuzz seeds for the hostile-driver and hostile-device targets: states captured
 * from a Linux 6.1 guest under QEMU 7.2 (`../shared/fixtures/`), each mutated by **one**
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
import { fixturesDir, readFixture } from "../tools/fixture_files.ts";
import {
  extractSeedRings,
  seedMemory,
  seedQueueSpec,
  type SeedRingState,
} from "../src/inspect/seeds.ts";
import { inspectQueue, type QueueReport } from "../src/inspect/inspect_queue.ts";
import { OracleFailure } from "./target.ts";

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
 * @param dir fixtures directory (default: `../shared/fixtures/qemu-7.2-linux-6.1` or
 * `$VIRTQ_FIXTURES_DIR`).
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
  return fc.constantFrom(...seeds).chain((seed) => {
    const fields = seedFields(seed);
    return fc.record({
      seed: fc.constant(seed),
      corruption: fc.record({
        f: fc.constantFrom(...fields),
        value: fc.oneof(fc.constantFrom(...boundaryValues(seed)), fc.nat({ max: 0xffff_ffff })),
      }, { noNullPrototype: true }).map(({ f, value }) => ({ ...f, value })),
    }, { noNullPrototype: true });
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
  const r = inspectQueue(seedQueueSpec(s), {
    memory: seedMemory(s),
    ramSize: s.ramSize,
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
