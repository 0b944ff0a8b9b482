/**
 * Prediction: one DMA traced through the two views alone, layer by layer (the driver's mapping
 * layers, then the device's translation layers), over one instance of the device's
 * {@link PlatformAssembly}. The trace is the basis of the explanation; the verdict it predicts
 * is compared with the ring run's.
 *
 * @module
 */

import { hex64, MemoryFault, type U64 } from "../memory/mod.ts";
import {
  DMA_ACCESS_READ,
  DMA_ACCESS_WRITE,
  DMA_FROM_DEVICE,
  DMA_TO_DEVICE,
  type DmaDirection,
  DmaFault,
  DmaMapError,
  DmaTranslation,
} from "../dma/mod.ts";
import type { SgList } from "../virtio/mod.ts";
import type { PlatformInstance } from "./assembly.ts";
import {
  align4k,
  equalBytes,
  type Outcome,
  outcomeOf,
  pattern,
  segments,
  type TraceStep,
} from "./outcome.ts";
import type { DevicePlan } from "./policy_types.ts";
import type { Topology } from "./topology_types.ts";

/** What {@link predict} returns. */
export interface Prediction {
  /** The predicted verdict. */
  outcome: Outcome;
  /** The traced DMA, layer by layer. */
  trace: TraceStep[];
  /** Where the driver's and the device's views part, or `null`. */
  partsAt: string | null;
}

/**
 * Traces one DMA (the rings, then one device-readable and one device-writable buffer) through
 * platform instance `v` of device `plan` of `t`, and predicts the verdict.
 */
export function predict(t: Topology, plan: DevicePlan, v: PlatformInstance): Prediction {
  const tracer = new Tracer(t, plan, v);
  const outcome = tracer.run();
  let partsAt = tracer.partsAt;
  if (outcome.verdict === "fault" && partsAt === null) {
    partsAt = `layer "${outcome.layer}" cannot handle what the driver programmed`;
  }
  if (outcome.verdict === "ok") partsAt = null;
  return { outcome, trace: tracer.trace, partsAt };
}

interface Mapped {
  /** Addresses: the GPA, (the bounce slot,) the bus address. */
  addrs: U64[];
  /** Name of the layer that produced each address after the first. */
  names: string[];
}

/** A buffer as mapped: its first segment's addresses and the segmentation. */
interface MappedBuffer {
  first: Mapped;
  seg: SgList;
}

class Tracer {
  readonly trace: TraceStep[] = [];
  partsAt: string | null = null;
  readonly #t0 = new DmaTranslation();
  readonly #baseName: string;

  constructor(readonly t: Topology, readonly plan: DevicePlan, readonly v: PlatformInstance) {
    this.#baseName = v.base.name;
  }

