/**
 * How the virtio-iommu driver reaches the device's requestq. A {@link ViommuTransport} sends a
 * batch of requests (each a device-readable part and a device-writable part), lets the device
 * process them, and returns each one's used length with the writable bytes filled in.
 *
 * - {@link ViommuQueueTransport}: the real path: a `DriverQueue` talking to the device's
 *   `DeviceQueue` over guest memory (add every request, one kick, the device processes the
 *   requestq, get used).
 * - {@link ViommuDirectTransport}: no ring: each request is handed to the device as a `Chain`
 *   built by hand (for tests and for hosts that have no ring engine wired).
 *
 * @module
 */

import type { GuestMemory } from "../../memory/guest_memory.ts";
import { Chain } from "../../virtio/chain.ts";
import type { DriverQueue } from "../../virtio/queue.ts";
import { SgList } from "../../virtio/sg_list.ts";
import type { VirtioIommuDevice } from "./device.ts";

/** One request of a batch. `used` is filled in by the transport. */
export interface ViommuSubmission {
  /** Device-readable bytes (head + fields). */
  readonly readable: Uint8Array;
  /** Device-writable part (tail, plus properties for PROBE); overwritten with what the device wrote. */
  readonly writable: Uint8Array;
  /** Used length reported by the device (bytes written); 0 means the device could not parse it. */
  used: number;
}

/** Sends batches of requests to a virtio-iommu device. */
export interface ViommuTransport {
  /** Transport name for messages. */
  readonly name: string;
  /** Requests sent so far (for modeled costs and benches). */
  readonly requests: number;
  /** Batches (kicks) sent so far. */
  readonly batches: number;
  /**
   * Sends the batch in order and waits for all of it (synchronously: the device runs inline).
   * @throws Error (e.g. `VirtqError`) when the queue breaks; the caller maps it to a `DmaMapError`.
   */
  submit(batch: readonly ViommuSubmission[]): void;
  /**
   * Sends one request (the per-buffer MAP/UNMAP path; no batch objects).
   * @param readable device-readable bytes.
   * @param writable receives what the device wrote.
   * @returns the used length (0: the device could not parse it).
   * @throws Error as {@link ViommuTransport.submit}.
   */
  submitOne(readable: Uint8Array, writable: Uint8Array): number;
}

/** Bytes of guest memory a transport needs for its request staging area. */
export const VIOMMU_TRANSPORT_STAGING_BYTES = 0x4000;

/** Stages each request in guest memory and hands it to the device as a hand-built `Chain`. */
export class ViommuDirectTransport implements ViommuTransport {
  /** Transport name. */
  readonly name = "direct";
  /** Requests sent. */
  requests = 0;
  /** Batches sent. */
  batches = 0;
  readonly #device: VirtioIommuDevice;
  readonly #memory: GuestMemory;
  readonly #gpa: number;
  readonly #chain: Chain;

  /**
   * Creates the transport.
   * @param device the device.
   * @param memory guest memory.
   * @param stagingGpa GPA of {@link VIOMMU_TRANSPORT_STAGING_BYTES} bytes the driver owns.
   */
  constructor(device: VirtioIommuDevice, memory: GuestMemory, stagingGpa: number) {
    this.#device = device;
    this.#memory = memory;
    this.#gpa = stagingGpa;
    this.#chain = new Chain(memory);
  }

  /** See {@link ViommuTransport.submit}. @throws MemoryFault when the staging area is bad. */
  submit(batch: readonly ViommuSubmission[]): void {
    this.batches++;
    for (const s of batch) {
      this.batches--;
      s.used = this.submitOne(s.readable, s.writable);
    }
  }

  /** See {@link ViommuTransport.submitOne}. */
  submitOne(readable: Uint8Array, writable: Uint8Array): number {
    this.batches++;
    this.requests++;
    const r = this.#gpa, w = this.#gpa + alignUp(readable.length);
    checkFits(readable.length, writable.length, VIOMMU_TRANSPORT_STAGING_BYTES);
    this.#memory.write(r, readable);
    this.#memory.fill(w, writable.length);
    const c = this.#chain;
    c.reset(0, 0);
    if (readable.length > 0) c.addReadable(r, readable.length);
    if (writable.length > 0) c.addWritable(w, writable.length);
    const used = this.#device.processRequest(c);
    this.#memory.read(w, writable);
    return used;
  }
}

/**
 * The requestq path: requests go through a `DriverQueue` (the driver's side of requestq 0) and
 * the device pops them from its `DeviceQueue` when kicked. The queue's own DMA API should be
 * identity (`RawGpaDmaApi`): the IOMMU device is not behind itself.
 */
