/**
 * The virtio-iommu device (device ID 23, spec §5.13 "IOMMU Device") served by our own virtqueue
 * engine: requestq (0) carries ATTACH / DETACH / MAP / UNMAP / PROBE requests, eventq (1) carries
 * fault reports. Each endpoint exposes a {@link ViommuEndpointSpace} (`endpointSpace(id)`) that
 * any device model can use as its DMA view.
 *
 * Request handling policy (spec §5.13.6 device requirements; where the spec leaves a choice the
 * choice is named):
 * - fewer than 4 writable bytes (no room for the tail) or fewer than 4 readable bytes (no type):
 *   nothing written, used length 0 (spec §5.13.6.1: "cannot parse" → return the buffers unwritten);
 * - unknown type: used length 0 (spec SHOULD), or UNSUPP with `unknownType: "unsupp"` (QEMU);
 * - readable part not the size of its type, or a non-PROBE writable part that is not exactly
 *   4 bytes: DEVERR (QEMU answers a bad head size with DEVERR); the tail is the last 4 writable
 *   bytes and any bytes before it are zeroed;
 * - readable part not readable (a memory fault): FAULT; PROBE properties not writable: IOERR;
 * - reserved fields: ATTACH's non-zero → INVAL (§5.13.6.3.2 MUST); UNMAP's non-zero → INVAL and
 *   nothing unmapped (§5.13.6.6.2 MAY); the head's, DETACH's and PROBE's are ignored (MUST ignore);
 * - MAP/UNMAP without `VIRTIO_IOMMU_F_MAP_UNMAP` negotiated: UNSUPP; PROBE when the device does not
 *   offer `VIRTIO_IOMMU_F_PROBE`: used length 0, unwritten (§5.13.6.7.2);
 * - PROBE with a properties area smaller than `probe_size`: INVAL, no property written (§5.13.6.7.2);
 * - `input_range` is enforced when `VIRTIO_IOMMU_F_INPUT_RANGE` is offered (else the whole 64-bit
 *   space), `domain_range` when `VIRTIO_IOMMU_F_DOMAIN_RANGE` is offered (ATTACH outside → RANGE);
 * - more domains than `maxDomains` or mappings than `maxMappings`: NOMEM;
 * - a rejected request never changes any state.
 *
 * @module
 */

import { type U64, u64FromParts } from "../../memory/u64.ts";
import { MemoryFault } from "../../memory/fault.ts";
import type { Chain } from "../../virtio/chain.ts";
import type { DeviceQueue } from "../../virtio/queue.ts";
import { VIRTIO_F_VERSION_1 } from "../../virtio/features.ts";
import { VirtqError } from "../../virtio/errors.ts";
import {
  VIRTIO_IOMMU_ATTACH_F_BYPASS,
  VIRTIO_IOMMU_CONFIG_SIZE,
  VIRTIO_IOMMU_F_BYPASS,
  VIRTIO_IOMMU_F_BYPASS_CONFIG,
  VIRTIO_IOMMU_F_DOMAIN_RANGE,
  VIRTIO_IOMMU_F_INPUT_RANGE,
  VIRTIO_IOMMU_F_MAP_UNMAP,
  VIRTIO_IOMMU_F_MMIO,
  VIRTIO_IOMMU_F_PROBE,
  VIRTIO_IOMMU_FAULT_SIZE,
  VIRTIO_IOMMU_MAP_F_MASK,
  VIRTIO_IOMMU_MAP_F_MMIO,
  VIRTIO_IOMMU_MAP_SIZE,
  VIRTIO_IOMMU_PROBE_RESV_MEM_SIZE,
  VIRTIO_IOMMU_PROBE_SIZE,
  VIRTIO_IOMMU_REQ_TAIL_SIZE,
  VIRTIO_IOMMU_RESV_MEM_T_MSI,
  VIRTIO_IOMMU_S_DEVERR,
  VIRTIO_IOMMU_S_FAULT,
  VIRTIO_IOMMU_S_INVAL,
  VIRTIO_IOMMU_S_IOERR,
  VIRTIO_IOMMU_S_NOENT,
  VIRTIO_IOMMU_S_NOMEM,
  VIRTIO_IOMMU_S_OK,
  VIRTIO_IOMMU_S_RANGE,
  VIRTIO_IOMMU_S_UNSUPP,
  VIRTIO_IOMMU_T_ATTACH,
  VIRTIO_IOMMU_T_DETACH,
  VIRTIO_IOMMU_T_MAP,
  VIRTIO_IOMMU_T_PROBE,
  VIRTIO_IOMMU_T_UNMAP,
  VIRTIO_IOMMU_UNMAP_SIZE,
} from "./constants.ts";
import {
  defaultViommuConfig,
  encodeViommuConfig,
  viommuGranule,
  VIRTIO_IOMMU_CONFIG_BYPASS,
  type VirtioIommuConfig,
} from "./config.ts";
import {
  decodeViommuRequest,
  type ViommuAttach,
  type ViommuDetach,
  type ViommuMap,
  type ViommuProbe,
  viommuRequestSize,
  type ViommuUnmap,
} from "./requests.ts";
import { type ViommuMapping, ViommuMappingTree } from "./mappings.ts";
import { encodeProbeProperties, type ViommuResvMem } from "./probe.ts";
import { encodeViommuFault } from "./events.ts";
import { type ViommuDomain, type ViommuEndpoint, ViommuEndpointSpace } from "./endpoint_space.ts";

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/** Bit mask (bigint) of a feature bit number. */
function bit(n: number): bigint {
  return 1n << BigInt(n);
}

