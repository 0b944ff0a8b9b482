/**
 * Fuzz target `viommu-requests`: hostile request streams against the virtio-iommu device.
 *
 * The device is built with a drawn domain limit (`maxDomains` 1 to 3, or the default 65536), so
 * ATTACH meets NOMEM with and without an endpoint whose detach would free a slot (§5.13.6.3.2).
 *
 * Each step sends one request (well-formed with random fields, or a well-formed one with a
 * targeted corruption: a flipped byte, a truncated or extended readable part, a wrong tail size)
 * as a hand-built chain. Oracles, after every request:
 * - `status`: the status (or used length 0) equals the reference model's (spec §5.13.6 with the
 *   device's documented policy);
 * - `mappings`: every domain's mapping set equals the model's, and the set of domains and the
 *   endpoint attachments too (a rejected request changes nothing);
 * - `translation` (after the last request): an endpoint the model says bypasses the IOMMU
 *   translates bus = GPA up to 2^52 and faults `out-of-window` past it ({@link checkIdentityLimit});
 * - nothing but `processRequest`'s return value leaves the device (no throw).
 *
 * The model is written independently of the device: plain arrays of bigint intervals.
 * @module
 */

import fc from "fast-check";
import { type FuzzTarget, OracleFailure } from "../target.ts";
import {
  Chain,
  DMA_ACCESS_READ,
  DMA_ACCESS_WRITE,
  DmaFault,
  DmaTranslation,
  GuestMemory,
  type ViommuRequest,
  VIRTIO_IOMMU_F_BYPASS_CONFIG,
  VIRTIO_IOMMU_F_DOMAIN_RANGE,
  VIRTIO_IOMMU_F_INPUT_RANGE,
  VIRTIO_IOMMU_F_MAP_UNMAP,
  VIRTIO_IOMMU_F_MMIO,
  VirtioIommuDevice,
} from "../../src/mod.ts";
import { decodeViommuRequest, encodeViommuRequest } from "../../src/devices/_internal.ts";

const G = 0x1000n;
const ENDPOINTS = [1, 2, 3];
const INPUT_END = 0xff_ffffn;
const MAX_MAPPINGS = 5;

/** One step: a request and an optional corruption. */
export interface ViommuRequestStep {
  /** The request before corruption. */
  readonly req: ViommuRequest;
  /** 0 none, 1 flip a byte, 2 truncate, 3 extend, 4 wrong tail size, 5 head reserved byte set. */
  readonly corrupt: number;
  /** Position/amount parameter of the corruption. */
  readonly arg: number;
}

const raw64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
/** An inclusive IOVA range: mostly page-aligned and short, sometimes hostile. */
const range = (maxPages: number) =>
  fc.oneof(
    {
      weight: 8,
      arbitrary: fc.tuple(fc.integer({ min: 0, max: 24 }), fc.integer({ min: 1, max: maxPages }))
        .map(([p, n]) => [BigInt(p) * G, BigInt(p + n) * G - 1n] as const),
    },
    {
      weight: 1,
      arbitrary: fc.tuple(fc.integer({ min: 0, max: 0x20000 }), fc.integer({ min: 0, max: 0x8000 }))
        .map(([s, n]) => [BigInt(s), BigInt(s + n)] as const),
    },
    { weight: 1, arbitrary: fc.tuple(raw64, raw64) },
  );
const phys = fc.oneof(
  { weight: 8, arbitrary: fc.integer({ min: 0, max: 64 }).map((p) => BigInt(p) * G) },
  { weight: 1, arbitrary: raw64.map((a) => a & ((1n << 60n) - 1n)) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 0x20000 }).map(BigInt) },
);
const domain = fc.oneof(
  { weight: 9, arbitrary: fc.integer({ min: 0, max: 1 }) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffff_ffff }) },
);
const endpoint = fc.oneof(
  { weight: 9, arbitrary: fc.constantFrom(...ENDPOINTS) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffff_ffff }) },
);
const small = (n: number) => fc.integer({ min: 0, max: n });
const flags = fc.oneof({ weight: 9, arbitrary: small(3) }, { weight: 1, arbitrary: small(15) });