export class ViommuQueueTransport implements ViommuTransport {
  /** Transport name. */
  readonly name = "requestq";
  /** Requests sent. */
  requests = 0;
  /** Batches sent. */
  batches = 0;
  readonly #queue: DriverQueue<number>;
  readonly #device: VirtioIommuDevice;
  readonly #memory: GuestMemory;
  readonly #gpa: number;
  readonly #bytes: number;
  readonly #rd = new SgList(1);
  readonly #wr = new SgList(1);
  // Token of the next request: unique, so a late reply (to a request whose call already failed
  // with "not returned") is never taken for the reply of a later request.
  #token = 0;

  /**
   * Creates the transport.
   * @param queue driver side of the requestq (its device side must be attached to `device`).
   * @param device the device (run inline after each kick).
   * @param memory guest memory.
   * @param stagingGpa GPA of `stagingBytes` bytes the driver owns.
   * @param stagingBytes size of the staging area (default {@link VIOMMU_TRANSPORT_STAGING_BYTES}).
   */
  constructor(
    queue: DriverQueue<number>,
    device: VirtioIommuDevice,
    memory: GuestMemory,
    stagingGpa: number,
    stagingBytes: number = VIOMMU_TRANSPORT_STAGING_BYTES,
  ) {
    this.#queue = queue;
    this.#device = device;
    this.#memory = memory;
    this.#gpa = stagingGpa;
    this.#bytes = stagingBytes;
  }

  /**
   * See {@link ViommuTransport.submitOne}: add, kick, let the device process, get used.
   * @throws VirtqError when the queue is broken or full; Error when the device does not return it.
   */
  submitOne(readable: Uint8Array, writable: Uint8Array): number {
    checkFits(readable.length, writable.length, this.#bytes);
    const q = this.#queue;
    const r = this.#gpa, w = r + alignUp(readable.length);
    this.#memory.write(r, readable);
    this.#memory.fill(w, writable.length);
    this.#rd.clear().push(r, readable.length);
    this.#wr.clear().push(w, writable.length);
    const token = ++this.#token;
    q.add(this.#rd, this.#wr, token);
    this.batches++;
    this.requests++;
    q.kick();
    this.#device.processRequestQueue();
    let t = q.getUsed();
    while (t !== undefined && t !== token) t = q.getUsed(); // late replies to failed requests
    if (t === undefined) {
      throw new Error(
        "virtio-iommu requestq: the request was not returned" +
          (this.#device.broken ? ` (${this.#device.broken.message})` : ""),
      );
    }
    this.#memory.read(w, writable);
    return q.usedLen;
  }

  /**
   * See {@link ViommuTransport.submit}. A batch larger than the staging area or the ring is sent
   * in several kicks.
   * @throws VirtqError when the driver queue is broken or full; Error when the device does not
   * return every request.
   */
  submit(batch: readonly ViommuSubmission[]): void {
    let i = 0;
    while (i < batch.length) {
      const first = i;
      const base = this.#token + 1 - first; // token of batch[j] is base + j
      let off = 0;
      const offsets: number[] = [];
      while (i < batch.length && i - first < this.#queue.size) {
        const s = batch[i];
        checkFits(s.readable.length, s.writable.length, this.#bytes);
        const need = alignUp(s.readable.length) + alignUp(s.writable.length);
        if (off + need > this.#bytes || this.#queue.numFree < 2) break;
        const r = this.#gpa + off, w = r + alignUp(s.readable.length);
        this.#memory.write(r, s.readable);
        this.#memory.fill(w, s.writable.length);
        this.#rd.clear().push(r, s.readable.length);
        this.#wr.clear().push(w, s.writable.length);
        this.#queue.add(this.#rd, this.#wr, base + i);
        offsets.push(w);
        off += need;
        i++;
      }
      if (i === first) throw new Error("virtio-iommu requestq: no room for the next request");
      this.#token = base + i - 1;
      this.batches++;
      this.requests += i - first;
      this.#queue.kick();
      this.#device.processRequestQueue();
      let done = 0;
      for (let u = this.#queue.getUsed(); u !== undefined; u = this.#queue.getUsed()) {
        const t = u - base;
        if (t < first || t >= i) continue; // a late reply to a request of an earlier call
        const s = batch[t];
        s.used = this.#queue.usedLen;
        this.#memory.read(offsets[t - first], s.writable);
        done++;
      }
      if (done !== i - first) {
        throw new Error(
          `virtio-iommu requestq: ${i - first - done} requests not returned` +
            (this.#device.broken ? ` (${this.#device.broken.message})` : ""),
        );
      }
    }
  }
}

function alignUp(n: number): number {
  return (n + 63) & ~63;
}

function checkFits(readable: number, writable: number, cap: number): void {
  if (alignUp(readable) + alignUp(writable) > cap) {
    throw new RangeError(
      `virtio-iommu request of ${readable}+${writable} bytes exceeds the staging area`,
    );
  }
}