/**
 * Features a new device offers by default: INPUT_RANGE, DOMAIN_RANGE, MAP_UNMAP, PROBE, MMIO,
 * BYPASS_CONFIG and VERSION_1 (the set QEMU offers, without the legacy F_BYPASS, spec §5.13.3.2
 * "SHOULD NOT offer both").
 */
export const VIRTIO_IOMMU_DEFAULT_FEATURES: bigint = bit(VIRTIO_IOMMU_F_INPUT_RANGE) |
  bit(VIRTIO_IOMMU_F_DOMAIN_RANGE) | bit(VIRTIO_IOMMU_F_MAP_UNMAP) | bit(VIRTIO_IOMMU_F_PROBE) |
  bit(VIRTIO_IOMMU_F_MMIO) | bit(VIRTIO_IOMMU_F_BYPASS_CONFIG) | bit(VIRTIO_F_VERSION_1);

/** An endpoint the IOMMU manages, with its reserved regions. */
export interface ViommuEndpointSpec {
  /** Endpoint ID (u32, e.g. a PCI BDF). */
  id: number;
  /** RESV_MEM regions reported by PROBE and enforced by translation (default none). */
  resvMem?: readonly ViommuResvMem[];
}

/** Options of {@link VirtioIommuDevice}. */
export interface VirtioIommuDeviceOptions {
  /** Endpoints behind this IOMMU. */
  endpoints: readonly ViommuEndpointSpec[];
  /** Config overrides (default {@link defaultViommuConfig}). */
  config?: Partial<VirtioIommuConfig>;
  /** Offered features as a bigint mask (default {@link VIRTIO_IOMMU_DEFAULT_FEATURES}). */
  features?: bigint;
  /** Whether a domain may hold several endpoints (default true; otherwise ATTACH → UNSUPP). */
  multipleEndpointsPerDomain?: boolean;
  /** Most domains at once (default 65536; ATTACH creating one more → NOMEM). */
  maxDomains?: number;
  /** Most mappings over all domains (default 1 << 20; MAP beyond → NOMEM). */
  maxMappings?: number;
  /** Unknown request type: `"used-zero"` (default, spec SHOULD) or `"unsupp"` (QEMU). */
  unknownType?: "used-zero" | "unsupp";
}

/** Counters of the device's activity. */
export interface VirtioIommuStats {
  /** Requests completed, by final status (index = `VIRTIO_IOMMU_S_*`). */
  readonly statusCounts: number[];
  /** Requests returned with used length 0 (unparseable). */
  unparsed: number;
  /** Fault reports written to the eventq. */
  faultsReported: number;
  /** Fault reports dropped (no eventq, no buffer, or a buffer shorter than 24 bytes). */
  faultsDropped: number;
}

