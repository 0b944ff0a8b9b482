/**
 * Example fuzz targets for the runner's own tests (not registered in fuzz/targets/mod.ts). They
 * follow the planted-bug pattern of docs/FUZZING.md: the engine is a parameter of a factory,
 * the registered instance uses the real one, `withPlantedFault` swaps in a broken one.
 * @module
 */

import fc from "fast-check";
import { z } from "zod";
import { GuestMemory, MemoryFault } from "../../src/mod.ts";
import { type FuzzTarget, OracleFailure } from "../../fuzz/target.ts";
import { noteError } from "../../fuzz/observe.ts";

/** The engine under test of `example-copy`: write bytes at a GPA, read them back. */
export interface CopyEngine {
  /** Writes `src` at `gpa` then reads the same range into a new array. */
  roundTrip(mem: GuestMemory, gpa: number, src: Uint8Array): Uint8Array;
}

const realCopy: CopyEngine = {
  roundTrip(mem, gpa, src) {
    mem.write(gpa, src);
    const out = new Uint8Array(src.length);
    mem.read(gpa, out);
    return out;
  },
};

/** Planted bugs of `example-copy`. */
export const COPY_FAULTS: Record<string, CopyEngine> = {
  // Corrupts the byte at offset 13 of long buffers: the round-trip oracle must see it.
  "flip-byte-13": {
    roundTrip(mem, gpa, src) {
      const out = realCopy.roundTrip(mem, gpa, src);
      if (out.length > 13) out[13] ^= 0x40;
      return out;
    },
  },
  // Swallows the memory fault of an access past the end: the fault oracle must see it.
  "missed-fault": {
    roundTrip(mem, gpa, src) {
      try {
        return realCopy.roundTrip(mem, gpa, src);
      } catch {
        return src.slice();
      }
    },
  },
};

const MEM_GPA = 0x1000;
const MEM_SIZE = 0x1000;

/** Input of `example-copy`. */
export interface CopyInput {
  /** Offset from the start of guest memory (may run past its end). */
  offset: number;
  /** The payload. */
  bytes: Uint8Array;
}

const CopyJson = z.strictObject({
  offset: z.int().nonnegative(),
  hex: z.string().regex(/^([0-9a-f]{2})*$/),
});

/** Builds `example-copy` on `engine`; `name` lets tests register variants. */
export function makeCopyTarget(
  engine: CopyEngine = realCopy,
  name = "example-copy",
): FuzzTarget<CopyInput> {
  return {
    name,
    description: "example: GuestMemory write/read round-trip at hostile offsets",
    arbitrary: () =>
      fc.record({
        offset: fc.integer({ min: 0, max: MEM_SIZE + 64 }),
        bytes: fc.uint8Array({ minLength: 1, maxLength: 64, size: "max" }),
      }),
    run({ offset, bytes }) {
      const mem = new GuestMemory([{ gpa: MEM_GPA, size: MEM_SIZE }]);
      const inside = offset + bytes.length <= MEM_SIZE;
      let out: Uint8Array;
      try {
        out = engine.roundTrip(mem, MEM_GPA + offset, bytes);
      } catch (e) {
        if (e instanceof MemoryFault && !inside) {
          noteError({ code: "MEMORY_FAULT", reason: e.kind });
          return;
        }
        throw new OracleFailure("unexpected-fault", `offset ${offset} len ${bytes.length}`, e);
      }
      if (!inside) {
        throw new OracleFailure(
          "missed-fault",
          `access [${offset}, ${
            offset + bytes.length
          }) past the end of ${MEM_SIZE} bytes succeeded`,
        );
      }
      for (let i = 0; i < bytes.length; i++) {
        if (out[i] !== bytes[i]) {
          throw new OracleFailure("round-trip", `byte ${i}: wrote ${bytes[i]}, read ${out[i]}`);
        }
      }
    },
    encode: ({ offset, bytes }) => ({
      offset,
      hex: Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(""),
    }),
    decode(json) {
      const { offset, hex } = CopyJson.parse(json);
      return { offset, bytes: Uint8Array.from(hex.match(/../g) ?? [], (h) => parseInt(h, 16)) };
    },
    plantedFaults: Object.keys(COPY_FAULTS),
    withPlantedFault: (fault) => makeCopyTarget(COPY_FAULTS[fault], name),
  };
}

/** The engine of `example-index`: a 16-bit free-running ring index (like avail idx, §2.7.6). */
export interface IndexEngine {
  /** Advances `idx` by `n`, wrapping at 2^16. */
  advance(idx: number, n: number): number;
}

const realIndex: IndexEngine = { advance: (idx, n) => (idx + n) & 0xffff };

/** Planted bugs of `example-index`. */
export const INDEX_FAULTS: Record<string, IndexEngine> = {
  "no-wrap": { advance: (idx, n) => idx + n },
};

class Model {
  idx = 0n;
}
class Real {
  idx = 0;
  constructor(readonly engine: IndexEngine) {}
}

class Advance implements fc.Command<Model, Real> {
  constructor(readonly n: number) {}
  check() {
    return true;
  }
  run(m: Model, r: Real) {
    m.idx = (m.idx + BigInt(this.n)) % 65536n;
    r.idx = r.engine.advance(r.idx, this.n);
    if (BigInt(r.idx) !== m.idx) {
      throw new OracleFailure("index-model", `idx ${r.idx}, model says ${m.idx}`);
    }
  }
  toString() {
    return `advance(${this.n})`;
  }
}

type IndexCommands = Iterable<fc.Command<Model, Real>>;

/** Builds `example-index`, a model-based (`fc.commands`) target. */
export function makeIndexTarget(engine: IndexEngine = realIndex): FuzzTarget<IndexCommands> {
  const arb = (replayPath?: string) =>
    fc.commands([fc.integer({ min: 0, max: 0x7fff }).map((n) => new Advance(n))], {
      maxCommands: 20,
      replayPath,
    });
  return {
    name: "example-index",
    description: "example: 16-bit ring index against a bigint model (fc.commands)",
    arbitrary: () => arb(),
    replayArbitrary: (p) => arb(p),
    usesCommands: true,
    run(cmds) {
      fc.modelRun(() => ({ model: new Model(), real: new Real(engine) }), cmds);
    },
    plantedFaults: Object.keys(INDEX_FAULTS),
    withPlantedFault: (fault) => makeIndexTarget(INDEX_FAULTS[fault]),
  };
}

/** The example registry (a module exporting `TARGETS`, as workers expect). */
// deno-lint-ignore no-explicit-any
export const TARGETS: readonly FuzzTarget<any>[] = [makeCopyTarget(), makeIndexTarget()];
