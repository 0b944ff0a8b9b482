/**
 * The preset topologies: one per row of EDGE_CASES.md (some rows have two: both outcomes the row
 * records), each named for the real platform it stands for and carrying the verdict the
 * catalogue records in its `expect` field. The JSON files sit beside this module; they validate
 * against `docs/topology.schema.json`.
 *
 * @module
 */

import type { TopologyInput } from "../topology_types.ts";

import q35KvmNoViommu from "./q35-kvm-no-viommu.json" with { type: "json" };
import q35IntelIommuQuirk from "./q35-intel-iommu-quirk.json" with { type: "json" };
import q35IntelIommuDriverIgnoresQuirk from "./q35-intel-iommu-driver-ignores-quirk.json" with {
  type: "json",
};
import q35IntelIommuPlatformStrict from "./q35-intel-iommu-platform-strict.json" with {
  type: "json",
};
import q35IntelIommuPassthrough from "./q35-intel-iommu-passthrough.json" with { type: "json" };
import q35IommuPlatformOldDriver from "./q35-iommu-platform-old-driver.json" with { type: "json" };
import q35VhostIommuPlatformNoViommu from "./q35-vhost-iommu-platform-no-viommu.json" with {
  type: "json",
};
import sevVhostVsockNoIotlb from "./sev-vhost-vsock-no-iotlb.json" with { type: "json" };
import sevGuestDeviceWithoutAccessPlatform from "./sev-guest-device-without-access-platform.json" with {
  type: "json",
};
import sevGuestPreEnforcementQuirk from "./sev-guest-pre-enforcement-quirk.json" with {
  type: "json",
};
import sevGuestSwiotlbPoolExhausted from "./sev-guest-swiotlb-pool-exhausted.json" with {
  type: "json",
};
import sevGuestSwiotlb from "./sev-guest-swiotlb.json" with { type: "json" };
import s390ProtectedVirtualizationCcw from "./s390-protected-virtualization-ccw.json" with {
  type: "json",
};
import s390ProtectedVirtualizationWithoutAccessPlatform from "./s390-protected-virtualization-without-access-platform.json" with {
  type: "json",
};
import pseriesTceHostIgnoresIommu from "./pseries-tce-host-ignores-iommu.json" with {
  type: "json",
};
import pseriesDdwDriverUsesDmaApi from "./pseries-ddw-driver-uses-dma-api.json" with {
  type: "json",
};
import pseriesTceDriverUsesDmaApi from "./pseries-tce-driver-uses-dma-api.json" with {
  type: "json",
};
import pseriesPefSecureVmSwiotlb from "./pseries-pef-secure-vm-swiotlb.json" with { type: "json" };
import sparc64Sun4uQuirk from "./sparc64-sun4u-quirk.json" with { type: "json" };
import xenGuestSwiotlbXen from "./xen-guest-swiotlb-xen.json" with { type: "json" };
import xenGuestWithQ35Viommu from "./xen-guest-with-q35-viommu.json" with { type: "json" };
import xenGrantDmaBackendWithoutGrants from "./xen-grant-dma-backend-without-grants.json" with {
  type: "json",
};
import xenGrantDma from "./xen-grant-dma.json" with { type: "json" };
import baremetalVirtioCardBehindVtd from "./baremetal-virtio-card-behind-vtd.json" with {
  type: "json",
};
import virtioCardWithoutOrderPlatform from "./virtio-card-without-order-platform.json" with {
  type: "json",
};
import openvmmArm64Smmuv3TranslatesAll from "./openvmm-arm64-smmuv3-translates-all.json" with {
  type: "json",
};
import arm64VirtSmmuv3Quirk from "./arm64-virt-smmuv3-quirk.json" with { type: "json" };
import q35BypassIommuBridgeStaleDmar from "./q35-bypass-iommu-bridge-stale-dmar.json" with {
  type: "json",
};
import q35BypassIommuBridge from "./q35-bypass-iommu-bridge.json" with { type: "json" };
import viommuBootBypass from "./viommu-boot-bypass.json" with { type: "json" };
import viommuNoBypassUnattached from "./viommu-no-bypass-unattached.json" with { type: "json" };
import viommuSplitUnmapQemu from "./viommu-split-unmap-qemu.json" with { type: "json" };
import viommuIovaInMsiRegion from "./viommu-iova-in-msi-region.json" with { type: "json" };
import viommuIovaInReservedRegion from "./viommu-iova-in-reserved-region.json" with {
  type: "json",
};
import viommuV09DriverFinalDevice from "./viommu-v0-9-driver-final-device.json" with {
  type: "json",
};
import viotViommuInsideOwnRange from "./viot-viommu-inside-own-range.json" with { type: "json" };
import iortIdCountOffByOne from "./iort-id-count-off-by-one.json" with { type: "json" };
import alphaClipperQuirk from "./alpha-clipper-quirk.json" with { type: "json" };
import alphaTyphoonDirectWindow from "./alpha-typhoon-direct-window.json" with { type: "json" };
import alphaTyphoonSgWindow from "./alpha-typhoon-sg-window.json" with { type: "json" };
import alphaMismatchOffBy2g from "./alpha-mismatch-off-by-2g.json" with { type: "json" };
import dtDmaRangesHardwareWithoutAp from "./dt-dma-ranges-hardware-without-ap.json" with {
  type: "json",
};
import legacyVirtioRamAbove16tib from "./legacy-virtio-ram-above-16tib.json" with { type: "json" };
import q35IntelIommuLazyStaleWindow from "./q35-intel-iommu-lazy-stale-window.json" with {
  type: "json",
};
import pkvmRestrictedDmaPoolVirtioBlk from "./pkvm-restricted-dma-pool-virtio-blk.json" with {
  type: "json",
};
import uBoot2023AccessPlatform from "./u-boot-2023-access-platform.json" with { type: "json" };
import uBootOldIgnoresAccessPlatform from "./u-boot-old-ignores-access-platform.json" with {
  type: "json",
};