const request: fc.Arbitrary<ViommuRequest> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      type: fc.constant(1 as const),
      domain,
      endpoint,
      flags: fc.oneof({ weight: 8, arbitrary: fc.constant(0) }, { weight: 2, arbitrary: small(3) }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ type: fc.constant(2 as const), domain, endpoint }) },
  {
    weight: 5,
    arbitrary: fc.tuple(domain, range(4), phys, flags).map(([d, [s, e], p, f]) => ({
      type: 3 as const,
      domain: d,
      virtStart: toU(s),
      virtEnd: toU(e),
      physStart: toU(p),
      flags: f,
    })),
  },
  {
    weight: 3,
    arbitrary: fc.tuple(domain, range(16)).map(([d, [s, e]]) => ({
      type: 4 as const,
      domain: d,
      virtStart: toU(s),
      virtEnd: toU(e),
    })),
  },
  { weight: 1, arbitrary: fc.record({ type: fc.constant(5 as const), endpoint }) },
);

function toU(v: bigint): number | bigint {
  return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

interface ModelMapping {
  s: bigint;
  e: bigint;
  p: bigint;
  f: number;
}
interface ModelDomain {
  bypass: boolean;
  maps: ModelMapping[];
  eps: Set<number>;
}

/**
 * The reference model: the spec's semantics over plain arrays, for the features negotiated
 * (§5.13.6.3.2: ATTACH with the bypass flag needs BYPASS_CONFIG; §5.13.6.5.2 / §5.13.6.6.2:
 * MAP and UNMAP need MAP_UNMAP, else UNSUPP; a MAP with the MMIO flag needs MMIO).
 */
class Model {
  constructor(
    readonly declined: ReadonlySet<number> = new Set(),
    readonly maxDomains = DEFAULT_MAX_DOMAINS,
  ) {}
  /** Bytes of the PROBE properties area of the request being applied. */
  probeArea = PROBE_SIZE;
  domains = new Map<number, ModelDomain>();
  attached = new Map<number, number>();
  count = 0;

  #detach(ep: number): void {
    const d = this.attached.get(ep);
    if (d === undefined) return;
    const dom = this.domains.get(d)!;
    dom.eps.delete(ep);
    this.attached.delete(ep);
    if (dom.eps.size === 0) {
      this.count -= dom.maps.length;
      this.domains.delete(d);
    }
  }

  /** Applies a decoded request; returns the expected status. */
  apply(r: ViommuRequest): number {
    switch (r.type) {
      case 1: {
        if ((r.flags & ~1) !== 0) return 4;
        if ((r.flags & 1) !== 0 && this.declined.has(VIRTIO_IOMMU_F_BYPASS_CONFIG)) return 4;
        if (!ENDPOINTS.includes(r.endpoint)) return 6;
        const bypass = (r.flags & 1) !== 0;
        const dom = this.domains.get(r.domain);
        if (dom !== undefined) {
          if (dom.bypass !== bypass) return 4;
          if (this.attached.get(r.endpoint) === r.domain) return 0;
        } else if (this.domains.size >= this.maxDomains) {
          // a new domain past the limit: NOMEM, unless the endpoint's detach removes its
          // current domain (it is that domain's only endpoint)
          const cur = this.attached.get(r.endpoint);
          if (cur === undefined || this.domains.get(cur)!.eps.size !== 1) return 8;
        }
        this.#detach(r.endpoint);
        const d = dom ?? { bypass, maps: [], eps: new Set<number>() };
        this.domains.set(r.domain, d);
        d.eps.add(r.endpoint);
        this.attached.set(r.endpoint, r.domain);
        return 0;
      }
      case 2: {
        if (!ENDPOINTS.includes(r.endpoint)) return 6;
        if (this.attached.get(r.endpoint) !== r.domain) return 4;
        this.#detach(r.endpoint);
        return 0;
      }
      case 3: {
        if (this.declined.has(VIRTIO_IOMMU_F_MAP_UNMAP)) return 2;
        if ((r.flags & ~7) !== 0) return 4;
        if ((r.flags & 4) !== 0 && this.declined.has(VIRTIO_IOMMU_F_MMIO)) return 4;
        const dom = this.domains.get(r.domain);
        if (dom === undefined) return 6;
        if (dom.bypass) return 4;
        const s = BigInt(r.virtStart), e = BigInt(r.virtEnd), p = BigInt(r.physStart);
        if (e < s) return 4;
        if (s % G !== 0n || p % G !== 0n || (e + 1n) % G !== 0n) return 5;
        if (e > INPUT_END) return 5;
        if (p + (e - s) >= 1n << 52n) return 5;
        if (dom.maps.some((m) => m.s <= e && m.e >= s)) return 4;
        if (this.count >= MAX_MAPPINGS) return 8;
        dom.maps.push({ s, e, p, f: r.flags });
        dom.maps.sort((a, b) => (a.s < b.s ? -1 : 1));
        this.count++;
        return 0;
      }
      case 4: {
        if (this.declined.has(VIRTIO_IOMMU_F_MAP_UNMAP)) return 2;
        const dom = this.domains.get(r.domain);
        if (dom === undefined) return 6;
        if (dom.bypass) return 4;
        const s = BigInt(r.virtStart), e = BigInt(r.virtEnd);
        if (e < s) return 4;
        const hit = dom.maps.filter((m) => m.s <= e && m.e >= s);
        if (hit.some((m) => m.s < s || m.e > e)) return 5;
        dom.maps = dom.maps.filter((m) => !hit.includes(m));
        this.count -= hit.length;
        return 0;
      }
      default:
        if (!ENDPOINTS.includes(r.endpoint)) return 6;
        return this.probeArea < PROBE_SIZE ? 4 : 0;
    }
  }
}

