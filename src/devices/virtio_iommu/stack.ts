/**
 * A ready-made virtio-iommu stack for tests, fuzz targets and benches: the device, one
 * endpoint's DMA view, and the driver's `virtio-iommu` {@link DmaApi} mode already initialised
 * (PROBE + ATTACH done).
 *
 * @module
 */

import type { GuestMemory } from "../../memory/guest_memory.ts";
import type { RingLayout } from "../../virtio/queue.ts";
import type { DmaAddressSpace } from "../../dma/types.ts";
import { decodeViommuConfig, type VirtioIommuConfig } from "./config.ts";
import { VirtioIommuDevice, type VirtioIommuDeviceOptions } from "./device.ts";
import { VirtioIommuDmaApi } from "./driver_api.ts";
import type { ViommuResvMem } from "./probe.ts";
import { ViommuDirectTransport, type ViommuTransport } from "./transport.ts";
import { createViommuQueues, type ViommuQueues } from "./queues.ts";

/** Options of {@link createViommuStack}. */
export interface ViommuStackOptions {
  /** Guest memory shared by the driver, the device and the IOMMU. */
  memory: GuestMemory;
  /**
   * Page-aligned GPA of `VIOMMU_TRANSPORT_STAGING_BYTES` (16 KiB) of guest memory the IOMMU
   * driver owns: the requestq/eventq rings, event buffers and request staging for the
   * `"requestq"` transport (with the default queue size and event buffers; otherwise
   * `viommuQueuesFootprint(...)` bytes), the staging area for `"direct"`.
   */
  stagingGpa: number;
  /** Endpoint ID of the device behind the IOMMU (default 8, i.e. 00:01.0). */
  endpoint?: number;
  /** Domain the driver attaches it to (default 1). */
  domain?: number;
  /** The endpoint's RESV_MEM regions (default: the x86 MSI window 0xfee00000..0xfeefffff). */
  resvMem?: readonly ViommuResvMem[];
  /** Device config overrides. */
  config?: Partial<VirtioIommuConfig>;
  /** Further device options (endpoints are set from `endpoint`/`resvMem`). */
  device?: Omit<Partial<VirtioIommuDeviceOptions>, "endpoints" | "config">;
  /** Driver features to accept (default: everything offered). */
  driverFeatures?: bigint;
  /**
   * How requests travel: `"requestq"` (default) over our virtqueue engine (split rings at
   * `stagingGpa`, which must then have `viommuQueuesFootprint()` bytes), `"direct"` (hand-built
   * chains, 16 KiB at `stagingGpa`), or a factory.
   */
  transport?: "requestq" | "direct" | ((device: VirtioIommuDevice) => ViommuTransport);
  /**
   * A long-lived mapping of `[gpa, gpa + size)` made once at init: buffers inside it need no
   * MAP/UNMAP (see `VirtioIommuDmaApiOptions.longLived`). Default none: a MAP and an UNMAP per
   * buffer.
   */
  longLived?: { gpa: number; size: number };
  /** Event buffers kept posted on the eventq with the `"requestq"` transport (default 8). */
  eventBuffers?: number;
  /**
   * Ring layout of the requestq and eventq with the `"requestq"` transport: `"split"` (default)
   * or `"packed"` (spec §2.7 / §2.8; the virtio-iommu queues are ordinary virtqueues, §5.13.2).
   */
  layout?: RingLayout;
}

/** What {@link createViommuStack} returns. */
export interface ViommuStack {
  /** The IOMMU device. */
  readonly device: VirtioIommuDevice;
  /** The driver's DMA API for the endpoint (initialised). */
  readonly api: VirtioIommuDmaApi;
  /** The endpoint's DMA view: what a device model behind the IOMMU uses to translate. */
  readonly space: DmaAddressSpace;
  /** The requestq transport. */
  readonly transport: ViommuTransport;
  /** Endpoint ID. */
  readonly endpoint: number;
  /** The virtqueues (`"requestq"` transport), else `null`. */
  readonly queues: ViommuQueues | null;
}

/**
 * Builds device + endpoint view + initialised driver DMA API.
 * @throws DmaMapError (`transport`) when PROBE or ATTACH fails.
 */
export function createViommuStack(opts: ViommuStackOptions): ViommuStack {
  const endpoint = opts.endpoint ?? 8;
  const device = new VirtioIommuDevice({
    ...opts.device,
    endpoints: [{
      id: endpoint,
      resvMem: opts.resvMem ?? [{ subtype: 1, start: 0xfee0_0000, end: 0xfeef_ffff }],
    }],
    config: opts.config,
  });
  const features = device.negotiate(opts.driverFeatures ?? device.deviceFeatures);
  let queues: ViommuQueues | null = null;
  let transport: ViommuTransport;
  const t = opts.transport ?? "requestq";
  if (t === "requestq") {
    queues = createViommuQueues({
      memory: opts.memory,
      device,
      ringGpa: opts.stagingGpa,
      eventBuffers: opts.eventBuffers,
      layout: opts.layout,
    });
    transport = queues.transport;
  } else if (t === "direct") {
    transport = new ViommuDirectTransport(device, opts.memory, opts.stagingGpa);
  } else transport = t(device);
  const api = new VirtioIommuDmaApi({
    transport,
    config: decodeViommuConfig(device.readConfig()),
    features,
    endpoint,
    domain: opts.domain ?? 1,
    longLived: opts.longLived,
  });
  api.init();
  return { device, api, space: device.endpointSpace(endpoint), transport, endpoint, queues };
}
