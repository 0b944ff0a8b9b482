/**
 * The inspector on hostile versions of real rings: each catalogue code our device (or driver)
 * raises is triggered by one minimal corruption of a captured Linux ring, and a fast-check
 * property (fixed seed) checks on one-corruption mutants that our device engine and the
 * inspector's walker never disagree and nothing throws outside the catalogue.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { fixturesDir, readFixture } from "../../src/inspect/fixture_files.ts";
import type { Fixture, FixtureQueue } from "../../src/inspect/fixture.ts";
import { inspectQueue } from "../../src/inspect/inspect_queue.ts";
import { cloneGuestMemory } from "../../src/inspect/engine_decode.ts";
import {
  extractSeedRings,
  placeSeedRing,
  seedMemory,
  seedQueueSpec,
  type SeedRingState,
} from "../../src/inspect/seeds.ts";
import { checkRealRingMutant, realRingArbitrary } from "../../fuzz/support/real_ring_seeds.ts";
import type { GuestMemory } from "../../src/memory/guest_memory.ts";
import type { DecodeError } from "../../src/inspect/decoded_chain.ts";
import { VIRTQ_ERRORS, type VirtqErrorCode } from "../../src/virtio/errors.ts";

const DIR = fixturesDir();
let present = false;
try {
  present = Deno.statSync(`${DIR}/scenarioA.index.json`).isFile;
} catch { /* reported by inspect_fixtures_test.ts, which fails when fixtures are missing */ }

const fixtures = new Map<string, Promise<Fixture>>();
function fixture(sc: "scenarioA" | "scenarioB"): Promise<Fixture> {
  let p = fixtures.get(sc);
  if (!p) fixtures.set(sc, p = readFixture(`${DIR}/${sc}.index.json`));
  return p;
}

function q(fx: Fixture, device: string, queue: number): FixtureQueue {
  const r = fx.queues.find((x) => x.device === device && x.queue === queue);
  assert.ok(r);
  return r;
}

/** Inspects `queue` after `mutate` wrote into a copy of the image; returns the error codes. */
function codesAfter(
  fx: Fixture,
  queue: FixtureQueue,
  mutate: (m: GuestMemory, a: { desc: number; driver: number; device: number }) => void,
): { codes: DecodeError["code"][]; mismatches: string[] } {
  const m = cloneGuestMemory(fx.memory);
  mutate(m, {
    desc: Number(queue.descAddr),
    driver: Number(queue.driverAddr),
    device: Number(queue.deviceAddr),
  });
  const r = inspectQueue(queue, { memory: m, ramSize: fx.ramSize, positions: "memory" });
  return { codes: r.errors.map((e) => e.code), mismatches: r.engine?.mismatches ?? [] };
}

