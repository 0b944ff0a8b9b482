/**
 * Round trips through the engine's public interfaces (`DriverQueue`, `DeviceQueue`, `Chain`),
 * whatever the layout and DMA mode, and the small contract every benchmarked thing implements.
 *
 * One round trip: `add` x batch, `kick`, `pop`/copy/`push` until empty, `flush`, `getUsed` until
 * empty. The device's work is the loopback copy (`Chain.copyReadableToWritable`), or for a
 * writable-only chain a copy from the device's own buffer. Buffers (`SgList`) are built once.
 *
 * @module
 */

import { type DeviceQueue, type DriverQueue, EMPTY_SG, SgList } from "../src/virtio/mod.ts";
import type { GuestMemory } from "../src/memory/mod.ts";
import { type CaseParams, chainShape, segmentSizes } from "./cases.ts";

/** Something the runner can time: one call = one round trip of `chainsPerCall` chains. */
export interface Benchable {
  /** Chains completed per call of {@link Benchable.run}. */
  readonly chainsPerCall: number;
  /** Descriptors per call. */
  readonly descriptorsPerCall: number;
  /** Payload bytes moved per call. */
  readonly bytesPerCall: number;
  /** One round trip. @returns chains completed (must equal `chainsPerCall`). */
  run(): number;
  /** Event counters since creation (e.g. IOTLB invalidations), for modeled costs. */
  counters?(): Record<string, number>;
}

/** A driver/device pair on one guest memory, as `createQueuePair` returns it. */
export interface EnginePair {
  /** Guest memory both sides use. */
  memory: GuestMemory;
  /** Driver side; tokens are chain slot numbers. */
  driver: DriverQueue<number>;
  /** Device side. */
  device: DeviceQueue;
}

/**
 * Engine round trip over a pair. Buffers are placed at `bufferGpa` in `pair.memory` (the caller
 * guarantees `bufferBytes(p)` bytes there, reachable through the pair's DMA).
 */
export class EngineRoundTrip implements Benchable {
  readonly chainsPerCall: number;
  readonly descriptorsPerCall: number;
  readonly bytesPerCall: number;
  readonly #driver: DriverQueue<number>;
  readonly #device: DeviceQueue;
  readonly #memory: GuestMemory;
  readonly #readable: SgList[];
  readonly #writable: SgList[];
  readonly #srcGpa: number;
  readonly #payload: number;
  #counters: (() => Record<string, number>) | undefined;

  /**
   * @param pair the queues.
   * @param p case parameters (batch, payload, chain length).
   * @param bufferGpa GPA of `bufferBytes(p)` bytes of buffer space.
   * @param counters optional counter source (DMA statistics).
   */
  constructor(
    pair: EnginePair,
    p: CaseParams,
    bufferGpa: number,
    counters?: () => Record<string, number>,
  ) {
    this.#driver = pair.driver;
    this.#device = pair.device;
    this.#memory = pair.memory;
    this.#payload = p.payload;
    this.#counters = counters;
    this.chainsPerCall = p.batch;
    this.descriptorsPerCall = p.batch * p.chainLen;
    this.bytesPerCall = p.batch * p.payload;
    const { readable, writable } = chainShape(p.chainLen);
    const slot = alignPage(p.payload);
    const rs = readable ? segmentSizes(p.payload, readable) : [];
    const ws = segmentSizes(p.payload, writable);
    this.#readable = [];
    this.#writable = [];
    for (let c = 0; c < p.batch; c++) {
      let g = bufferGpa + 2 * c * slot;
      const r = readable ? new SgList(readable) : EMPTY_SG;
      for (const n of rs) (r.push(g, n), g += n);
      g = bufferGpa + (2 * c + 1) * slot;
      const w = new SgList(writable);
      for (const n of ws) (w.push(g, n), g += n);
      this.#readable.push(r);
      this.#writable.push(w);
    }
    this.#srcGpa = bufferGpa + 2 * p.batch * slot;
    for (let i = 0; i < p.payload; i++) {
      pair.memory.writeU8(bufferGpa + i, i & 0xff); // chain 0's readable part
      pair.memory.writeU8(this.#srcGpa + i, i & 0xff); // the device's own buffer
    }
  }

  /** One round trip. */
  run(): number {
    const driver = this.#driver, device = this.#device;
    const n = this.chainsPerCall;
    for (let c = 0; c < n; c++) driver.add(this.#readable[c], this.#writable[c], c);
    driver.kick();
    let chain = device.pop();
    while (chain !== null) {
      let written: number;
      if (chain.readableCount === 0) {
        written = chain.writableLen[0] < this.#payload ? chain.writableLen[0] : this.#payload;
        this.#memory.copy(chain.writableGpa[0], this.#srcGpa, written);
      } else {
        written = chain.copyReadableToWritable();
      }
      device.push(chain, written);
      chain = device.pop();
    }
    device.flush();
    let got = 0;
    while (driver.getUsed() !== undefined) got++;
    return got;
  }

  /** Counters from the DMA model, when it has any. */
  counters(): Record<string, number> {
    return this.#counters ? this.#counters() : {};
  }
}

/** Bytes of buffer space an {@link EngineRoundTrip} needs for `p` (page-aligned). */
export function bufferBytes(p: CaseParams): number {
  return alignPage(p.payload) * (2 * p.batch + 1);
}

function alignPage(n: number): number {
  return Math.ceil(n / 4096) * 4096;
}
