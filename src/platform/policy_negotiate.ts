/**
 * The first two phases of planning a device: feature **negotiation** (what the device offers,
 * what the guest's driver accepts) and **probe** (FEATURES_OK, restricted memory access, a
 * virtio-iommu driver against the wrong spec, legacy queue PFN limits).
 *
 * @module
 */

import {
  featureBit,
  hasFeature,
  VIRTIO_F_ACCESS_PLATFORM,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_ORDER_PLATFORM,
  VIRTIO_F_RING_PACKED,
  VIRTIO_F_VERSION_1,
} from "../virtio/features.ts";
import { acceptsAp, restrictedAccess } from "./policy_guest.ts";
import { FEATURE_BITS, type ProbeOutcome } from "./policy_types.ts";
import { defaultRingGpa } from "./topology_layout.ts";
import type { Topology, TopologyDevice } from "./topology_types.ts";

/** The outcome of feature negotiation for one device (phase 1 of planning). */
export interface Negotiation {
  /** Features the device offers (legacy: the low 32 bits only). */
  offered: bigint;
  /** Features the driver accepts (of those it knows). */
  accepted: bigint;
  /** offered & accepted. */
  negotiated: bigint;
  /** Does the driver accept ACCESS_PLATFORM, and by which rule? */
  ap: { yes: boolean; why: string };
  /** Is ACCESS_PLATFORM offered? */
  apOffered: boolean;
  /** Is ACCESS_PLATFORM negotiated? */
  apNeg: boolean;
}

/** Phase 1: offers and acceptance (legacy: 32 feature bits only). */
export function negotiate(t: Topology, d: TopologyDevice): Negotiation {
  const g = t.guest;
  let offered = 0n;
  for (const f of d.offers) offered |= featureBit(FEATURE_BITS[f]);
  if (d.legacy) offered &= 0xffff_ffffn;
  const ap = acceptsAp(t);
  const acceptOrder = g.acceptsOrderPlatform === "auto" ? ap.yes : g.acceptsOrderPlatform === "yes";
  let accepted = featureBit(VIRTIO_F_VERSION_1) | featureBit(VIRTIO_F_INDIRECT_DESC) |
    featureBit(VIRTIO_F_EVENT_IDX) | featureBit(VIRTIO_F_RING_PACKED);
  if (ap.yes) accepted |= featureBit(VIRTIO_F_ACCESS_PLATFORM);
  if (acceptOrder) accepted |= featureBit(VIRTIO_F_ORDER_PLATFORM);
  const negotiated = offered & accepted;
  return {
    offered,
    accepted,
    negotiated,
    ap,
    apOffered: hasFeature(offered, VIRTIO_F_ACCESS_PLATFORM),
    apNeg: hasFeature(negotiated, VIRTIO_F_ACCESS_PLATFORM),
  };
}

/** Phase 2: FEATURES_OK and the driver's probe, given the negotiation `n`. */
export function probe(t: Topology, d: TopologyDevice, n: Negotiation): ProbeOutcome {
  const g = t.guest;
  let outcome: ProbeOutcome = { status: "ok" };
  const ra = restrictedAccess(t);
  const viommu = t.iommus.find((m) => m.kind === "virtio-iommu" && m.device === d.id);
  if (
    viommu && viommu.kind === "virtio-iommu" && g.viommuDriver !== "none" &&
    g.viommuDriver !== viommu.spec
  ) {
    outcome = {
      status: "probe-fails",
      why:
        `virtio-iommu driver ${g.viommuDriver} against a ${viommu.spec} device: config misread ` +
        "(probe_size read at 0x1C = domain_range.end; MAP flag bits differ)",
    };
  } else if (ra.yes && !hasFeature(n.offered, VIRTIO_F_VERSION_1)) {
    outcome = { status: "probe-fails", why: `device must provide VIRTIO_F_VERSION_1 (${ra.why})` };
  } else if (ra.yes && !n.apOffered) {
    outcome = {
      status: "probe-fails",
      why: `device must provide VIRTIO_F_ACCESS_PLATFORM (${ra.why})`,
    };
  } else if (n.apOffered && !n.apNeg && !d.legacy) {
    outcome = {
      status: "refused",
      why: `the device offers ACCESS_PLATFORM and the driver does not accept it (${n.ap.why}): ` +
        "FEATURES_OK rejected (QEMU virtio_validate_features -EFAULT)",
    };
  }
  const ringGpa = Number(t.workload.ringGpa ?? defaultRingGpa(t));
  if (outcome.status === "ok" && d.legacy && ringGpa / 4096 >= 2 ** 32) {
    outcome = {
      status: "probe-fails",
      why: "legacy queue PFN register is 32 bits: ring at GPA >= 2^44 -> setup fails -E2BIG",
    };
  }
  return outcome;
}
