/**
 * `viommu-hostile-device` regressions: the two driver bugs the target found (not planted), each
 * as its shrunk counterexample, which must pass now.
 * @module
 */

import { viommuHostileDeviceTarget as target } from "../../fuzz/targets/viommu_hostile_device.ts";

Deno.test("viommu-hostile-device: a late reply is not taken for the reply of the next request", () => {
  // PROBE, ATTACH ok; MAP 1 gets no reply (the call fails "not returned"); the device's next
  // used idx write re-exposes MAP 1's reply before MAP 2's, and MAP 2's reply has a used length
  // past its writable part: the driver took MAP 1's late reply for MAP 2's and succeeded.
  target.run(target.decode!({
    resv: [],
    ops: [[0, 0, 4], [0, 0, 0]],
    tampers: [[0, 0], [0, 0], [7, 0], [0, 0], [4, 0]],
  }));
});

Deno.test("viommu-hostile-device: PROBE properties beyond the used length are ignored", () => {
  // PROBE reply with used length 1: the driver still parsed the RESV_MEM property the device had
  // written beyond it (spec §2.7.8.2).
  target.run(target.decode!({ resv: [[0, 0, 0, false]], ops: [[0, 0, 0]], tampers: [[3, 0]] }));
});