if (present) {
  Deno.test("inspector on real rings: one corruption, one catalogue code (split)", async () => {
    const fx = await fixture("scenarioA");
    const net = q(fx, "virtio-net", 0); // 247 outstanding receive buffers from avail position 9
    const cases: [string, VirtqErrorCode, Parameters<typeof codesAfter>[2]][] = [
      ["head >= size", "AVAIL_HEAD_OUT_OF_RANGE", (m, a) => m.writeU16(a.driver + 4 + 2 * 9, 256)],
      ["avail idx jump", "AVAIL_IDX_JUMP", (m, a) => m.writeU16(a.driver + 2, 9 + 257)],
      ["same head twice", "HEAD_IN_USE", (m, a) => m.writeU16(a.driver + 4 + 2 * 10, 9)],
      ["zero length", "DESC_ZERO_LENGTH", (m, a) => m.writeU32(a.desc + 16 * 9 + 8, 0)],
      ["self loop", "DESC_CHAIN_LOOP", (m, a) => {
        m.writeU16(a.desc + 16 * 9 + 12, 3);
        m.writeU16(a.desc + 16 * 9 + 14, 9);
      }],
      ["next out of range", "DESC_NEXT_OUT_OF_RANGE", (m, a) => {
        m.writeU16(a.desc + 16 * 9 + 12, 3);
        m.writeU16(a.desc + 16 * 9 + 14, 256);
      }],
      ["readable after writable", "DESC_READABLE_AFTER_WRITABLE", (m, a) => {
        m.writeU16(a.desc + 16 * 9 + 12, 3);
        m.writeU16(a.desc + 16 * 9 + 14, 10);
        m.writeU16(a.desc + 16 * 10 + 12, 0);
      }],
      [
        "buffer beyond RAM",
        "DESC_BUFFER_FAULT",
        (m, a) => m.writeU64(a.desc + 16 * 9, 0x4000_0000),
      ],
      [
        "addr + len wraps",
        "DESC_ADDR_WRAP",
        (m, a) => m.writeU64(a.desc + 16 * 9, 0xffff_ffff_ffff_fff0n),
      ],
      ["indirect len 0", "INDIRECT_LEN_ZERO", (m, a) => {
        m.writeU16(a.desc + 16 * 9 + 12, 4);
        m.writeU32(a.desc + 16 * 9 + 8, 0);
      }],
      ["indirect len 17", "INDIRECT_LEN_MISALIGNED", (m, a) => {
        m.writeU16(a.desc + 16 * 9 + 12, 4);
        m.writeU32(a.desc + 16 * 9 + 8, 17);
      }],
      ["indirect + next", "INDIRECT_WITH_NEXT", (m, a) => m.writeU16(a.desc + 16 * 9 + 12, 5)],
      ["used id >= size", "USED_ID_OUT_OF_RANGE", (m, a) => m.writeU32(a.device + 4 + 8 * 8, 256)],
      // Used position 8 returns head 8 (1536 writable bytes, not re-used since).
      [
        "used len > capacity",
        "USED_LEN_EXCEEDS_CAPACITY",
        (m, a) => m.writeU32(a.device + 8 + 8 * 8, 1537),
      ],
    ];
    for (const [what, code, mutate] of cases) {
      const r = codesAfter(fx, net, mutate);
      assert.ok(r.codes.includes(code), `${what}: expected ${code}, got ${r.codes.join(",")}`);
      assert.deepEqual(r.mismatches, [], `${what}: engine and walker disagree`);
    }
    // Activation errors: the engine refuses the queue, the inspector says why, chains not reached.
    for (
      const [what, spec, code] of [
        [
          "used ring misaligned",
          { ...net, deviceAddr: Number(net.deviceAddr) + 2 },
          "RING_MISALIGNED",
        ],
        ["size not a power of 2", { ...net, size: 255 }, "QUEUE_SIZE_INVALID"],
      ] as const
    ) {
      const r = inspectQueue(spec, { memory: fx.memory, ramSize: fx.ramSize });
      assert.ok(r.errors.some((e) => e.code === code), `${what}: ${r.errors.map((e) => e.code)}`);
      assert.deepEqual(r.engine?.mismatches, [], what);
      assert.equal(r.engine?.popped, 0);
    }
    // A ring page the capture did not keep: RING_UNMAPPED, not zeros.
    const moved = { ...net, driverAddr: 0x100000 };
    const r = inspectQueue(moved, { memory: fx.memory, ramSize: fx.ramSize });
    assert.deepEqual(r.errors.map((e) => e.code), ["RING_UNMAPPED"]);
  });

  Deno.test("inspector on real rings: one corruption, one catalogue code (packed)", async () => {
    const fx = await fixture("scenarioB");
    const net = q(fx, "virtio-net", 0); // 247 outstanding receive buffers from slot 9, wrap 1
    const cases: [string, VirtqErrorCode, Parameters<typeof codesAfter>[2]][] = [
      ["zero length", "DESC_ZERO_LENGTH", (m, a) => m.writeU32(a.desc + 16 * 9 + 8, 0)],
      [
        "buffer beyond RAM",
        "DESC_BUFFER_FAULT",
        (m, a) => m.writeU64(a.desc + 16 * 9, 0x4000_0000),
      ],
      ["indirect len 0", "INDIRECT_LEN_ZERO", (m, a) => {
        m.writeU16(a.desc + 16 * 9 + 14, 0x84);
        m.writeU32(a.desc + 16 * 9 + 8, 0);
      }],
      ["list into an unavailable slot", "PACKED_CHAIN_UNAVAILABLE", (m, a) => {
        m.writeU16(a.desc + 16 * 9 + 14, 0x83); // AVAIL | WRITE | NEXT
        m.writeU16(a.desc + 16 * 10 + 14, 0x8002); // slot 10 not available in lap 1
      }],
      ["readable after writable", "DESC_READABLE_AFTER_WRITABLE", (m, a) => {
        m.writeU16(a.desc + 16 * 9 + 14, 0x83);
        m.writeU16(a.desc + 16 * 10 + 14, 0x80);
      }],
      ["used id >= size", "USED_ID_OUT_OF_RANGE", (m, a) => m.writeU16(a.desc + 16 * 3 + 12, 256)],
    ];
    for (const [what, code, mutate] of cases) {
      const r = codesAfter(fx, net, mutate);
      assert.ok(r.codes.includes(code), `${what}: expected ${code}, got ${r.codes.join(",")}`);
      assert.deepEqual(r.mismatches, [], `${what}: engine and walker disagree`);
    }
  });

  Deno.test("seeds: every queue extracts, and replays through the engine at a new place", async () => {
    const all: SeedRingState[] = [];
    for (const sc of ["scenarioA", "scenarioB"] as const) {
      all.push(...extractSeedRings(await fixture(sc), sc));
    }
    assert.equal(all.length, 22);
    const fx = await fixture("scenarioA");
    const seed = all.find((s) => s.name === "scenarioA/virtio-blk/0")!;
    assert.equal(seed.indirectTables.length, 1);
    assert.equal(seed.indirectTables[0].bytes.length, 48);
    // Relocate serial q2 (32 outstanding) into a free page and inspect it there.
    const s2 = all.find((s) => s.name === "scenarioA/virtio-serial/2")!;
    assert.equal(s2.outstanding, 32);
    const m = cloneGuestMemory(fx.memory);
    m.addRegion({ gpa: 0x0f00_0000, size: 0x4000 });
    const at = placeSeedRing(s2, m, {
      descGpa: 0x0f00_0000,
      driverGpa: 0x0f00_1000,
      deviceGpa: 0x0f00_2000,
      tablesGpa: 0x0f00_3000,
    });
    const r = inspectQueue({
      device: "seed",
      path: s2.name,
      queue: 0,
      size: s2.size,
      layout: s2.layout,
      descAddr: at.descAddr,
      driverAddr: at.driverAddr,
      deviceAddr: at.deviceAddr,
      features: s2.features,
    }, { memory: m, ramSize: fx.ramSize });
    assert.equal(r.outstanding.length, 32);
    assert.equal(r.engine?.popped, 32);
    assert.deepEqual(r.errors, []);
  });

  Deno.test("property: on one-corruption mutants of real rings, engine and walker agree", async () => {
    const seeds: SeedRingState[] = [];
    for (const sc of ["scenarioA", "scenarioB"] as const) {
      seeds.push(...extractSeedRings(await fixture(sc), sc));
    }
    // Unmutated seeds in their self-contained memory decode as in the full image.
    for (const s of seeds) {
      const r = checkRealRingMutant(s, {
        area: "desc",
        offset: 0,
        width: 1,
        value: s.descTable[0],
        field: "none",
      });
      assert.equal(r.outstanding.length, s.outstanding, s.name);
      assert.deepEqual(r.errors, [], s.name);
    }
    fc.assert(
      fc.property(realRingArbitrary(seeds), ({ seed, corruption }) => {
        checkRealRingMutant(seed, corruption);
      }),
      { seed: 0x5eed, numRuns: 300 },
    );
  });
}

