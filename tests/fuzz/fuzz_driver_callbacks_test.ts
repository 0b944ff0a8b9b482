import { assertEquals } from "@std/assert";
import fc from "fast-check";
import {
  isVirtqError,
  PackedDeviceQueue,
  PackedDriverQueue,
  type SgList,
  SplitDriverQueue,
  VirtqError,
} from "../../src/mod.ts";
import { packedHostileDevice } from "../../fuzz/targets/packed_hostile_device.ts";
import { patchMethod } from "../../fuzz/plant.ts";
import { OracleFailure } from "../../fuzz/target.ts";
import { splitHostileDevice } from "../../fuzz/targets/split_hostile_device.ts";

function oracleOf(): string | undefined {
  const d = fc.check(
    fc.property(splitHostileDevice.arbitrary(), (i) => splitHostileDevice.run(i)),
    { seed: 1, numRuns: 3000 },
  );
  const e = d.errorInstance;
  return d.failed ? (e instanceof OracleFailure ? e.oracle : String(e)) : undefined;
}

// The split-hostile-device ops `callbacks` and the final resetRings check catch these.
const PLANTED: [string, string, () => () => void][] = [
  [
    "disableCallbacks does nothing",
    "callbacks",
    () => patchMethod(SplitDriverQueue.prototype, "disableCallbacks", () => () => {}),
  ],
  [
    "enableCallbacks always reports nothing pending",
    "callbacks",
    () =>
      patchMethod(
        SplitDriverQueue.prototype,
        "enableCallbacks",
        (orig) =>
          function (this: SplitDriverQueue<unknown>) {
            orig.call(this);
            return true;
          },
      ),
  ],
  [
    "resetRings does nothing",
    "reset-rings",
    () => patchMethod(SplitDriverQueue.prototype, "resetRings", () => () => {}),
  ],
  [
    "add swallows a failed mapping or an empty segment",
    "add-accepted",
    () =>
      patchMethod(
        SplitDriverQueue.prototype,
        "add",
        (orig) =>
          function (this: SplitDriverQueue<unknown>, r: SgList, w: SgList, t: unknown) {
            try {
              orig.call(this, r, w, t);
            } catch (e) {
              if (isVirtqError(e, "BUFFER_EMPTY") || isVirtqError(e, "DMA_MAP_FAILED")) return;
              throw e;
            }
          },
      ),
  ],
  [
    "add reports an empty segment as a failed mapping",
    "add-refusal",
    () =>
      patchMethod(
        SplitDriverQueue.prototype,
        "add",
        (orig) =>
          function (this: SplitDriverQueue<unknown>, r: SgList, w: SgList, t: unknown) {
            try {
              orig.call(this, r, w, t);
            } catch (e) {
              if (!isVirtqError(e, "BUFFER_EMPTY")) throw e;
              throw new VirtqError("DMA_MAP_FAILED", "planted");
            }
          },
      ),
  ],
];

for (const [name, oracle, install] of PLANTED) {
  Deno.test(`fuzz split-hostile-device: planted driver bug found: ${name}`, () => {
    const restore = install();
    try {
      assertEquals(oracleOf(), oracle);
    } finally {
      restore();
    }
  });
}

function packedOracleOf(): string | undefined {
  const d = fc.check(
    fc.property(packedHostileDevice.arbitrary(), (i) => packedHostileDevice.run(i)),
    { seed: 1, numRuns: 3000 },
  );
  const e = d.errorInstance;
  return d.failed ? (e instanceof OracleFailure ? e.oracle : String(e)) : undefined;
}

// The packed-hostile-device completion field `callbacks` and the final resetRings check catch these.
const PACKED_PLANTED: [string, string, () => () => void][] = [
  [
    "disableCallbacks does nothing",
    "callbacks",
    () => patchMethod(PackedDriverQueue.prototype, "disableCallbacks", () => () => {}),
  ],
  [
    "enableCallbacks always reports nothing pending",
    "callbacks",
    () =>
      patchMethod(
        PackedDriverQueue.prototype,
        "enableCallbacks",
        (orig) =>
          function (this: PackedDriverQueue<unknown>) {
            orig.call(this);
            return true;
          },
      ),
  ],
  [
    "resetRings does nothing",
    "reset-rings",
    () => patchMethod(PackedDriverQueue.prototype, "resetRings", () => () => {}),
  ],
  [
    "device setNotifications writes nothing",
    "device-notify",
    () => patchMethod(PackedDeviceQueue.prototype, "setNotifications", () => () => false),
  ],
  [
    "add takes buffers on a broken queue",
    "not-broken",
    () =>
      patchMethod(
        PackedDriverQueue.prototype,
        "add",
        (orig) =>
          function (this: PackedDriverQueue<unknown>, r: SgList, w: SgList, t: unknown) {
            if (this.broken !== null) return;
            orig.call(this, r, w, t);
          },
      ),
  ],
  [
    "add reports a failed mapping or empty segment uncatalogued",
    "uncatalogued-throw",
    () =>
      patchMethod(
        PackedDriverQueue.prototype,
        "add",
        (orig) =>
          function (this: PackedDriverQueue<unknown>, r: SgList, w: SgList, t: unknown) {
            try {
              orig.call(this, r, w, t);
            } catch (e) {
              if (!isVirtqError(e, "BUFFER_EMPTY") && !isVirtqError(e, "DMA_MAP_FAILED")) throw e;
              throw new Error(String(e));
            }
          },
      ),
  ],
];

for (const [name, oracle, install] of PACKED_PLANTED) {
  Deno.test(`fuzz packed-hostile-device: planted driver bug found: ${name}`, () => {
    const restore = install();
    try {
      assertEquals(packedOracleOf(), oracle);
    } finally {
      restore();
    }
  });
}
