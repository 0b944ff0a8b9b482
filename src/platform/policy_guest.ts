/**
 * The guest era model: which guest (Linux, U-Boot, iPXE, EDK2) knows which virtio rule since
 * which version: ACCESS_PLATFORM acceptance, restricted memory access for confidential guests.
 * Facts: DMA_MODES.md §2 (Linux), §5 (firmware).
 *
 * @module
 */

import type { Topology } from "./topology_types.ts";

function ver(v: string): number[] {
  return v.split(".").map((x) => parseInt(x, 10));
}
/** True when version `v` >= `min` ("major.minor[.patch]"). */
export function versionAtLeast(v: string, min: string): boolean {
  const a = ver(v), b = ver(min);
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const x = a[i] ?? 0, y = b[i] ?? 0;
    if (x !== y) return x > y;
  }
  return true;
}

/** Is the guest Linux (the era model applies)? */
export function isLinux(t: Topology): boolean {
  return t.guest.os === "linux";
}

/** Does the guest driver accept VIRTIO_F_ACCESS_PLATFORM, and by which rule? */
export function acceptsAp(t: Topology): { yes: boolean; why: string } {
  const g = t.guest;
  if (g.acceptsAccessPlatform !== "auto") {
    return {
      yes: g.acceptsAccessPlatform === "yes",
      why: `guest.acceptsAccessPlatform = ${g.acceptsAccessPlatform}`,
    };
  }
  switch (g.os) {
    case "linux":
      return versionAtLeast(g.version, "4.8")
        ? { yes: true, why: "Linux >= 4.8 knows VIRTIO_F_IOMMU_PLATFORM (1a937693993f)" }
        : { yes: false, why: `Linux ${g.version} predates VIRTIO_F_IOMMU_PLATFORM (4.8)` };
    case "u-boot":
      return versionAtLeast(g.version, "2023.05")
        ? { yes: true, why: "U-Boot >= 2023.05 accepts ACCESS_PLATFORM (bounce buffers)" }
        : { yes: false, why: `U-Boot ${g.version} ignores ACCESS_PLATFORM` };
    case "ipxe":
      return versionAtLeast(g.version, "1.21")
        ? { yes: true, why: "iPXE >= 1.21 (2021) maps virtio buffers through the PCI DMA API" }
        : { yes: false, why: `iPXE ${g.version} ignores ACCESS_PLATFORM` };
    case "edk2":
      return {
        yes: true,
        why: "OVMF virtio drivers map through PciIo when ACCESS_PLATFORM is set",
      };
    case "other":
      return { yes: false, why: "guest.os = other: assumed not to know bit 33" };
  }
}

/** Whether the guest requires VERSION_1 + ACCESS_PLATFORM (restricted memory access). */
export function restrictedAccess(t: Topology): { yes: boolean; why: string } {
  const g = t.guest, cc = t.machine.confidential;
  if (g.restrictedMemAccess !== "auto") {
    return {
      yes: g.restrictedMemAccess === "enforce",
      why: `guest.restrictedMemAccess = ${g.restrictedMemAccess}`,
    };
  }
  if (!isLinux(t)) return { yes: false, why: "not Linux" };
  const rule: Record<string, [string, string]> = {
    "s390-pv": ["5.10", "s390 PV: arch_has_restricted_virtio_memory_access (4ce1cf7b02ed)"],
    sev: ["5.13", "SEV guest enforces restricted virtio memory access (9da54be651f8)"],
    "sev-snp": ["5.13", "SEV guest enforces restricted virtio memory access (9da54be651f8)"],
    tdx: ["5.19", "TDX guest: virtio_require_restricted_mem_acc (tdx_early_init)"],
  };
  const r = rule[cc];
  if (!r) {
    return {
      yes: false,
      why: cc === "none" ? "not a confidential guest" : `${cc}: not enforced by the model`,
    };
  }
  return versionAtLeast(g.version, r[0])
    ? { yes: true, why: r[1] }
    : { yes: false, why: `Linux ${g.version} predates the enforcement (${r[0]}) for ${cc}` };
}

/** Confidential-computing technologies whose guests bounce all DMA through shared memory. */
export const CC_BOUNCE = new Set(["sev", "sev-snp", "tdx", "s390-pv", "power-pef"]);
/** Technologies whose guests bounce through a per-device restricted-dma-pool. */
export const CC_POOL = new Set(["pkvm", "cca"]);