const REQ = 0x1000, TAIL = 0x2000, PROBE_SIZE = 64;
/** The device's default domain limit (`VirtioIommuDeviceOptions.maxDomains`). */
const DEFAULT_MAX_DOMAINS = 65536;

/**
 * One input: the features the driver declines (VIRTIO_IOMMU_F_* bits), the device's domain
 * limit (absent: the default), then the requests.
 */
export interface ViommuRequestsInput {
  readonly decline: readonly number[];
  readonly maxDomains?: number;
  readonly steps: readonly ViommuRequestStep[];
}

function runSteps(input: ViommuRequestsInput): void {
  const { steps } = input;
  const mem = GuestMemory.flat(0x4000);
  const dev = new VirtioIommuDevice({
    endpoints: ENDPOINTS.map((id) => ({ id })),
    config: { inputEnd: Number(INPUT_END), probeSize: PROBE_SIZE },
    maxMappings: MAX_MAPPINGS,
    maxDomains: input.maxDomains,
  });
  // The driver accepts what is offered minus the declined bits (§2.2).
  let declined = 0n;
  for (const b of input.decline) declined |= 1n << BigInt(b);
  dev.negotiate(dev.deviceFeatures & ~declined);
  const model = new Model(new Set(input.decline), input.maxDomains ?? DEFAULT_MAX_DOMAINS);
  const chain = new Chain(mem);
  steps.forEach((step, k) => {
    let bytes = encodeViommuRequest(step.req);
    let wlen = step.req.type === 5 ? PROBE_SIZE + 4 : 4;
    switch (step.corrupt) {
      case 1:
        bytes[step.arg % bytes.length] ^= 1 << (step.arg % 8);
        break;
      case 2:
        bytes = bytes.subarray(0, step.arg % bytes.length);
        break;
      case 3: {
        const b = new Uint8Array(bytes.length + 1 + (step.arg % 100));
        b.set(bytes);
        bytes = b;
        break;
      }
      case 4:
        wlen = step.arg % 12;
        break;
      case 5:
        bytes[[1, 2, 3][step.arg % 3]] = 1 + (step.arg % 255);
        break;
    }
    // Expected outcome from the model (the codec is covered by known-answer tests).
    let expectUsed = wlen;
    let expectStatus: number;
    const d = bytes.length <= 72 ? decodeViommuRequest(bytes) : null;
    if (wlen < 4 || bytes.length < 4) {
      expectUsed = 0;
      expectStatus = -1;
    } else if (d === null) {
      expectStatus = bytes[0] >= 1 && bytes[0] <= 5 ? 3 : -1;
    } else if (d.kind === "unknown-type" || d.kind === "short-head") {
      expectStatus = -1;
    } else if (d.kind === "bad-size") expectStatus = 3;
    else if (d.request.type !== 5 && wlen !== 4) expectStatus = 3;
    else if (d.reservedNonZero) expectStatus = 4;
    else {
      model.probeArea = wlen - 4;
      expectStatus = model.apply(d.request);
    }
    if (expectStatus === -1) expectUsed = 0;

    mem.write(REQ, bytes.length > 0x1000 ? bytes.subarray(0, 0x1000) : bytes);
    mem.fill(TAIL, 0x100, 0xee);
    chain.reset(0, 0);
    if (bytes.length > 0) chain.addReadable(REQ, bytes.length);
    if (wlen > 0) chain.addWritable(TAIL, wlen);
    let used: number;
    try {
      used = dev.processRequest(chain);
    } catch (e) {
      throw new OracleFailure("uncaught-exception", `step ${k}: processRequest threw`, e);
    }
    const status = used >= 4 ? mem.readU8(TAIL + used - 4) : -1;
    if (used !== expectUsed || status !== expectStatus) {
      throw new OracleFailure(
        "status",
        `step ${k} (${JSON.stringify(step, (_, v) => typeof v === "bigint" ? `${v}n` : v)}): ` +
          `used ${used} status ${status}, model expects used ${expectUsed} status ${expectStatus}`,
      );
    }
    // Mapping-set oracle.
    const ids = [...model.domains.keys()].sort((a, b) => a - b);
    const devIds = dev.domainIds();
    if (JSON.stringify(ids) !== JSON.stringify(devIds)) {
      throw new OracleFailure("mappings", `step ${k}: domains ${devIds}, model ${ids}`);
    }
    for (const id of ids) {
      const want = model.domains.get(id)!.maps.map((m) => `${m.s}-${m.e}:${m.p}/${m.f}`).join(",");
      const got = dev.domainMappings(id)!.map((m) =>
        `${BigInt(m.virtStart)}-${BigInt(m.virtEnd)}:${BigInt(m.physStart)}/${m.flags}`
      ).join(",");
      if (want !== got) {
        throw new OracleFailure(
          "mappings",
          `step ${k}: domain ${id} has [${got}], model [${want}]`,
        );
      }
    }
    for (const ep of ENDPOINTS) {
      if ((model.attached.get(ep) ?? null) !== dev.endpointDomain(ep)) {
        throw new OracleFailure("mappings", `step ${k}: endpoint ${ep} attachment differs`);
      }
    }
    if (dev.mappingCount !== model.count) {
      throw new OracleFailure("mappings", `step ${k}: count ${dev.mappingCount} vs ${model.count}`);
    }
  });
  checkIdentityLimit(dev, model, steps.length);
}

