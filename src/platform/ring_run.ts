/**
 * The ring run: buffers through real rings over one instance of the device's
 * {@link PlatformAssembly}. A driver queue and a loopback device queue share the sparse guest
 * memory: a known pattern goes out through a device-readable buffer, the device copies it into
 * a device-writable buffer, and the driver checks what came back where. Its verdict is the
 * observed one.
 *
 * @module
 */

import { hex64, type U64 } from "../memory/mod.ts";
import {
  DMA_ACCESS_READ,
  type DmaApi,
  type DmaDirection,
  DmaFault,
  DmaTranslation,
} from "../dma/mod.ts";
import { createQueuePair, featureBit, VIRTIO_F_RING_PACKED, VirtqError } from "../virtio/mod.ts";
import type { PlatformInstance } from "./assembly.ts";
import { align4k, equalBytes, type Outcome, outcomeOf, pattern, segments } from "./outcome.ts";
import type { DevicePlan } from "./policy_types.ts";
import type { Topology } from "./topology_types.ts";

/** Queue Size used for topology runs. */
export const RUN_QUEUE_SIZE = 8;

/** Wraps a DmaApi and records the bus address of every streaming map (cold path). */
class RecordingApi implements DmaApi {
  readonly name: string;
  readonly maps: { bus: U64; len: number; dir: DmaDirection }[] = [];
  constructor(readonly inner: DmaApi) {
    this.name = inner.name;
  }
  map(gpa: number, length: number, dir: DmaDirection): U64 {
    const bus = this.inner.map(gpa, length, dir);
    this.maps.push({ bus, len: length, dir });
    return bus;
  }
  unmap(bus: U64, length: number, dir: DmaDirection): void {
    this.inner.unmap(bus, length, dir);
  }
  syncForCpu(bus: U64, length: number, dir: DmaDirection): void {
    this.inner.syncForCpu(bus, length, dir);
  }
  syncForDevice(bus: U64, length: number, dir: DmaDirection): void {
    this.inner.syncForDevice(bus, length, dir);
  }
  mapCoherent(gpa: number, length: number): U64 {
    return this.inner.mapCoherent(gpa, length);
  }
  unmapCoherent(bus: U64, length: number): void {
    this.inner.unmapCoherent(bus, length);
  }
}

/**
 * Runs one buffer out and back through the rings of device `plan` of `t` over platform
 * instance `v`, and returns the observed verdict.
 */
export function runRings(t: Topology, plan: DevicePlan, v: PlatformInstance): Outcome {
  const mem = v.sparse.memory;
  const bytes = t.workload.bufferBytes;
  const out = pattern(bytes, 0xa5);
  const wGpa = v.bufferGpa + align4k(bytes);
  mem.write(v.bufferGpa, out);
  mem.fill(wGpa, bytes, 0xcc);
  const api = new RecordingApi(v.api);
  const lastLayer = v.spaceLayers.at(-1)!.name;
  try {
    return roundTrip(t, plan, v, api, out, wGpa);
  } catch (e) {
    const o = outcomeOf(e);
    if (o) return o;
    if (e instanceof VirtqError) {
      return {
        verdict: "corrupt",
        layer: lastLayer,
        detail: `the device read garbage ring contents: ${e.message}`,
      };
    }
    throw e;
  }
}

/** Driver adds and kicks, the device copies readable into writable, the driver checks. */
function roundTrip(
  t: Topology,
  plan: DevicePlan,
  v: PlatformInstance,
  api: RecordingApi,
  out: Uint8Array,
  wGpa: number,
): Outcome {
  const mem = v.sparse.memory;
  const bytes = t.workload.bufferBytes;
  const layout = t.workload.layout;
  const features = plan.negotiated |
    (layout === "packed" ? featureBit(VIRTIO_F_RING_PACKED) : 0n);
  const lastLayer = v.spaceLayers.at(-1)!.name;
  const pair = createQueuePair<number>({
    layout,
    size: RUN_QUEUE_SIZE,
    features,
    memory: mem,
    ringGpa: v.ringGpa,
    dmaApi: api,
    dmaSpace: v.space,
    driverForcesDmaApi: true, // the plan decided whether the driver maps (quirks included)
  });
  pair.driver.add(segments(t, plan, v.bufferGpa), segments(t, plan, wGpa), 1);
  pair.driver.kick();
  if (v.splitUnmap && api.maps.length > 0) v.splitUnmap(api.maps[0].bus, api.maps[0].len);
  const chain = pair.device.pop();
  if (chain === null) {
    return {
      verdict: "corrupt",
      layer: lastLayer,
      detail: "the device read the driver area at the wrong GPA and saw no buffer",
    };
  }
  const written = chain.copyReadableToWritable();
  pair.device.push(chain, written);
  pair.device.flush();
  const token = pair.driver.getUsed();
  if (token === undefined) {
    return {
      verdict: "corrupt",
      layer: lastLayer,
      detail:
        "the device wrote the used ring at the wrong GPA: the driver never sees the buffer back",
    };
  }
  const back = mem.view(wGpa, bytes);
  if (!equalBytes(back, out)) {
    let i = 0;
    while (i < bytes && back[i] === out[i]) i++;
    return {
      verdict: "corrupt",
      layer: lastLayer,
      detail: `used len ${pair.driver.usedLen}: returned data differs from byte ${i} ` +
        `(got 0x${back[i].toString(16)}, sent 0x${out[i].toString(16)})`,
    };
  }
  return staleAfterUnmap(v, api) ?? {
    verdict: "ok",
    layer: null,
    detail:
      `${bytes} bytes out and back intact over a ${layout} ring (used len ${pair.driver.usedLen})`,
  };
}

/** After the driver unmapped: can the device still reach the first mapping? */
function staleAfterUnmap(v: PlatformInstance, api: RecordingApi): Outcome | null {
  if (!v.revokes || api.maps.length === 0) return null;
  const t0 = new DmaTranslation();
  const m0 = api.maps[0];
  try {
    v.space.translate(m0.bus, Math.min(m0.len, 64), DMA_ACCESS_READ, t0);
    return {
      verdict: "stale-window",
      layer: v.spaceLayers[0].name,
      detail: `after unmap the device still reaches ${hex64(t0.gpa)} through ${hex64(m0.bus)}`,
    };
  } catch (e) {
    if (!(e instanceof DmaFault)) throw e;
    return null;
  }
}