if (present) {
  Deno.test("property: random bytes over real ring areas never crash the inspector", async () => {
    const seeds: SeedRingState[] = [];
    for (const sc of ["scenarioA", "scenarioB"] as const) {
      seeds.push(...extractSeedRings(await fixture(sc), sc));
    }
    const arb = fc.constantFrom(...seeds).chain((seed) =>
      fc.record({
        seed: fc.constant(seed),
        area: fc.constantFrom("descTable" as const, "driverArea" as const, "deviceArea" as const),
        at: fc.nat(),
        bytes: fc.uint8Array({ minLength: 1, maxLength: 64 }),
      }, { noNullPrototype: true })
    );
    fc.assert(
      fc.property(arb, ({ seed, area, at, bytes }) => {
        const s = { ...seed, [area]: seed[area].slice() };
        const target = s[area];
        target.set(
          bytes.subarray(0, target.length),
          at % target.length > target.length - bytes.length
            ? Math.max(0, target.length - bytes.length)
            : at % target.length,
        );
        const r = inspectQueue(seedQueueSpec(s), {
          memory: seedMemory(s),
          ramSize: s.ramSize,
          scratchMemory: true,
          positions: "memory",
        });
        // Every problem is a catalogued code; the engine and the walker agree.
        for (const e of r.errors) assert.ok(e.code in VIRTQ_ERRORS, e.code);
        assert.deepEqual(r.engine?.mismatches ?? [], [], `${seed.name} ${area}@${at}`);
      }),
      { seed: 0xb17e, numRuns: 200 },
    );
  });
}