/** An endpoint the device does not manage (identity under bypass, §5.13.6.2). */
const UNKNOWN_ENDPOINT = 7;
const GPA_LIMIT = 2 ** 52;
const PROBE_LENGTHS = [1, 8, 4096, 0x1_0000];
const probeOut = new DmaTranslation();

/**
 * Oracle `translation` (after the last request, `k` = the step count): every endpoint the model
 * says bypasses the IOMMU (attached to a bypass
 * domain, or unattached or unknown while the device bypasses unattached endpoints, §5.13.6.2)
 * translates bus = GPA up to the end of the guest physical address space (2^52, the device's
 * documented identity limit): an access ending exactly there is whole and identical, one byte
 * further is an `out-of-window` fault. Lengths 1 B to 64 KiB.
 */
function checkIdentityLimit(dev: VirtioIommuDevice, model: Model, k: number): void {
  const len = PROBE_LENGTHS[k % PROBE_LENGTHS.length];
  const access = k % 2 === 0 ? DMA_ACCESS_READ : DMA_ACCESS_WRITE;
  for (const ep of [...ENDPOINTS, UNKNOWN_ENDPOINT]) {
    const d = model.attached.get(ep);
    if (!(d === undefined ? dev.bypassUnattached : model.domains.get(d)!.bypass)) continue;
    const space = dev.endpointSpace(ep);
    const last = GPA_LIMIT - len;
    space.translate(last, len, access, probeOut);
    if (probeOut.gpa !== last || probeOut.length !== len) {
      throw new OracleFailure(
        "translation",
        `after ${k} steps: endpoint ${ep} (bypass) maps ${last}+${len} to ${probeOut.gpa}+${probeOut.length}`,
      );
    }
    let fault: unknown = null;
    try {
      space.translate(last + 1 + (k % 3) * 0x800, len, access, probeOut);
    } catch (e) {
      fault = e;
    }
    if (!(fault instanceof DmaFault && fault.reason === "out-of-window")) {
      throw new OracleFailure(
        "translation",
        `after ${k} steps: endpoint ${ep} (bypass) access of ${len} bytes past 2^52 gave ${
          fault === null ? `GPA ${probeOut.gpa}` : fault
        }, not an out-of-window fault`,
      );
    }
  }
}