/**
 * The virtio-iommu device model. Process requests one chain at a time with
 * {@link VirtioIommuDevice.processRequest} (any `Chain`, e.g. built by hand in tests), or attach
 * the device's queues and call {@link VirtioIommuDevice.processRequestQueue} after a kick.
 */
export class VirtioIommuDevice {
  /** Features the device offers (bigint mask). */
  readonly deviceFeatures: bigint;
  /** Negotiated features: {@link VirtioIommuDevice.deviceFeatures} until `negotiate` is called. */
  features: bigint;
  /** Current configuration (driver writes reach only `bypass`). */
  readonly config: VirtioIommuConfig;
  /** Activity counters. */
  readonly stats: VirtioIommuStats = {
    statusCounts: [0, 0, 0, 0, 0, 0, 0, 0, 0],
    unparsed: 0,
    faultsReported: 0,
    faultsDropped: 0,
  };
  /** The queue error that made the device need a reset (spec §2.1.2), or `null`. */
  broken: VirtqError | null = null;
  /** True when unattached (and unknown) endpoints are translated by identity. */
  bypassUnattached = false;

  readonly #bootBypass: number;
  readonly #endpoints = new Map<number, ViommuEndpoint>();
  readonly #spaces = new Map<number, ViommuEndpointSpace>();
  readonly #domains = new Map<number, ViommuDomain>();
  readonly #multi: boolean;
  readonly #maxDomains: number;
  readonly #maxMappings: number;
  readonly #unknownType: "used-zero" | "unsupp";
  #mappingCount = 0;
  /** Low 32 bits of the negotiated features (the device-specific bits). */
  #featLo = 0;
  /** Whether `input_range` is in force (VIRTIO_IOMMU_F_INPUT_RANGE offered). */
  readonly #inputRange: boolean;
  /** Mapping granule in bytes (lowest bit of page_size_mask). */
  readonly #granule: number | bigint;
  #requestq: DeviceQueue | null = null;
  #eventq: DeviceQueue | null = null;
  readonly #scratch = new Uint8Array(VIRTIO_IOMMU_PROBE_SIZE);
  readonly #sv = new DataView(this.#scratch.buffer);
  readonly #mreq: Mutable<ViommuMap> = {
    type: VIRTIO_IOMMU_T_MAP,
    domain: 0,
    virtStart: 0,
    virtEnd: 0,
    physStart: 0,
    flags: 0,
  };
  readonly #ureq: Mutable<ViommuUnmap> = {
    type: VIRTIO_IOMMU_T_UNMAP,
    domain: 0,
    virtStart: 0,
    virtEnd: 0,
  };
  readonly #tail = new Uint8Array(VIRTIO_IOMMU_REQ_TAIL_SIZE);
  readonly #fault = new Uint8Array(VIRTIO_IOMMU_FAULT_SIZE);
  readonly #host = {
    device: this as VirtioIommuDevice,
    get bypassUnattached(): boolean {
      return this.device.bypassUnattached;
    },
    reportFault(reason: number, flags: number, endpoint: number, address: U64): void {
      this.device.reportFault(reason, flags, endpoint, address);
    },
  };

  /**
   * Creates the device.
   * @throws RangeError on a duplicate endpoint ID, a zero `page_size_mask`, inverted ranges, or
   * an endpoint whose RESV_MEM properties do not fit in `probe_size`.
   */
  constructor(opts: VirtioIommuDeviceOptions) {
    this.deviceFeatures = opts.features ?? VIRTIO_IOMMU_DEFAULT_FEATURES;
    this.features = this.deviceFeatures;
    this.config = { ...defaultViommuConfig(), ...opts.config };
    this.#granule = viommuGranule(this.config.pageSizeMask);
    this.#inputRange = (this.deviceFeatures & bit(VIRTIO_IOMMU_F_INPUT_RANGE)) !== 0n;
    if (this.config.inputStart > this.config.inputEnd) {
      throw new RangeError("input_range start is above its end");
    }
    if (this.config.domainStart > this.config.domainEnd) {
      throw new RangeError("domain_range start is above its end");
    }
    this.#bootBypass = this.config.bypass;
    this.#multi = opts.multipleEndpointsPerDomain ?? true;
    this.#maxDomains = opts.maxDomains ?? 65536;
    this.#maxMappings = opts.maxMappings ?? 1 << 20;
    this.#unknownType = opts.unknownType ?? "used-zero";
    for (const e of opts.endpoints) {
      if (this.#endpoints.has(e.id)) throw new RangeError(`duplicate endpoint ${e.id}`);
      if ((e.resvMem?.length ?? 0) * VIRTIO_IOMMU_PROBE_RESV_MEM_SIZE > this.config.probeSize) {
        throw new RangeError(`endpoint ${e.id}: its RESV_MEM properties exceed probe_size`);
      }
      this.#endpoints.set(e.id, {
        id: e.id >>> 0,
        known: true,
        resvMem: e.resvMem ?? [],
        domain: null,
      });
    }
    this.#featLo = Number(this.features & 0xffff_ffffn);
    this.#updateBypass();
  }

  // --- Feature negotiation and config --------------------------------------------------

  /** Whether feature bit `n` was negotiated (bits 0..31 cached, no BigInt on the request path). */
  has(n: number): boolean {
    return n < 32 ? (this.#featLo & (1 << n)) !== 0 : (this.features & bit(n)) !== 0n;
  }

  /** Whether feature bit `n` is offered. */
  offers(n: number): boolean {
    return (this.deviceFeatures & bit(n)) !== 0n;
  }

  /**
   * Records the driver's accepted features (spec §3.1.1): negotiated = offered ∩ accepted.
   * @returns the negotiated mask.
   */
  negotiate(driverFeatures: bigint): bigint {
    this.features = this.deviceFeatures & driverFeatures;
    this.#featLo = Number(this.features & 0xffff_ffffn);
    this.#updateBypass();
    return this.features;
  }

  /** The 40-byte config space as the driver reads it (spec §5.13.4). */
  readConfig(): Uint8Array {
    return encodeViommuConfig(this.config, new Uint8Array(VIRTIO_IOMMU_CONFIG_SIZE));
  }

  /**
   * A driver write to config space. Only `bypass` (offset 0x24, one byte) is writable, and only
   * with `VIRTIO_IOMMU_F_BYPASS_CONFIG` negotiated (spec §5.13.4.2); other writes are ignored,
   * and a value other than 0/1 is ignored too.
   */
  writeConfig(offset: number, bytes: Uint8Array): void {
    if (!this.has(VIRTIO_IOMMU_F_BYPASS_CONFIG)) return;
    const i = VIRTIO_IOMMU_CONFIG_BYPASS - offset;
    if (i < 0 || i >= bytes.length) return;
    const v = bytes[i];
    if (v > 1) return;
    this.config.bypass = v;
    this.#updateBypass();
  }

  #updateBypass(): void {
    // Spec §5.13.6.2: bypass if BYPASS_CONFIG is offered and bypass == 1 (even if the driver did
    // not accept it), or F_BYPASS negotiated.
    this.bypassUnattached =
      (this.offers(VIRTIO_IOMMU_F_BYPASS_CONFIG) && this.config.bypass === 1) ||
      this.has(VIRTIO_IOMMU_F_BYPASS);
  }

  /**
   * Device reset (spec §2.1): every domain and mapping is gone, endpoints are unattached, the
   * negotiated features are forgotten. `bypass` is sticky across a device reset (spec SHOULD).
   * Queues are reset by their owner.
   */
  reset(): void {
    for (const d of this.#domains.values()) d.tree.clear();
    this.#domains.clear();
    for (const e of this.#endpoints.values()) e.domain = null;
    this.#mappingCount = 0;
    this.features = this.deviceFeatures;
    this.#featLo = Number(this.features & 0xffff_ffffn);
    this.broken = null;
    this.#updateBypass();
  }

  /** System reset: a device reset that also restores `bypass` to its boot value. */
  systemReset(): void {
    this.config.bypass = this.#bootBypass;
    this.reset();
  }

  // --- Endpoint views -----------------------------------------------------------------

  /**
   * The DMA view of endpoint `id` (created on first use, then the same object). An ID that the
   * device does not manage gets a space too: identity under bypass, else R_UNKNOWN faults.
   */
  endpointSpace(id: number): ViommuEndpointSpace {
    let s = this.#spaces.get(id);
    if (s === undefined) {
      const ep = this.#endpoints.get(id) ??
        { id: id >>> 0, known: false, resvMem: [], domain: null };
      s = new ViommuEndpointSpace(ep, this.#host);
      this.#spaces.set(id, s);
    }
    return s;
  }

  /** IDs of the existing domains, ascending. */
  domainIds(): number[] {
    return [...this.#domains.keys()].sort((a, b) => a - b);
  }

  /** Snapshot of a domain's mappings in IOVA order, or `null` when the domain does not exist. */
  domainMappings(domain: number): ViommuMapping[] | null {
    const d = this.#domains.get(domain);
    return d === undefined ? null : d.tree.entries();
  }

  /** The domain endpoint `id` is attached to, or `null`. */
  endpointDomain(id: number): number | null {
    return this.#endpoints.get(id)?.domain?.id ?? null;
  }

  /** Total mappings over all domains. */
  get mappingCount(): number {
    return this.#mappingCount;
  }

  // --- Queues --------------------------------------------------------------------------

  /** Connects the device-side requestq and (optional) eventq. */
  attachQueues(requestq: DeviceQueue, eventq: DeviceQueue | null = null): void {
    this.#requestq = requestq;
    this.#eventq = eventq;
  }

  /**
   * Handles an available buffer notification on the requestq: pops every available request,
   * processes it, pushes it used and publishes. A queue error (hostile descriptors) stops the
   * device (`broken`, NEEDS_RESET) without losing completed requests.
   * @returns whether the driver must be notified (used buffer notification).
   */
  processRequestQueue(): boolean {
    const q = this.#requestq;
    if (q === null || this.broken !== null) return false;
    let pushed = 0;
    try {
      for (let c = q.pop(); c !== null; c = q.pop()) {
        q.push(c, this.processRequest(c));
        pushed++;
      }
    } catch (e) {
      if (!(e instanceof VirtqError)) throw e;
      this.broken = e;
    }
    return pushed > 0 ? q.flush() : false;
  }

  /**
   * Writes a fault report (spec §5.13.6.9) into the next eventq buffer; drops it when there is
   * no eventq or no buffer (the spec allows dropping), or when the buffer is shorter than 24
   * bytes (returned with used length 0). Called by the endpoint spaces; public for tests.
   */
  reportFault(reason: number, flags: number, endpoint: number, address: U64): void {
    const q = this.#eventq;
    if (q === null || this.broken !== null) {
      this.stats.faultsDropped++;
      return;
    }
    try {
      const c = q.pop();
      if (c === null) {
        this.stats.faultsDropped++;
        return;
      }
      if (c.writableBytes < VIRTIO_IOMMU_FAULT_SIZE) {
        q.push(c, 0);
        this.stats.faultsDropped++;
      } else {
        encodeViommuFault({ reason, flags, endpoint, address }, this.#fault);
        q.push(c, c.writeFrom(this.#fault));
        this.stats.faultsReported++;
      }
      q.flush();
    } catch (e) {
      if (!(e instanceof VirtqError)) throw e;
      this.broken = e;
      this.stats.faultsDropped++;
    }
  }

  // --- Request processing ---------------------------------------------------------------

  /**
   * Processes one requestq buffer and writes its tail (and PROBE properties).
   * @returns the used length: bytes written into the writable part (0 when unparseable).
   */
  processRequest(chain: Chain): number {
    const wbytes = chain.writableBytes;
    const rbytes = chain.readableBytes;
    if (wbytes < VIRTIO_IOMMU_REQ_TAIL_SIZE || rbytes < 4) {
      this.stats.unparsed++;
      return 0;
    }
    const sc = this.#scratch;
    try {
      // Copies min(rbytes, 72) bytes: a readable part longer than any request is only read up
      // to its head, whose type tells an unknown request (used length 0) from a known one of the
      // wrong size (DEVERR).
      chain.readInto(sc);
    } catch (e) {
      if (!(e instanceof MemoryFault)) throw e;
      return this.#complete(chain, VIRTIO_IOMMU_S_FAULT);
    }
    // Fast path for well-formed MAP / UNMAP (the per-buffer traffic): no decode objects.
    if (wbytes === VIRTIO_IOMMU_REQ_TAIL_SIZE) {
      const v = this.#sv;
      if (sc[0] === VIRTIO_IOMMU_T_MAP && rbytes === VIRTIO_IOMMU_MAP_SIZE) {
        const m = this.#mreq;
        m.domain = v.getUint32(4, true);
        m.virtStart = u64FromParts(v.getUint32(8, true), v.getUint32(12, true));
        m.virtEnd = u64FromParts(v.getUint32(16, true), v.getUint32(20, true));
        m.physStart = u64FromParts(v.getUint32(24, true), v.getUint32(28, true));
        m.flags = v.getUint32(32, true);
        return this.#complete(chain, this.#map(m));
      }
      if (
        sc[0] === VIRTIO_IOMMU_T_UNMAP && rbytes === VIRTIO_IOMMU_UNMAP_SIZE &&
        v.getUint32(24, true) === 0
      ) {
        const u = this.#ureq;
        u.domain = v.getUint32(4, true);
        u.virtStart = u64FromParts(v.getUint32(8, true), v.getUint32(12, true));
        u.virtEnd = u64FromParts(v.getUint32(16, true), v.getUint32(20, true));
        return this.#complete(chain, this.#unmap(u));
      }
    }
    const readable = sc.subarray(0, rbytes > sc.length ? 4 : rbytes);
    const d = rbytes > readable.length
      ? (viommuRequestSize(readable[0]) === 0
        ? { kind: "unknown-type" as const, type: readable[0] }
        : { kind: "bad-size" as const })
      : decodeViommuRequest(readable);
    if (d.kind === "short-head") {
      this.stats.unparsed++;
      return 0;
    }
    if (d.kind === "unknown-type") {
      if (this.#unknownType === "unsupp") return this.#complete(chain, VIRTIO_IOMMU_S_UNSUPP);
      this.stats.unparsed++;
      return 0;
    }
    if (d.kind === "bad-size") return this.#complete(chain, VIRTIO_IOMMU_S_DEVERR);
    const req = d.request;
    if (req.type === VIRTIO_IOMMU_T_PROBE && !this.offers(VIRTIO_IOMMU_F_PROBE)) {
      this.stats.unparsed++;
      return 0;
    }
    if (req.type !== VIRTIO_IOMMU_T_PROBE && wbytes !== VIRTIO_IOMMU_REQ_TAIL_SIZE) {
      return this.#complete(chain, VIRTIO_IOMMU_S_DEVERR);
    }
    if (d.reservedNonZero) return this.#complete(chain, VIRTIO_IOMMU_S_INVAL);
    switch (req.type) {
      case VIRTIO_IOMMU_T_ATTACH:
        return this.#complete(chain, this.#attach(req));
      case VIRTIO_IOMMU_T_DETACH:
        return this.#complete(chain, this.#detach(req));
      case VIRTIO_IOMMU_T_MAP:
        return this.#complete(chain, this.#map(req));
      case VIRTIO_IOMMU_T_UNMAP:
        return this.#complete(chain, this.#unmap(req));
      case VIRTIO_IOMMU_T_PROBE:
        return this.#probe(chain, req);
    }
  }

  /** Writes the tail (last 4 writable bytes; zeroes any bytes before it) and counts the status. */
  #complete(chain: Chain, status: number, prefixWritten = false): number {
    const w = chain.writableBytes;
    this.#tail[0] = status;
    try {
      if (!prefixWritten && w > VIRTIO_IOMMU_REQ_TAIL_SIZE) {
        chain.writeFrom(new Uint8Array(w - VIRTIO_IOMMU_REQ_TAIL_SIZE));
      }
      chain.writeFrom(this.#tail, w - VIRTIO_IOMMU_REQ_TAIL_SIZE);
    } catch (e) {
      if (!(e instanceof MemoryFault)) throw e;
      this.stats.unparsed++;
      return 0;
    }
    this.stats.statusCounts[status]++;
    return w;
  }

  #inDomainRange(domain: number): boolean {
    if (!this.offers(VIRTIO_IOMMU_F_DOMAIN_RANGE)) return true;
    return domain >= this.config.domainStart && domain <= this.config.domainEnd;
  }

  #detachEndpoint(ep: ViommuEndpoint): void {
    const old = ep.domain;
    if (old === null) return;
    old.endpoints.delete(ep.id);
    ep.domain = null;
    if (old.endpoints.size === 0) {
      // Spec §5.13.6.4: once the last endpoint is detached the domain ceases to exist.
      this.#mappingCount -= old.tree.count;
      old.tree.clear();
      this.#domains.delete(old.id);
    }
  }

  #attach(req: ViommuAttach): number {
    // Spec §5.13.6.3.2.
    if ((req.flags & ~VIRTIO_IOMMU_ATTACH_F_BYPASS) !== 0) return VIRTIO_IOMMU_S_INVAL;
    const bypass = (req.flags & VIRTIO_IOMMU_ATTACH_F_BYPASS) !== 0;
    if (bypass && !this.has(VIRTIO_IOMMU_F_BYPASS_CONFIG)) return VIRTIO_IOMMU_S_INVAL;
    const ep = this.#endpoints.get(req.endpoint);
    if (ep === undefined) return VIRTIO_IOMMU_S_NOENT;
    if (!this.#inDomainRange(req.domain)) return VIRTIO_IOMMU_S_RANGE;
    let dom = this.#domains.get(req.domain);
    if (dom !== undefined) {
      if (dom.bypass !== bypass) return VIRTIO_IOMMU_S_INVAL;
      if (ep.domain === dom) return VIRTIO_IOMMU_S_OK;
      if (!this.#multi && dom.endpoints.size > 0) return VIRTIO_IOMMU_S_UNSUPP;
      if (this.#overlapsResv(dom.tree, ep)) return VIRTIO_IOMMU_S_UNSUPP;
    } else if (this.#domains.size >= this.#maxDomains) {
      // Detaching from a domain that would then disappear frees one slot.
      const freed = ep.domain !== null && ep.domain.endpoints.size === 1;
      if (!freed) return VIRTIO_IOMMU_S_NOMEM;
    }
    this.#detachEndpoint(ep);
    if (dom === undefined) {
      dom = { id: req.domain, bypass, tree: new ViommuMappingTree(), endpoints: new Set() };
      this.#domains.set(req.domain, dom);
    }
    dom.endpoints.add(ep.id);
    ep.domain = dom;
    return VIRTIO_IOMMU_S_OK;
  }

  /** True when a RESERVED region of `ep` intersects a mapping of `tree` (incompatible). */
  #overlapsResv(tree: ViommuMappingTree, ep: ViommuEndpoint): boolean {
    for (const r of ep.resvMem) {
      if (r.subtype !== VIRTIO_IOMMU_RESV_MEM_T_MSI && tree.overlaps(r.start, r.end)) return true;
    }
    return false;
  }

  #detach(req: ViommuDetach): number {
    // Spec §5.13.6.4.2.
    const ep = this.#endpoints.get(req.endpoint);
    if (ep === undefined) return VIRTIO_IOMMU_S_NOENT;
    if (ep.domain === null || ep.domain.id !== req.domain) return VIRTIO_IOMMU_S_INVAL;
    this.#detachEndpoint(ep);
    return VIRTIO_IOMMU_S_OK;
  }

  #map(req: ViommuMap): number {
    // Spec §5.13.6.5.2.
    if (!this.has(VIRTIO_IOMMU_F_MAP_UNMAP)) return VIRTIO_IOMMU_S_UNSUPP;
    if ((req.flags & ~VIRTIO_IOMMU_MAP_F_MASK) !== 0) return VIRTIO_IOMMU_S_INVAL;
    if ((req.flags & VIRTIO_IOMMU_MAP_F_MMIO) !== 0 && !this.has(VIRTIO_IOMMU_F_MMIO)) {
      return VIRTIO_IOMMU_S_INVAL;
    }
    const dom = this.#domains.get(req.domain);
    if (dom === undefined) return VIRTIO_IOMMU_S_NOENT;
    if (dom.bypass) return VIRTIO_IOMMU_S_INVAL;
    const vs = req.virtStart, ve = req.virtEnd, ps = req.physStart, g = this.#granule;
    if (ve < vs) return VIRTIO_IOMMU_S_INVAL;
    if (
      typeof vs === "number" && typeof ve === "number" && typeof ps === "number" &&
      typeof g === "number"
    ) {
      // Number fast path: every value is a safe integer (ve + 1 <= 2^53 stays exact).
      if (vs % g !== 0 || ps % g !== 0 || (ve + 1) % g !== 0) return VIRTIO_IOMMU_S_RANGE;
      if (ps + (ve - vs) >= 2 ** 52) return VIRTIO_IOMMU_S_RANGE;
    } else {
      const bvs = BigInt(vs), bve = BigInt(ve), bps = BigInt(ps), bg = BigInt(g);
      if (bvs % bg !== 0n || bps % bg !== 0n || (bve + 1n) % bg !== 0n) {
        return VIRTIO_IOMMU_S_RANGE;
      }
      if (bps + (bve - bvs) >= 1n << 52n) return VIRTIO_IOMMU_S_RANGE;
    }
    // Mixed number/bigint comparisons are exact in JavaScript.
    if (
      this.#inputRange && (vs < this.config.inputStart || ve > this.config.inputEnd)
    ) return VIRTIO_IOMMU_S_RANGE;
    for (const id of dom.endpoints) {
      for (const r of this.#endpoints.get(id)!.resvMem) {
        // Spec: the device SHOULD reject a MAP that overlaps a RESV_MEM region.
        if (r.start <= ve && r.end >= vs) return VIRTIO_IOMMU_S_INVAL;
      }
    }
    if (dom.tree.overlaps(req.virtStart, req.virtEnd)) return VIRTIO_IOMMU_S_INVAL;
    if (this.#mappingCount >= this.#maxMappings) return VIRTIO_IOMMU_S_NOMEM;
    dom.tree.insert(req.virtStart, req.virtEnd, req.physStart, req.flags);
    this.#mappingCount++;
    return VIRTIO_IOMMU_S_OK;
  }

  #unmap(req: ViommuUnmap): number {
    // Spec §5.13.6.6.2.
    if (!this.has(VIRTIO_IOMMU_F_MAP_UNMAP)) return VIRTIO_IOMMU_S_UNSUPP;
    const dom = this.#domains.get(req.domain);
    if (dom === undefined) return VIRTIO_IOMMU_S_NOENT;
    if (dom.bypass) return VIRTIO_IOMMU_S_INVAL;
    if (req.virtEnd < req.virtStart) return VIRTIO_IOMMU_S_INVAL;
    const removed = dom.tree.unmap(req.virtStart, req.virtEnd);
    if (removed < 0) return VIRTIO_IOMMU_S_RANGE;
    this.#mappingCount -= removed;
    return VIRTIO_IOMMU_S_OK;
  }

  #probe(chain: Chain, req: ViommuProbe): number {
    // Spec §5.13.6.7.2.
    const ep = this.#endpoints.get(req.endpoint);
    if (ep === undefined) return this.#complete(chain, VIRTIO_IOMMU_S_NOENT);
    const area = new Uint8Array(chain.writableBytes - VIRTIO_IOMMU_REQ_TAIL_SIZE);
    // Spec §5.13.6.7.2: an area smaller than probe_size gets no property and INVAL.
    const fits = area.length >= this.config.probeSize && encodeProbeProperties(ep.resvMem, area);
    if (!fits) area.fill(0);
    try {
      chain.writeFrom(area);
    } catch (e) {
      if (!(e instanceof MemoryFault)) throw e;
      return this.#complete(chain, VIRTIO_IOMMU_S_IOERR, true);
    }
    return this.#complete(chain, fits ? VIRTIO_IOMMU_S_OK : VIRTIO_IOMMU_S_INVAL, true);
  }
}
