/** `createQueuePair` and `SgList.of` refuse contradictory or malformed options with catalogue errors. */
import { assert, assertEquals, assertStringIncludes, assertThrows } from "@std/assert";
import {
  createDmaLab,
  createQueuePair,
  featureMask,
  isVirtqError,
  SgList,
  VIRTIO_F_ACCESS_PLATFORM,
  VIRTIO_F_RING_PACKED,
  VIRTIO_F_VERSION_1,
} from "../../src/mod.ts";

function refused(f: () => unknown, code: string, ...parts: string[]): void {
  const e = assertThrows(f);
  assert(isVirtqError(e), String(e));
  assertEquals(e.code, code);
  for (const p of parts) assertStringIncludes(e.message, p);
  assertStringIncludes(e.message, "fix:");
}

Deno.test("createQueuePair: layout vs VIRTIO_F_RING_PACKED, a plain-number features, swiotlb without ACCESS_PLATFORM", () => {
  const V1 = featureMask(VIRTIO_F_VERSION_1);
  refused(
    () => createQueuePair({ layout: "packed", features: V1 }),
    "PAIR_OPTIONS_INVALID",
    "layout",
    "VIRTIO_F_RING_PACKED",
  );
  refused(
    () => createQueuePair({ layout: "split", features: V1 | featureMask(VIRTIO_F_RING_PACKED) }),
    "PAIR_OPTIONS_INVALID",
    '"split"',
  );
  refused(
    () => createQueuePair({ features: 1 as unknown as bigint }),
    "PAIR_OPTIONS_INVALID",
    "features",
    "not a bigint",
  );
  const lab = createDmaLab("swiotlb");
  const swiotlb = {
    memory: lab.memory,
    ringGpa: lab.ringGpa,
    dmaApi: lab.mode.api,
    dmaSpace: lab.mode.space,
  };
  refused(
    () => createQueuePair({ ...swiotlb, features: V1 }),
    "PAIR_OPTIONS_INVALID",
    "dmaApi",
    "VIRTIO_F_ACCESS_PLATFORM",
  );
  // the consistent forms work
  createQueuePair({ ...swiotlb, features: V1 | featureMask(VIRTIO_F_ACCESS_PLATFORM) });
  createQueuePair({ ...swiotlb, features: V1, driverForcesDmaApi: true });
  assertEquals(
    createQueuePair({ layout: "packed" }).features & featureMask(VIRTIO_F_RING_PACKED),
    featureMask(VIRTIO_F_RING_PACKED),
    "default features of a packed pair negotiate the layout",
  );
});

Deno.test("SgList.of: a negative length or address is SEGMENT_INVALID, named in hex", () => {
  refused(() => SgList.of([0x1000, -5]), "SEGMENT_INVALID", "segment 0 at 0x1000", "len -5");
  refused(() => SgList.of([0x1000, 8], [-1, 8]), "SEGMENT_INVALID", "segment 1", "gpa -1");
  refused(() => SgList.of([0x1000, 2 ** 32]), "SEGMENT_INVALID", "0..0xffffffff");
  refused(() => SgList.of([0.5, 8]), "SEGMENT_INVALID", "gpa 0.5");
  assertEquals(SgList.of([0x1000, 0xffff_ffff]).totalBytes(), 0xffff_ffff);
});
