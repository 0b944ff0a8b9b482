/**
 * The virtio-iommu's two virtqueues on our own engine (spec §5.13.2: requestq 0, eventq 1): the
 * driver sides, the device sides attached to a {@link VirtioIommuDevice}, the requestq transport
 * and an eventq reader that keeps event buffers posted and decodes fault reports.
 *
 * The IOMMU device's own DMA is not translated by itself: both queues use identity DMA
 * (`RawGpaDmaApi` / `IdentityAddressSpace`).
 *
 * Guest memory used from `ringGpa` (see {@link viommuQueuesFootprint}; 16 KiB with the defaults,
 * the same as `VIOMMU_TRANSPORT_STAGING_BYTES`): requestq rings, eventq rings, `eventBuffers`
 * event buffers of 64 bytes, then the request staging area (the rest, at least 4 KiB).
 *
 * @module
 */

import type { GuestMemory } from "../../memory/guest_memory.ts";
import { IdentityAddressSpace, RawGpaDmaApi } from "../../dma/identity.ts";
import {
  createDeviceQueue,
  createDriverQueue,
  driverQueueFootprint,
} from "../../virtio/factory.ts";
import { featureMask, VIRTIO_F_VERSION_1 } from "../../virtio/features.ts";
import type { DriverQueue, RingLayout } from "../../virtio/queue.ts";
import { EMPTY_SG, SgList } from "../../virtio/sg_list.ts";
import type { VirtioIommuDevice } from "./device.ts";
import { decodeViommuFault, type ViommuFaultReport } from "./events.ts";
import { ViommuQueueTransport } from "./transport.ts";
import { VIRTIO_IOMMU_FAULT_SIZE } from "./constants.ts";

/** Bytes of each event buffer the driver posts (a fault report is 24). */
export const VIOMMU_EVENT_BUFFER_BYTES = 64;

/** Options of {@link createViommuQueues}. */
export interface ViommuQueuesOptions {
  /** Guest memory. */
  memory: GuestMemory;
  /** The device the queues belong to (its queues are attached here). */
  device: VirtioIommuDevice;
  /** Page-aligned GPA of {@link viommuQueuesFootprint} bytes the driver owns. */
  ringGpa: number;
  /** Ring layout (default `"split"`). */
  layout?: RingLayout;
  /** Queue Size of both queues (default 64). */
  size?: number;
  /** Event buffers kept posted on the eventq (default 8; 0 = no eventq buffers). */
  eventBuffers?: number;
}

/** What {@link createViommuQueues} returns. */
export interface ViommuQueues {
  /** Driver side of the requestq. */
  readonly requestq: DriverQueue<number>;
  /** Driver side of the eventq. */
  readonly eventq: DriverQueue<number>;
  /** Requests over the requestq. */
  readonly transport: ViommuQueueTransport;
  /**
   * Collects the fault reports the device wrote since the last call (reports with reserved bits
   * set are skipped, spec §5.13.6.9.1) and re-posts their buffers.
   * @throws VirtqError when the eventq breaks (hostile device).
   */
  drainFaults(): ViommuFaultReport[];
  /** Bytes of guest memory used from `ringGpa`. */
  readonly footprint: number;
}

const QUEUE_FEATURES = featureMask(VIRTIO_F_VERSION_1);

/** Bytes of guest memory {@link createViommuQueues} needs, a multiple of 4096. */
export function viommuQueuesFootprint(
  size = 64,
  eventBuffers = 8,
  layout: RingLayout = "split",
): number {
  const q = driverQueueFootprint(layout, size, QUEUE_FEATURES);
  const raw = 2 * q + MIN_STAGING + eventBuffers * VIOMMU_EVENT_BUFFER_BYTES;
  return Math.ceil(raw / 4096) * 4096;
}

/** Smallest request staging area (a PROBE with a 512-byte properties area needs 704 bytes). */
const MIN_STAGING = 4096;

/**
 * Creates and wires both queues, attaches their device sides to the device and posts the event
 * buffers.
 * @throws VirtqError from queue construction (bad size, ring memory not in guest memory).
 */
export function createViommuQueues(opts: ViommuQueuesOptions): ViommuQueues {
  const layout = opts.layout ?? "split";
  const size = opts.size ?? 64;
  const nEvents = Math.min(opts.eventBuffers ?? 8, size);
  const { memory, device } = opts;
  const q = driverQueueFootprint(layout, size, QUEUE_FEATURES);
  const make = (ringGpa: number) => {
    const driver = createDriverQueue<number>(layout, {
      memory,
      dma: new RawGpaDmaApi(),
      size,
      features: QUEUE_FEATURES,
      ringGpa,
    });
    const dev = createDeviceQueue(layout, {
      memory,
      dma: new IdentityAddressSpace("virtio-iommu-self"),
      size,
      addresses: driver.addresses,
      features: QUEUE_FEATURES,
    });
    return { driver, dev };
  };
  const rq = make(opts.ringGpa);
  const eq = make(opts.ringGpa + q);
  device.attachQueues(rq.dev, eq.dev);
  const events = opts.ringGpa + 2 * q;
  const staging = events + nEvents * VIOMMU_EVENT_BUFFER_BYTES;
  const footprint = viommuQueuesFootprint(size, nEvents, layout);
  const stagingBytes = opts.ringGpa + footprint - staging;
  const sg = new SgList(1);
  const post = (i: number) => {
    sg.clear().push(events + i * VIOMMU_EVENT_BUFFER_BYTES, VIOMMU_EVENT_BUFFER_BYTES);
    eq.driver.add(EMPTY_SG, sg, i);
  };
  for (let i = 0; i < nEvents; i++) post(i);
  eq.driver.kick();
  const buf = new Uint8Array(VIRTIO_IOMMU_FAULT_SIZE);
  return {
    requestq: rq.driver,
    eventq: eq.driver,
    transport: new ViommuQueueTransport(rq.driver, device, memory, staging, stagingBytes),
    footprint,
    drainFaults(): ViommuFaultReport[] {
      const out: ViommuFaultReport[] = [];
      let reposted = 0;
      for (let t = eq.driver.getUsed(); t !== undefined; t = eq.driver.getUsed()) {
        if (eq.driver.usedLen >= VIRTIO_IOMMU_FAULT_SIZE) {
          memory.read(events + t * VIOMMU_EVENT_BUFFER_BYTES, buf);
          const r = decodeViommuFault(buf);
          if (r !== null) out.push(r);
        }
        post(t);
        reposted++;
      }
      if (reposted > 0) eq.driver.kick();
      return out;
    },
  };
}
