/**
 * PRIVATE STAND-IN, TO DELETE when the `split` stream lands `src/virtio/pair.ts`
 * (`createQueuePair`) on main.
 *
 * A minimal split virtqueue (spec §2.7) pair with the same option and result shape as the coming
 * `createQueuePair`, enough for the platform resolver to run a few buffers end to end through a
 * driver {@link DmaApi} and a device {@link DmaAddressSpace}: descriptors are written by the
 * driver at the ring's GPA (CPU view) and read by the device through its translation of the bus
 * addresses the driver programmed. No indirect tables, no event suppression.
 *
 * @module
 */

import type { GuestMemory } from "../memory/guest_memory.ts";
import { MemoryFault } from "../memory/fault.ts";
import { hex64, type U64, u64Add } from "../memory/u64.ts";
import { DMA_ACCESS_READ, DMA_ACCESS_WRITE, DmaFault, DmaMapError } from "../dma/errors.ts";
import {
  DMA_FROM_DEVICE,
  DMA_TO_DEVICE,
  type DmaAddressSpace,
  type DmaApi,
  type DmaDirection,
  DmaTranslation,
  translateContiguous,
} from "../dma/types.ts";
import { Chain } from "../virtio/chain.ts";
import { VirtqError } from "../virtio/errors.ts";
import type { SgList } from "../virtio/sg_list.ts";
import { VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from "../virtio/constants.ts";

const align = (v: number, a: number) => Math.ceil(v / a) * a;

/** Split-ring byte offsets for queue size `q` (spec §2.7: desc 16·Q, avail 6+2·Q, used 6+8·Q). */
function offsets(q: number) {
  const avail = 16 * q;
  const used = align(avail + 6 + 2 * q, 4);
  return { avail, used, end: used + 6 + 8 * q };
}

/** Bytes of ring memory a stand-in driver queue of size `q` needs. */
export function standinFootprint(q: number): number {
  return align(offsets(q).end, 4096);
}

interface Outstanding<T> {
  token: T;
  segs: { bus: U64; len: number; dir: DmaDirection }[];
  descs: number[];
}

/** Driver side (stand-in). */
export class StandinDriverQueue<T> {
  readonly layout = "split" as const;
  broken: VirtqError | null = null;
  usedLen = 0;
  readonly addresses: { descAddr: U64; driverAddr: U64; deviceAddr: U64 };
  readonly #off: ReturnType<typeof offsets>;
  readonly #free: number[] = [];
  readonly #out = new Map<number, Outstanding<T>>();
  #availIdx = 0;
  #lastUsed = 0;
  readonly ringBus: U64;

  constructor(
    readonly memory: GuestMemory,
    readonly dma: DmaApi,
    readonly size: number,
    readonly ringGpa: number,
  ) {
    this.#off = offsets(size);
    for (let i = size - 1; i >= 0; i--) this.#free.push(i);
    this.ringBus = dma.mapCoherent(ringGpa, standinFootprint(size));
    const at = (o: number) => {
      const a = u64Add(this.ringBus, o);
      if (a === null) throw new RangeError("ring bus address wraps");
      return a;
    };
    this.addresses = {
      descAddr: this.ringBus,
      driverAddr: at(this.#off.avail),
      deviceAddr: at(this.#off.used),
    };
  }

  get numFree(): number {
    return this.#free.length;
  }
  get outstanding(): number {
    return this.#out.size;
  }

  add(readable: SgList, writable: SgList, token: T): void {
    const n = readable.count + writable.count;
    if (n === 0) throw new VirtqError("BUFFER_EMPTY", "no segments");
    if (n > this.#free.length) throw new VirtqError("RING_FULL", `${n} > ${this.#free.length}`);
    const segs: Outstanding<T>["segs"] = [];
    try {
      for (let i = 0; i < readable.count; i++) {
        const bus = this.dma.map(readable.gpa[i], readable.len[i], DMA_TO_DEVICE);
        segs.push({ bus, len: readable.len[i], dir: DMA_TO_DEVICE });
      }
      for (let i = 0; i < writable.count; i++) {
        const bus = this.dma.map(writable.gpa[i], writable.len[i], DMA_FROM_DEVICE);
        segs.push({ bus, len: writable.len[i], dir: DMA_FROM_DEVICE });
      }
    } catch (e) {
      for (const s of segs) this.dma.unmap(s.bus, s.len, s.dir);
      if (e instanceof DmaMapError) {
        throw new VirtqError("DMA_MAP_FAILED", e.message, { cause: e });
      }
      throw e;
    }
    const descs = this.#free.splice(this.#free.length - n, n).reverse();
    const m = this.memory;
    for (let i = 0; i < n; i++) {
      const d = this.ringGpa + 16 * descs[i];
      m.writeU64(d, segs[i].bus);
      m.writeU32(d + 8, segs[i].len);
      const flags = (i < n - 1 ? VIRTQ_DESC_F_NEXT : 0) |
        (segs[i].dir === DMA_FROM_DEVICE ? VIRTQ_DESC_F_WRITE : 0);
      m.writeU16(d + 12, flags);
      m.writeU16(d + 14, i < n - 1 ? descs[i + 1] : 0);
    }
    const a = this.ringGpa + this.#off.avail;
    m.writeU16(a + 4 + 2 * (this.#availIdx % this.size), descs[0]);
    this.#availIdx = (this.#availIdx + 1) & 0xffff;
    this.#out.set(descs[0], { token, segs, descs });
  }

  kick(): boolean {
    this.memory.writeU16(this.ringGpa + this.#off.avail + 2, this.#availIdx);
    return true;
  }

  getUsed(): T | undefined {
    const u = this.ringGpa + this.#off.used;
    const idx = this.memory.readU16(u + 2);
    if (idx === this.#lastUsed) return undefined;
    const e = u + 4 + 8 * (this.#lastUsed % this.size);
    const id = this.memory.readU32(e);
    const len = this.memory.readU32(e + 4);
    const o = this.#out.get(id);
    if (!o) {
      this.broken = new VirtqError("QUEUE_BROKEN", `used id ${id} is not outstanding`);
      throw this.broken;
    }
    this.#lastUsed = (this.#lastUsed + 1) & 0xffff;
    for (const s of o.segs) this.dma.unmap(s.bus, s.len, s.dir);
    this.#free.push(...o.descs);
    this.#out.delete(id);
    this.usedLen = len;
    return o.token;
  }

  /** The bus addresses of the segments of the last `add` (for stale-window probes). */
  segmentsOf(head: number): readonly { bus: U64; len: number; dir: DmaDirection }[] {
    return this.#out.get(head)?.segs ?? [];
  }
}

/** Device side (stand-in). */
export class StandinDeviceQueue {
  readonly layout = "split" as const;
  broken: VirtqError | null = null;
  inFlight = 0;
  readonly #t = new DmaTranslation();
  #gpa: { desc: number; avail: number; used: number } | null = null;
  #lastAvail = 0;
  #usedIdx = 0;
  readonly #chain: Chain;

  constructor(
    readonly memory: GuestMemory,
    readonly dma: DmaAddressSpace,
    readonly size: number,
    readonly addresses: { descAddr: U64; driverAddr: U64; deviceAddr: U64 },
  ) {
    this.#chain = new Chain(memory);
  }

  #fail(e: VirtqError): never {
    this.broken = e;
    throw e;
  }

  #activate(): { desc: number; avail: number; used: number } {
    const q = this.size;
    const area = (bus: U64, len: number, access: number, what: string) => {
      try {
        const g = translateContiguous(this.dma, bus, len, access, this.#t);
        if (!this.memory.contains(g, len)) throw new MemoryFault("unmapped", g, len);
        return g;
      } catch (e) {
        if (e instanceof DmaFault || e instanceof MemoryFault) {
          this.#fail(
            new VirtqError("RING_UNMAPPED", `${what} at ${hex64(bus)}: ${e.message}`, { cause: e }),
          );
        }
        throw e;
      }
    };
    return {
      desc: area(this.addresses.descAddr, 16 * q, DMA_ACCESS_READ, "descriptor table"),
      avail: area(this.addresses.driverAddr, 6 + 2 * q, DMA_ACCESS_READ, "available ring"),
      used: area(this.addresses.deviceAddr, 6 + 8 * q, DMA_ACCESS_WRITE, "used ring"),
    };
  }

  pop(): Chain | null {
    if (this.broken) return null;
    const g = this.#gpa ??= this.#activate();
    const m = this.memory;
    const idx = m.readU16(g.avail + 2);
    if (idx === this.#lastAvail) return null;
    if (((idx - this.#lastAvail) & 0xffff) > this.size) {
      this.#fail(new VirtqError("AVAIL_IDX_JUMP", `avail idx ${idx}, last ${this.#lastAvail}`));
    }
    const head = m.readU16(g.avail + 4 + 2 * (this.#lastAvail % this.size));
    if (head >= this.size) {
      this.#fail(new VirtqError("AVAIL_HEAD_OUT_OF_RANGE", `head ${head}`, { index: head }));
    }
    const c = this.#chain;
    c.reset(head, head);
    let i = head;
    for (let n = 0;; n++) {
      if (n >= this.size) this.#fail(new VirtqError("DESC_CHAIN_LOOP", `from head ${head}`));
      const d = g.desc + 16 * i;
      const addr = m.readU64(d);
      const len = m.readU32(d + 8);
      const flags = m.readU16(d + 12);
      const next = m.readU16(d + 14);
      const write = (flags & VIRTQ_DESC_F_WRITE) !== 0;
      let off = 0;
      while (off < len) {
        const bus = u64Add(addr, off);
        if (bus === null) this.#fail(new VirtqError("DESC_ADDR_WRAP", `desc ${i}`, { index: i }));
        try {
          this.dma.translate(bus, len - off, write ? DMA_ACCESS_WRITE : DMA_ACCESS_READ, this.#t);
          if (!m.contains(this.#t.gpa, this.#t.length)) {
            throw new MemoryFault("unmapped", this.#t.gpa, this.#t.length);
          }
        } catch (e) {
          if (e instanceof DmaFault || e instanceof MemoryFault) {
            this.#fail(
              new VirtqError("DESC_BUFFER_FAULT", `desc ${i}: ${e.message}`, {
                index: i,
                cause: e,
              }),
            );
          }
          throw e;
        }
        if (write) c.addWritable(this.#t.gpa, this.#t.length);
        else c.addReadable(this.#t.gpa, this.#t.length);
        off += this.#t.length;
      }
      if ((flags & VIRTQ_DESC_F_NEXT) === 0) break;
      if (next >= this.size) this.#fail(new VirtqError("DESC_NEXT_OUT_OF_RANGE", `next ${next}`));
      i = next;
    }
    this.#lastAvail = (this.#lastAvail + 1) & 0xffff;
    this.inFlight++;
    return c;
  }

  push(chain: Chain, written: number): void {
    const g = this.#gpa!;
    const e = g.used + 4 + 8 * (this.#usedIdx % this.size);
    this.memory.writeU32(e, chain.id);
    this.memory.writeU32(e + 4, written);
    this.#usedIdx = (this.#usedIdx + 1) & 0xffff;
    this.inFlight--;
  }

  flush(): boolean {
    if (this.#gpa) this.memory.writeU16(this.#gpa.used + 2, this.#usedIdx);
    return true;
  }
}

/** Options of the stand-in pair (a subset of the coming `createQueuePair`). */
export interface StandinPairOptions {
  memory: GuestMemory;
  size: number;
  ringGpa: number;
  dmaApi: DmaApi;
  dmaSpace: DmaAddressSpace;
}

/**
 * Creates a driver queue and the device queue that sees its ring areas through `dmaSpace`.
 * @throws DmaMapError when the driver cannot map its rings (coherent mapping).
 */
export function createStandinPair(o: StandinPairOptions): {
  memory: GuestMemory;
  driver: StandinDriverQueue<number>;
  device: StandinDeviceQueue;
} {
  const driver = new StandinDriverQueue<number>(o.memory, o.dmaApi, o.size, o.ringGpa);
  const device = new StandinDeviceQueue(o.memory, o.dmaSpace, o.size, driver.addresses);
  return { memory: o.memory, driver, device };
}
