/**
 * Resolution of a {@link Topology}: for each virtio device, the negotiated features, the driver's
 * {@link DmaApi} and the device's {@link DmaAddressSpace} built from the policy plan, and a
 * verdict obtained by **running buffers through the rings** (a driver queue and a loopback device
 * queue over sparse guest memory): a known pattern goes out through a device-readable buffer, the
 * device copies it into a device-writable buffer, and the driver checks what came back where.
 *
 * Two verdicts are computed and compared:
 * - `predicted`: one DMA traced through the two views alone, layer by layer (driver mapping
 *   layers, then device translation layers), the basis of the explanation;
 * - `observed`: the ring run.
 * They agree on every preset; the topology fuzz target checks that they always do.
 *
 * Both consume the one assembly of the device's platform ({@link assemblePlatform},
 * `assembly.ts`): prediction is in `predict.ts`, the ring run in `ring_run.ts`.
 *
 * @module
 */

import { assemblePlatform } from "./assembly.ts";
import type { Outcome, TraceStep } from "./outcome.ts";
import { planTopology } from "./policy.ts";
import { type DevicePlan, featureNames } from "./policy_types.ts";
import { predict } from "./predict.ts";
import { runRings } from "./ring_run.ts";
import type { FeatureName, Topology, Verdict } from "./topology_types.ts";

/** The resolution of one device. */
export interface DeviceResolution {
  /** Device id. */
  id: string;
  /** Offered feature names. */
  offered: FeatureName[];
  /** Negotiated feature names (empty when refused). */
  negotiated: FeatureName[];
  /** The policy plan (layers and the reason for each). */
  plan: DevicePlan;
  /** Name of the driver's composed DMA API (`"swiotlb > vt-d-strict"`), or `null`. */
  driverApi: string | null;
  /** Name of the device's composed address space, or `null`. */
  deviceSpace: string | null;
  /** One traced DMA (ring, then the device-readable buffer), layer by layer. */
  trace: TraceStep[];
  /** Verdict predicted from the two views (the trace). */
  predicted: Outcome;
  /** Verdict observed by running buffers through the rings. */
  observed: Outcome;
  /** Where the driver's and the device's views part, or `null` when they agree. */
  partsAt: string | null;
  /** Recorded expectation from the topology's `expect`, if any. */
  expected: { verdict: Verdict; layer?: string } | null;
  /** Notes that do not change the verdict. */
  warnings: string[];
}

/** The resolution of a whole topology. */
export interface TopologyResolution {
  /** Topology name. */
  name: string;
  /** Topology title. */
  title: string;
  /** Catalogue rows. */
  catalogue: string[];
  /** Why the recorded verdicts differ from the catalogue's outcome, when they do. */
  deviation?: string;
  /** One entry per device, in file order. */
  devices: DeviceResolution[];
}

/**
 * Resolves one device of a topology from its plan: prediction (trace) and observation (rings).
 * @param t the topology.
 * @param plan the device's plan from {@link planTopology}.
 */
export function resolveDevice(t: Topology, plan: DevicePlan): DeviceResolution {
  const base = {
    id: plan.device.id,
    offered: featureNames(plan.offered),
    plan,
    expected: t.expect[plan.device.id] ?? null,
    warnings: plan.warnings,
  };
  if (plan.probe.status !== "ok") {
    const o: Outcome = { verdict: plan.probe.status, layer: null, detail: plan.probe.why };
    return {
      ...base,
      negotiated: plan.probe.status === "refused" ? [] : featureNames(plan.negotiated),
      driverApi: null,
      deviceSpace: null,
      trace: [],
      predicted: o,
      observed: o,
      partsAt: plan.probe.status === "refused"
        ? "feature negotiation: the device requires ACCESS_PLATFORM, the driver refuses it"
        : null,
    };
  }
  const platform = assemblePlatform(t, plan);
  const p = predict(t, plan, platform.first);
  const o = runRings(t, plan, platform.instance());
  return {
    ...base,
    negotiated: featureNames(plan.negotiated),
    driverApi: platform.driverApiName,
    deviceSpace: platform.deviceSpaceName,
    trace: p.trace,
    predicted: p.outcome,
    observed: o,
    partsAt: p.partsAt,
  };
}

/**
 * Resolves every device of `t`: plans the two views, traces one DMA through them, and runs
 * buffers through the rings.
 * @returns the resolution; `devices[i].observed.verdict` is the verdict.
 */
export function resolveTopology(t: Topology): TopologyResolution {
  return {
    name: t.name,
    title: t.title,
    catalogue: t.catalogue,
    ...(t.deviation !== undefined ? { deviation: t.deviation } : {}),
    devices: planTopology(t).map((p) => resolveDevice(t, p)),
  };
}