/** The `viommu-requests` target. */
export const viommuRequestsTarget: FuzzTarget<ViommuRequestsInput> = {
  name: "viommu-requests",
  description:
    "hostile virtio-iommu request streams vs a reference model of the mapping set, drawn feature negotiation",
  arbitrary: () =>
    fc.record({
      decline: fc.tuple(
        fc.constantFrom(VIRTIO_IOMMU_F_BYPASS_CONFIG, VIRTIO_IOMMU_F_MMIO, -1, -1, -1, -1),
        fc.constantFrom(VIRTIO_IOMMU_F_INPUT_RANGE, VIRTIO_IOMMU_F_DOMAIN_RANGE, -1, -1),
        fc.constantFrom(VIRTIO_IOMMU_F_MAP_UNMAP, ...Array(9).fill(-1)),
      ).map((bits) => [...new Set(bits.filter((b) => b >= 0))]),
      maxDomains: fc.option(fc.integer({ min: 1, max: 3 }), { nil: undefined, freq: 2 }),
      steps: stepsArbitrary(),
    }, { noNullPrototype: true }),
  run: runSteps,
};

function stepsArbitrary(): fc.Arbitrary<ViommuRequestStep[]> {
  return fc.tuple(
    fc.constant<ViommuRequestStep[]>([
      { req: { type: 1, domain: 0, endpoint: 1, flags: 0 }, corrupt: 0, arg: 0 },
      { req: { type: 1, domain: 1, endpoint: 2, flags: 0 }, corrupt: 0, arg: 0 },
    ]),
    fc.array(
      fc.record({
        req: request,
        corrupt: fc.oneof({ weight: 7, arbitrary: fc.constant(0) }, {
          weight: 3,
          arbitrary: fc.integer({ min: 1, max: 5 }),
        }),
        arg: fc.nat(1000),
      }, { noNullPrototype: true }),
      { minLength: 1, maxLength: 60, size: "max" },
    ),
  ).map(([setup, steps]) => [...setup, ...steps]);
}