/** Every preset's JSON (input form), keyed by its file name without `.json`, in catalogue order. */
export const PRESETS: Readonly<Record<string, TopologyInput>> = Object.freeze({
  "q35-kvm-no-viommu": q35KvmNoViommu as TopologyInput,
  "q35-intel-iommu-quirk": q35IntelIommuQuirk as TopologyInput,
  "q35-intel-iommu-driver-ignores-quirk": q35IntelIommuDriverIgnoresQuirk as TopologyInput,
  "q35-intel-iommu-platform-strict": q35IntelIommuPlatformStrict as TopologyInput,
  "q35-intel-iommu-passthrough": q35IntelIommuPassthrough as TopologyInput,
  "q35-iommu-platform-old-driver": q35IommuPlatformOldDriver as TopologyInput,
  "q35-vhost-iommu-platform-no-viommu": q35VhostIommuPlatformNoViommu as TopologyInput,
  "sev-vhost-vsock-no-iotlb": sevVhostVsockNoIotlb as TopologyInput,
  "sev-guest-device-without-access-platform": sevGuestDeviceWithoutAccessPlatform as TopologyInput,
  "sev-guest-pre-enforcement-quirk": sevGuestPreEnforcementQuirk as TopologyInput,
  "sev-guest-swiotlb-pool-exhausted": sevGuestSwiotlbPoolExhausted as TopologyInput,
  "sev-guest-swiotlb": sevGuestSwiotlb as TopologyInput,
  "s390-protected-virtualization-ccw": s390ProtectedVirtualizationCcw as TopologyInput,
  "s390-protected-virtualization-without-access-platform":
    s390ProtectedVirtualizationWithoutAccessPlatform as TopologyInput,
  "pseries-tce-host-ignores-iommu": pseriesTceHostIgnoresIommu as TopologyInput,
  "pseries-ddw-driver-uses-dma-api": pseriesDdwDriverUsesDmaApi as TopologyInput,
  "pseries-tce-driver-uses-dma-api": pseriesTceDriverUsesDmaApi as TopologyInput,
  "pseries-pef-secure-vm-swiotlb": pseriesPefSecureVmSwiotlb as TopologyInput,
  "sparc64-sun4u-quirk": sparc64Sun4uQuirk as TopologyInput,
  "xen-guest-swiotlb-xen": xenGuestSwiotlbXen as TopologyInput,
  "xen-guest-with-q35-viommu": xenGuestWithQ35Viommu as TopologyInput,
  "xen-grant-dma-backend-without-grants": xenGrantDmaBackendWithoutGrants as TopologyInput,
  "xen-grant-dma": xenGrantDma as TopologyInput,
  "baremetal-virtio-card-behind-vtd": baremetalVirtioCardBehindVtd as TopologyInput,
  "virtio-card-without-order-platform": virtioCardWithoutOrderPlatform as TopologyInput,
  "openvmm-arm64-smmuv3-translates-all": openvmmArm64Smmuv3TranslatesAll as TopologyInput,
  "arm64-virt-smmuv3-quirk": arm64VirtSmmuv3Quirk as TopologyInput,
  "q35-bypass-iommu-bridge-stale-dmar": q35BypassIommuBridgeStaleDmar as TopologyInput,
  "q35-bypass-iommu-bridge": q35BypassIommuBridge as TopologyInput,
  "viommu-boot-bypass": viommuBootBypass as TopologyInput,
  "viommu-no-bypass-unattached": viommuNoBypassUnattached as TopologyInput,
  "viommu-split-unmap-qemu": viommuSplitUnmapQemu as TopologyInput,
  "viommu-iova-in-msi-region": viommuIovaInMsiRegion as TopologyInput,
  "viommu-iova-in-reserved-region": viommuIovaInReservedRegion as TopologyInput,
  "viommu-v0-9-driver-final-device": viommuV09DriverFinalDevice as TopologyInput,
  "viot-viommu-inside-own-range": viotViommuInsideOwnRange as TopologyInput,
  "iort-id-count-off-by-one": iortIdCountOffByOne as TopologyInput,
  "alpha-clipper-quirk": alphaClipperQuirk as TopologyInput,
  "alpha-typhoon-direct-window": alphaTyphoonDirectWindow as TopologyInput,
  "alpha-typhoon-sg-window": alphaTyphoonSgWindow as TopologyInput,
  "alpha-mismatch-off-by-2g": alphaMismatchOffBy2g as TopologyInput,
  "dt-dma-ranges-hardware-without-ap": dtDmaRangesHardwareWithoutAp as TopologyInput,
  "legacy-virtio-ram-above-16tib": legacyVirtioRamAbove16tib as TopologyInput,
  "q35-intel-iommu-lazy-stale-window": q35IntelIommuLazyStaleWindow as TopologyInput,
  "pkvm-restricted-dma-pool-virtio-blk": pkvmRestrictedDmaPoolVirtioBlk as TopologyInput,
  "u-boot-2023-access-platform": uBoot2023AccessPlatform as TopologyInput,
  "u-boot-old-ignores-access-platform": uBootOldIgnoresAccessPlatform as TopologyInput,
});

/** Preset names in catalogue order. */
export const PRESET_NAMES: readonly string[] = Object.freeze(Object.keys(PRESETS));