  get #lastLayer(): string {
    return this.v.spaceLayers.at(-1)!.name;
  }

  /** The predicted verdict (a DMA fault anywhere is the `fault` verdict). */
  run(): Outcome {
    try {
      return this.#dma();
    } catch (e) {
      const o = outcomeOf(e);
      if (o) return o;
      throw e;
    }
  }

  /** The driver maps `[gpa, gpa + len)` through its layers; each step joins the trace. */
  mapThrough(gpa: number, len: number, dir: DmaDirection, coherent: boolean, what: string): Mapped {
    const v = this.v, baseName = this.#baseName;
    try {
      if (coherent) {
        const b = v.api.mapCoherent(gpa, len);
        this.trace.push({
          side: "driver",
          layer: baseName,
          from: gpa,
          to: b,
          note: `${what}: mapCoherent${v.bounce ? " (coherent memory is not bounced)" : ""}`,
        });
        return { addrs: [gpa, b], names: [baseName] };
      }
      const b = v.api.map(gpa, len, dir);
      if (v.bounce) {
        const slot = v.bounce.inner.busToGpa(b);
        this.trace.push({
          side: "driver",
          layer: v.bounce.name,
          from: gpa,
          to: slot,
          note: `${what}: bounce into a shared slot`,
        });
        this.trace.push({
          side: "driver",
          layer: baseName,
          from: slot,
          to: b,
          note: `${what}: map the slot`,
        });
        return { addrs: [gpa, slot, b], names: [v.bounce.name, baseName] };
      }
      this.trace.push({
        side: "driver",
        layer: v.api.name,
        from: gpa,
        to: b,
        note: `${what}: map`,
      });
      return { addrs: [gpa, b], names: [v.api.name] };
    } catch (e) {
      const layer = e instanceof DmaMapError ? e.mode : v.api.name;
      this.trace.push({
        side: "driver",
        layer,
        from: gpa,
        to: null,
        note: `${what}: ${(e as Error).message}`,
      });
      throw e;
    }
  }

  /** The device translates `bus` through its layers down to RAM; returns every address. */
  translateThrough(bus: U64, len: number, access: number, what: string): U64[] {
    const t0 = this.#t0;
    const addrs: U64[] = [bus];
    let b: U64 = bus;
    for (const l of this.v.spaceLayers) {
      try {
        l.translate(b, len, access, t0);
        this.trace.push({
          side: "device",
          layer: l.name,
          from: b,
          to: t0.gpa,
          note: `${what}: translate`,
        });
        b = t0.gpa;
        len = t0.length;
        addrs.push(b);
      } catch (e) {
        this.trace.push({
          side: "device",
          layer: l.name,
          from: b,
          to: null,
          note: `${what}: ${(e as Error).message}`,
        });
        throw e;
      }
    }
    const g = Number(b);
    if (!this.v.sparse.ensure(g, Math.min(len, 64))) {
      this.trace.push({
        side: "device",
        layer: "memory",
        from: g,
        to: null,
        note: `${what}: no RAM at ${hex64(g)}`,
      });
      throw new MemoryFault("unmapped", g, len);
    }
    return addrs;
  }

  /**
   * Where the views part: walks the device's translations against the driver's mappings undone
   * in reverse; the data lives at the driver's GPA, or at the bounce slot when it bounced.
   */
  part(drv: Mapped, dev: U64[]): void {
    if (this.partsAt !== null) return;
    const bounced = drv.addrs.length === 3;
    const rev = drv.addrs.slice(bounced ? 1 : 0).reverse();
    const revNames = drv.names.slice(bounced ? 1 : 0).reverse();
    let j = 0;
    for (let i = 1; i < dev.length; i++) {
      const x = String(dev[i]);
      if (x === String(rev[j])) continue;
      if (j + 1 < rev.length && x === String(rev[j + 1])) {
        j++;
        continue;
      }
      this.partsAt =
        `device layer "${this.v.spaceLayers[i - 1].name}" turns ${hex64(dev[i - 1])} into ` +
        `${hex64(dev[i])}, but the driver's "${
          revNames[Math.min(j, revNames.length - 1)]
        }" meant ` +
        hex64(rev.at(-1)!);
      return;
    }
    if (j !== rev.length - 1) {
      this.partsAt = `the device dereferences ${hex64(dev.at(-1)!)} as a GPA, but the driver's ` +
        `"${revNames[j]}" produced it as a bus address for ${hex64(rev.at(-1)!)}`;
    }
  }

  /** Maps every segment of the buffer at `gpa`. */
  #mapBuffer(gpa: number, dir: DmaDirection, what: string): MappedBuffer {
    const seg = segments(this.t, this.plan, gpa);
    const first = this.mapThrough(gpa, seg.len[0], dir, false, what);
    for (let i = 1; i < seg.count; i++) {
      this.mapThrough(seg.gpa[i], seg.len[i], dir, false, what);
    }
    return { first, seg };
  }

  /**
   * In the order things happen: the driver maps its rings (coherent DMA) at set-up, then one
   * buffer (`add`: every readable, then every writable segment), then kicks; the device reads
   * the rings, the readable buffer, writes the writable one; the driver unmaps.
   */
  #dma(): Outcome {
    const { t, v } = this;
    const mem = v.sparse.memory;
    const ring = this.mapThrough(v.ringGpa, 4096, 0, true, "ring");
    // The device activates the queue at once (DRIVER_OK): its ring areas must translate now;
    // whether they land where the driver wrote shows only when it reads them after the kick.
    const ringDev = this.translateThrough(ring.addrs.at(-1)!, 64, DMA_ACCESS_READ, "ring");
    const n = Math.min(t.workload.bufferBytes, 64);
    mem.write(v.bufferGpa, pattern(t.workload.bufferBytes, 0xa5));
    const out = this.#mapBuffer(v.bufferGpa, DMA_TO_DEVICE, "out buffer");
    const wGpa = v.bufferGpa + align4k(t.workload.bufferBytes);
    const inb = this.#mapBuffer(wGpa, DMA_FROM_DEVICE, "in buffer");
    const bus = out.first.addrs.at(-1)!;
    if (v.splitUnmap) {
      v.splitUnmap(bus, out.seg.len[0]);
      this.trace.push({
        side: "driver",
        layer: this.#baseName,
        from: bus,
        to: null,
        note: "a racy UNMAP: QEMU already removed this mapping",
      });
    }
    // Then the device reads the rings: they must be where the driver wrote them.
    this.part(ring, ringDev);
    if (ringDev.at(-1) !== v.ringGpa) {
      return {
        verdict: "corrupt",
        layer: this.#lastLayer,
        detail: `the device reads the rings at ${
          hex64(ringDev.at(-1)!)
        } but the driver wrote them at ${hex64(v.ringGpa)}`,
      };
    }
    return this.#deviceReads(out.first, n) ?? this.#deviceWrites(inb, wGpa, n) ??
      this.#afterUnmap(bus, out.seg.len[0], n);
  }

  /** The device-readable buffer: does the device read what the driver wrote? */
  #deviceReads(rd: Mapped, n: number): Outcome | null {
    const mem = this.v.sparse.memory;
    const dev = this.translateThrough(rd.addrs.at(-1)!, n, DMA_ACCESS_READ, "out buffer");
    this.part(rd, dev);
    const dataAt = Number(rd.addrs.length === 3 ? rd.addrs[1] : rd.addrs[0]);
    if (!equalBytes(mem.view(Number(dev.at(-1)!), n), mem.view(dataAt, n))) {
      return {
        verdict: "corrupt",
        layer: this.#lastLayer,
        detail: `the device reads ${hex64(dev.at(-1)!)} instead of ${hex64(dataAt)}`,
      };
    }
    return null;
  }

  /** The device-writable buffer: the device writes, the driver unmaps (bounce copies back). */
  #deviceWrites(inb: MappedBuffer, wGpa: number, n: number): Outcome | null {
    const v = this.v, mem = v.sparse.memory, wd = inb.first;
    const wdev = this.translateThrough(wd.addrs.at(-1)!, n, DMA_ACCESS_WRITE, "in buffer");
    this.part(wd, wdev);
    const marker = pattern(n, 0x3c);
    mem.write(Number(wdev.at(-1)!), marker);
    v.api.unmap(wd.addrs.at(-1)!, inb.seg.len[0], DMA_FROM_DEVICE);
    if (!equalBytes(mem.view(wGpa, n), marker)) {
      return {
        verdict: "corrupt",
        layer: this.#lastLayer,
        detail: `the device writes ${hex64(wdev.at(-1)!)}; the driver's buffer at ${
          hex64(wGpa)
        } never sees it`,
      };
    }
    return null;
  }

  /** Use after unmap: can the device still reach the out buffer? */
  #afterUnmap(bus: U64, len: number, n: number): Outcome {
    const v = this.v, t0 = this.#t0;
    if (!v.splitUnmap) v.api.unmap(bus, len, DMA_TO_DEVICE);
    if (v.revokes) {
      try {
        v.space.translate(bus, n, DMA_ACCESS_READ, t0);
        this.trace.push({
          side: "device",
          layer: v.spaceLayers[0].name,
          from: bus,
          to: t0.gpa,
          note: "after unmap: the IOTLB entry is still valid (lazy flush queue)",
        });
        return {
          verdict: "stale-window",
          layer: v.spaceLayers[0].name,
          detail: `after unmap the device still reaches ${hex64(t0.gpa)} through ${hex64(bus)}`,
        };
      } catch (e) {
        if (!(e instanceof DmaFault)) throw e;
      }
    }
    return { verdict: "ok", layer: null, detail: "data arrives intact both ways" };
  }
}
