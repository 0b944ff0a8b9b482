/**
 * Fuzz target `viommu-stack`: the full stack under random map/unmap traffic: the driver's
 * `virtio-iommu` DmaApi sends MAP/UNMAP over the requestq (our split ring) to the IOMMU device,
 * and a loopback device behind the endpoint serves a split virtqueue whose driver maps every
 * ring area and buffer through that DmaApi (so each buffer costs a MAP and an UNMAP) and whose
 * device translates every address through the endpoint's `DmaAddressSpace`.
 *
 * Oracles (the driver's shadow of what it mapped is the reference):
 * - `data-intact`: a buffer sent through the loopback queue comes back byte for byte, with the
 *   used length the loopback promises;
 * - `translation`: an access at any bus address translates iff a live mapping (rounded to the
 *   granule, as the driver maps whole pages) covers it with the right permission, to the GPA the
 *   shadow predicts; otherwise it is a `DmaFault`;
 * - `mapping-set`: the device's mapping set equals the driver's shadow (plus the ring areas'
 *   coherent mappings) after every operation.
 * @module
 */

import fc from "fast-check";
import { type FuzzTarget, OracleFailure } from "../target.ts";
import {
  createQueuePair,
  createViommuStack,
  DMA_ACCESS_READ,
  DMA_ACCESS_WRITE,
  type DmaDirection,
  DmaFault,
  DmaTranslation,
  featureMask,
  GuestMemory,
  LoopbackDevice,
  SgList,
  VIRTIO_F_ACCESS_PLATFORM,
  VIRTIO_F_VERSION_1,
} from "../../src/mod.ts";

const PAGE = 0x1000;
const BUF_BASE = 0x10000;
const BUF_SIZE = 0x40000;
const STAGING = 0x80000;
const RING = 0xa0000;

/** One operation of the stack target. */
export type ViommuStackOp =
  | { readonly op: "map"; readonly off: number; readonly len: number; readonly dir: DmaDirection }
  | { readonly op: "unmap"; readonly pick: number }
  | {
    readonly op: "loop";
    readonly src: number;
    readonly dst: number;
    readonly len: number;
    readonly seed: number;
  }
  | { readonly op: "probe"; readonly bus: number; readonly near: boolean; readonly write: boolean };

interface Live {
  bus: number;
  gpa: number;
  len: number;
  dir: DmaDirection;
}

function run(ops: readonly ViommuStackOp[]): void {
  const mem = GuestMemory.flat(0x100000);
  const s = createViommuStack({ memory: mem, stagingGpa: STAGING, config: { bypass: 0 } });
  const pair = createQueuePair<number>({
    memory: mem,
    size: 16,
    ringGpa: RING,
    dmaApi: s.api,
    dmaSpace: s.space,
    features: featureMask(VIRTIO_F_VERSION_1, VIRTIO_F_ACCESS_PLATFORM),
  });
  const loop = new LoopbackDevice(pair.device);
  const ringMaps = s.device.domainMappings(1) ?? [];
  const ringPages = ringMaps.map((m) => Number(m.virtStart));
  // The rings' coherent mappings are part of the shadow: bidirectional, page-rounded.
  const ringLive: Live[] = ringMaps.map((m) => ({
    bus: Number(m.virtStart),
    gpa: Number(m.physStart),
    len: Number(m.virtEnd) - Number(m.virtStart) + 1,
    dir: 0,
  }));
  const rd = new SgList(1), wr = new SgList(1);
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
      case "loop": {
        const n = o.len;
        const src = BUF_BASE + (o.src % (BUF_SIZE / 2 - n));
        const dst = BUF_BASE + BUF_SIZE / 2 + (o.dst % (BUF_SIZE / 2 - n));
        const pattern = new Uint8Array(n);
        for (let i = 0; i < n; i++) pattern[i] = (o.seed + i * 31) & 0xff;
        mem.write(src, pattern);
        mem.fill(dst, n, 0);
        pair.driver.add(rd.clear().push(src, n), wr.clear().push(dst, n), k);
        pair.driver.kick();
        if (loop.process() !== 1 || loop.error !== null) {
          throw new OracleFailure(
            "data-intact",
            `op ${k}: loopback did not complete: ${loop.error}`,
          );
        }
        const t = pair.driver.getUsed();
        if (t !== k || pair.driver.usedLen !== n) {
          throw new OracleFailure(
            "data-intact",
            `op ${k}: used token ${t} len ${pair.driver.usedLen}`,
          );
        }
        const got = mem.view(dst, n);
        for (let i = 0; i < n; i++) {
          if (got[i] !== pattern[i]) {
            throw new OracleFailure("data-intact", `op ${k}: byte ${i} of ${n} differs`);
          }
        }
        break;
      }
      case "probe": {
        const access = o.write ? DMA_ACCESS_WRITE : DMA_ACCESS_READ;
        // `near`: an address inside (or just past) a live mapping, the interesting cases.
        const bus = o.near && live.length > 0
          ? live[o.bus % live.length].bus + (o.bus % (live[o.bus % live.length].len + PAGE))
          : o.bus;
        const cover = [...ringLive, ...live].find((m) => {
          const lo = Math.floor(m.bus / PAGE) * PAGE;
          const hi = Math.ceil((m.bus + m.len) / PAGE) * PAGE;
          return bus >= lo && bus < hi;
        });
        const allowed = cover !== undefined &&
          (cover.dir === 0 || (cover.dir === 1 ? !o.write : o.write));
        let gpa = -1;
        try {
          s.space.translate(bus, 1, access, out);
          gpa = out.gpa;
        } catch (e) {
          if (!(e instanceof DmaFault)) throw e;
        }
        if (allowed && gpa !== cover!.gpa + (bus - cover!.bus)) {
          throw new OracleFailure("translation", `op ${k}: bus ${bus} gave GPA ${gpa}`);
        }
        if (!allowed && gpa !== -1) {
          throw new OracleFailure(
            "translation",
            `op ${k}: bus ${bus} translated without a mapping`,
          );
        }
        break;
      }
    }
    const shadow = [...ringPages, ...live.map((m) => Math.floor(m.bus / PAGE) * PAGE)]
      .sort((a, b) => a - b).join();
    const dev = (s.device.domainMappings(1) ?? []).map((m) => Number(m.virtStart)).join();
    if (shadow !== dev) {
      throw new OracleFailure("mapping-set", `op ${k}: device [${dev}] vs shadow [${shadow}]`);
    }
  });
}

/** The `viommu-stack` target. */
export const viommuStackTarget: FuzzTarget<ViommuStackOp[]> = {
  name: "viommu-stack",
  description: "driver DmaApi + virtio-iommu + loopback queue: data intact, faults outside",
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
          op: fc.constant("loop" as const),
          src: fc.nat(),
          dst: fc.nat(),
          len: fc.integer({ min: 1, max: 3 * PAGE }),
          seed: fc.nat(255),
        }, { noNullPrototype: true }),
        fc.record({
          op: fc.constant("probe" as const),
          bus: fc.integer({ min: 0, max: 0x80000 }),
          near: fc.boolean(),
          write: fc.boolean(),
        }, { noNullPrototype: true }),
      ),
      { minLength: 1, maxLength: 80, size: "max" },
    ),
  run,
};
