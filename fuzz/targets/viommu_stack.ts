/**
 * Fuzz target `viommu-stack`: the full stack under random map/unmap traffic: the driver's
 * `virtio-iommu` DmaApi sends MAP/UNMAP to the device, and a loopback-style device model behind
 * the endpoint copies buffers through its `DmaAddressSpace` (every byte translated).
 *
 * Oracles (the driver's shadow of what it mapped is the reference):
 * - `data-intact`: a copy from a live device-readable mapping to a live device-writable one
 *   delivers exactly the source bytes at the destination GPA;
 * - `translation`: an access at any bus address translates iff a live mapping (rounded to the
 *   granule, as the driver maps whole pages) covers it with the right permission, to the GPA the
 *   shadow predicts; otherwise it is a `DmaFault`;
 * - `mapping-set`: the device's mapping set equals the driver's shadow after every operation.
 * @module
 */

import fc from "fast-check";
import { type FuzzTarget, OracleFailure } from "../target.ts";
import {
  createViommuStack,
  DMA_ACCESS_READ,
  DMA_ACCESS_WRITE,
  type DmaAddressSpace,
  type DmaDirection,
  DmaFault,
  DmaTranslation,
  GuestMemory,
  type U64,
} from "../../src/mod.ts";

const PAGE = 0x1000;
const BUF_BASE = 0x10000;
const BUF_SIZE = 0x40000;
const STAGING = 0x80000;

/** One operation of the stack target. */
export type ViommuStackOp =
  | { readonly op: "map"; readonly off: number; readonly len: number; readonly dir: DmaDirection }
  | { readonly op: "unmap"; readonly pick: number }
  | {
    readonly op: "copy";
    readonly src: number;
    readonly dst: number;
    readonly len: number;
    readonly seed: number;
  }
  | { readonly op: "probe"; readonly bus: number; readonly write: boolean };

interface Live {
  bus: number;
  gpa: number;
  len: number;
  dir: DmaDirection;
}

/** Copies `len` bytes device-side from bus `src` to bus `dst`, translating every piece. */
function deviceCopy(space: DmaAddressSpace, mem: GuestMemory, src: U64, dst: U64, len: number) {
  const tr = new DmaTranslation();
  const tw = new DmaTranslation();
  let done = 0;
  while (done < len) {
    space.translate(Number(src) + done, len - done, DMA_ACCESS_READ, tr);
    space.translate(Number(dst) + done, tr.length, DMA_ACCESS_WRITE, tw);
    mem.copy(tw.gpa, tr.gpa, tw.length);
    done += tw.length;
  }
}

function run(ops: readonly ViommuStackOp[]): void {
  const mem = GuestMemory.flat(0x100000);
  const s = createViommuStack({ memory: mem, stagingGpa: STAGING, config: { bypass: 0 } });
  const live: Live[] = [];
  const out = new DmaTranslation();
  ops.forEach((o, k) => {
    switch (o.op) {
      case "map": {
        const gpa = BUF_BASE + (o.off % (BUF_SIZE - o.len));
        const bus = Number(s.api.map(gpa, o.len, o.dir));
        live.push({ bus, gpa, len: o.len, dir: o.dir });
        break;
      }
      case "unmap": {
        if (live.length === 0) return;
        const [m] = live.splice(o.pick % live.length, 1);
        s.api.unmap(m.bus, m.len, m.dir);
        break;
      }
      case "copy": {
        const srcs = live.filter((m) => m.dir !== 2);
        const dsts = live.filter((m) => m.dir !== 1);
        if (srcs.length === 0 || dsts.length === 0) return;
        const a = srcs[o.src % srcs.length], b = dsts[o.dst % dsts.length];
        const n = Math.min(o.len, a.len, b.len);
        const pattern = new Uint8Array(n);
        for (let i = 0; i < n; i++) pattern[i] = (o.seed + i * 31) & 0xff;
        mem.write(a.gpa, pattern);
        deviceCopy(s.space, mem, a.bus, b.bus, n);
        const got = mem.view(b.gpa, n);
        for (let i = 0; i < n; i++) {
          if (got[i] !== pattern[i]) {
            throw new OracleFailure("data-intact", `op ${k}: byte ${i} of ${n} differs`);
          }
        }
        break;
      }
      case "probe": {
        const access = o.write ? DMA_ACCESS_WRITE : DMA_ACCESS_READ;
        const cover = live.find((m) => {
          const lo = Math.floor(m.bus / PAGE) * PAGE;
          const hi = Math.ceil((m.bus + m.len) / PAGE) * PAGE;
          return o.bus >= lo && o.bus < hi;
        });
        const allowed = cover !== undefined &&
          (cover.dir === 0 || (cover.dir === 1 ? !o.write : o.write));
        let gpa = -1;
        try {
          s.space.translate(o.bus, 1, access, out);
          gpa = out.gpa;
        } catch (e) {
          if (!(e instanceof DmaFault)) throw e;
        }
        if (allowed && gpa !== cover!.gpa + (o.bus - cover!.bus)) {
          throw new OracleFailure("translation", `op ${k}: bus ${o.bus} gave GPA ${gpa}`);
        }
        if (!allowed && gpa !== -1) {
          throw new OracleFailure(
            "translation",
            `op ${k}: bus ${o.bus} translated without a mapping`,
          );
        }
        break;
      }
    }
    const shadow = live.map((m) => Math.floor(m.bus / PAGE) * PAGE).sort((a, b) => a - b).join();
    const dev = (s.device.domainMappings(1) ?? []).map((m) => Number(m.virtStart)).join();
    if (shadow !== dev) {
      throw new OracleFailure("mapping-set", `op ${k}: device [${dev}] vs shadow [${shadow}]`);
    }
  });
}

/** The `viommu-stack` target. */
export const viommuStackTarget: FuzzTarget<ViommuStackOp[]> = {
  name: "viommu-stack",
  description: "driver DmaApi + virtio-iommu + a copying device: data intact, faults outside",
  arbitrary: () =>
    fc.array(
      fc.oneof(
        fc.record({
          op: fc.constant("map" as const),
          off: fc.nat(BUF_SIZE),
          len: fc.integer({ min: 1, max: 3 * PAGE }),
          dir: fc.constantFrom<DmaDirection>(0, 1, 2),
        }, { noNullPrototype: true }),
        fc.record({ op: fc.constant("unmap" as const), pick: fc.nat() }, { noNullPrototype: true }),
        fc.record({
          op: fc.constant("copy" as const),
          src: fc.nat(),
          dst: fc.nat(),
          len: fc.integer({ min: 1, max: 3 * PAGE }),
          seed: fc.nat(255),
        }, { noNullPrototype: true }),
        fc.record({
          op: fc.constant("probe" as const),
          bus: fc.integer({ min: 0, max: 0x80000 }),
          write: fc.boolean(),
        }, { noNullPrototype: true }),
      ),
      { minLength: 1, maxLength: 80 },
    ),
  run,
};
