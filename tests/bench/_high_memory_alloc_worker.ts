/**
 * Worker for `bench_alloc_test.ts`: measures heap bytes per chain of a round trip with guest
 * memory, rings and buffers at 4 GiB (every GPA and bus address a heap number if boxed), in a
 * fresh isolate so that no other test's DMA API or layout makes a call site polymorphic.
 * Message in: the layout; message out: `bytesPerChain` (or `null` when inconclusive).
 *
 * @module
 */
import {
  createQueuePair,
  featureMask,
  GuestMemory,
  type RingLayout,
  SgList,
  VIRTIO_F_RING_PACKED,
  VIRTIO_F_VERSION_1,
} from "../../src/mod.ts";
import { measureAlloc } from "../../bench/alloc.ts";

const HIGH = 0x1_0000_0000; // 4 GiB: above 2^31 (Smi range) and 2^32 (descriptor addr hi = 1)

self.onmessage = (ev: MessageEvent<RingLayout>) => {
  const layout = ev.data;
  const memory = GuestMemory.flat(4 << 20, HIGH);
  const pair = createQueuePair<number>({
    layout,
    size: 256,
    memory,
    ringGpa: HIGH,
    features: featureMask(VIRTIO_F_VERSION_1) |
      (layout === "packed" ? featureMask(VIRTIO_F_RING_PACKED) : 0n),
  });
  const data = HIGH + (1 << 20);
  const readable: SgList[] = [];
  const writable: SgList[] = [];
  for (let c = 0; c < 32; c++) {
    readable.push(SgList.of([data + c * 8192, 64]));
    writable.push(SgList.of([data + c * 8192 + 4096, 64]));
  }
  const drv = pair.driver;
  const dev = pair.device;
  const roundTrip = {
    chainsPerCall: 32,
    descriptorsPerCall: 64,
    bytesPerCall: 32 * 64,
    run(): number {
      for (let c = 0; c < 32; c++) drv.add(readable[c], writable[c], c);
      drv.kick();
      for (let ch = dev.pop(); ch !== null; ch = dev.pop()) {
        dev.push(ch, ch.copyReadableToWritable());
      }
      dev.flush();
      let got = 0;
      while (drv.getUsed() !== undefined) got++;
      if (got !== 32 || drv.usedLen !== 64) throw new Error(`round trip returned ${got} chains`);
      return got;
    },
  };
  // A long warm-up: on a loaded machine the optimising compiles finish late, and code that is
  // not optimised yet boxes every number above 2^31.
  const t0 = performance.now();
  for (let n = 0; n < 200_000 || performance.now() - t0 < 500; n += 32) roundTrip.run();
  const result = measureAlloc(`${layout} @4GiB`, roundTrip, 4096);
  self.postMessage(result.bytesPerChain);
};
