import { assertEquals, assertThrows } from "@std/assert";
import { DMA_ACCESS_READ, DMA_ACCESS_WRITE, DmaFault, DmaMapError } from "../../src/dma/errors.ts";
import {
  DMA_BIDIRECTIONAL,
  DMA_FROM_DEVICE,
  DMA_TO_DEVICE,
  DmaTranslation,
} from "../../src/dma/types.ts";
import type { DmaAddressSpace } from "../../src/dma/types.ts";
import {
  createDmaLab,
  createDmaMode,
  DMA_MODE_NAMES,
  type DmaModeName,
} from "../../src/dma/modes.ts";
import { FakeClock } from "../../src/dma/clock.ts";
import { GuestMemory } from "../../src/memory/guest_memory.ts";
import { backingCopier } from "../../src/memory/backing.ts";
import type { U64 } from "../../src/memory/u64.ts";
import {
  deviceAddressing,
  driverUsesDmaApi,
  featureMask,
  negotiateFeatures,
  VIRTIO_F_ACCESS_PLATFORM,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_VERSION_1,
} from "../../src/virtio/features.ts";

/** Device-side copy through the space, looping over translated prefixes. */
function deviceRead(space: DmaAddressSpace, mem: GuestMemory, bus: U64, len: number): number[] {
  const t = new DmaTranslation();
  const out: number[] = [];
  let done = 0;
  while (done < len) {
    const b = typeof bus === "number" ? bus + done : bus + BigInt(done);
    space.translate(b, len - done, DMA_ACCESS_READ, t);
    out.push(...mem.view(t.gpa, t.length));
    done += t.length;
  }
  return out;
}
function deviceWrite(space: DmaAddressSpace, mem: GuestMemory, bus: U64, data: number[]): void {
  const t = new DmaTranslation();
  let done = 0;
  while (done < data.length) {
    const b = typeof bus === "number" ? bus + done : bus + BigInt(done);
    space.translate(b, data.length - done, DMA_ACCESS_WRITE, t);
    mem.write(t.gpa, new Uint8Array(data.slice(done, done + t.length)));
    done += t.length;
  }
}

for (const name of DMA_MODE_NAMES) {
  Deno.test(`mode ${name}: consistent views, bytes arrive intact both ways`, () => {
    const lab = createDmaLab(name, { clock: new FakeClock(), poolSize: 1 << 20 });
    const { mode, memory } = lab;
    // a buffer spanning a page boundary, in buffer memory (private in confidential modes)
    const gpa = 0x3ff0;
    const payload = Array.from({ length: 5000 }, (_, i) => (i * 7 + 3) & 0xff);
    memory.write(gpa, new Uint8Array(payload));
    const out = mode.api.map(gpa, payload.length, DMA_TO_DEVICE);
    assertEquals(deviceRead(mode.space, memory, out, payload.length), payload);
    mode.api.unmap(out, payload.length, DMA_TO_DEVICE);

    const inGpa = 0x2_0000;
    const bus = mode.api.map(inGpa, 300, DMA_FROM_DEVICE);
    const reply = Array.from({ length: 300 }, (_, i) => 255 - (i & 0xff));
    deviceWrite(mode.space, memory, bus, reply);
    mode.api.syncForCpu(bus, 300, DMA_FROM_DEVICE);
    assertEquals([...memory.view(inGpa, 300)], reply);
    mode.api.unmap(bus, 300, DMA_FROM_DEVICE);
    assertEquals([...memory.view(inGpa, 300)], reply);

    // coherent ring memory: shared, both sides see each other's writes without syncs
    const ring = mode.api.mapCoherent(lab.ringGpa, 0x3000);
    deviceWrite(mode.space, memory, ring, [1, 2, 3]);
    assertEquals([...memory.view(lab.ringGpa, 3)], [1, 2, 3]);
    mode.api.unmapCoherent(ring, 0x3000);

    if (mode.isolation === "page") {
      const b = mode.api.map(0x5000, 16, DMA_BIDIRECTIONAL);
      mode.api.unmap(b, 16, DMA_BIDIRECTIONAL);
      mode.tick();
      const t = new DmaTranslation();
      if (!mode.isStale(b)) {
        assertThrows(() => mode.space.translate(b, 1, DMA_ACCESS_READ, t), DmaFault);
      }
    }
    if (name.startsWith("confidential")) {
      // ring memory must be shared; buffer memory is private
      assertEquals(
        assertThrows(() => mode.api.mapCoherent(0, 0x1000), DmaMapError).reason,
        "private-memory",
      );
    }
  });
}

Deno.test("mode window-high: descriptors carry bus addresses at 2^63", () => {
  const { mode } = createDmaLab("window-high");
  assertEquals(mode.api.map(0x1000, 8, DMA_TO_DEVICE), 2n ** 63n + 0x1000n);
});

Deno.test("modes: bounce modes without a pool name the missing option", () => {
  const e = assertThrows(
    () => createDmaMode("swiotlb", GuestMemory.flat(0x10000)),
    RangeError,
  );
  assertEquals(e.message.includes("options.pool"), true);
  assertThrows(() => createDmaMode("bogus" as DmaModeName, GuestMemory.flat(0x1000)), RangeError);
});

Deno.test("features: negotiation, ACCESS_PLATFORM refusal by the device (QEMU) and driver (CC)", () => {
  const ap = featureMask(VIRTIO_F_ACCESS_PLATFORM);
  const offered = featureMask(VIRTIO_F_VERSION_1, VIRTIO_F_ACCESS_PLATFORM, VIRTIO_F_EVENT_IDX);
  const ok = negotiateFeatures(
    offered,
    featureMask(VIRTIO_F_VERSION_1, VIRTIO_F_ACCESS_PLATFORM, 40),
  );
  assertEquals(ok.ok, true);
  assertEquals(ok.negotiated, featureMask(VIRTIO_F_VERSION_1, VIRTIO_F_ACCESS_PLATFORM)); // bit 40 not offered
  assertEquals(deviceAddressing(ok.negotiated), "platform");
  assertEquals(driverUsesDmaApi(ok.negotiated), true);
  const declined = negotiateFeatures(offered, featureMask(VIRTIO_F_VERSION_1));
  assertEquals([declined.ok, declined.refusedBy, declined.negotiated], [false, "device", 0n]);
  const lenient = negotiateFeatures(offered, featureMask(VIRTIO_F_VERSION_1), {
    deviceRequiresAccessPlatform: false,
  });
  assertEquals(lenient.ok, true);
  // not negotiated: raw GPAs whatever the firmware says
  assertEquals(deviceAddressing(lenient.negotiated), "raw-gpa");
  assertEquals(driverUsesDmaApi(lenient.negotiated), false);
  assertEquals(driverUsesDmaApi(lenient.negotiated, true), true); // Xen
  const cc = negotiateFeatures(featureMask(VIRTIO_F_VERSION_1), ~0n, {
    driverRequiresAccessPlatform: true,
  });
  assertEquals([cc.ok, cc.refusedBy], [false, "driver"]);
  assertEquals(cc.reason!.includes("VIRTIO_F_ACCESS_PLATFORM"), true);
  assertEquals((cc.accepted & ap) === 0n, true);
});

Deno.test("mode window-iommu (alpha): direct window when the buffer fits, else the IOMMU", () => {
  const { mode } = createDmaLab("window-iommu"); // RAM 9 MiB: window over the lower 4.5 MiB
  const t = new DmaTranslation();
  const direct = mode.api.map(0x1000, 64, DMA_TO_DEVICE);
  assertEquals(direct, 0x8000_1000);
  const sg = mode.api.map(0x60_0010, 64, DMA_TO_DEVICE) as number;
  assertEquals(sg < 0x8000_0000, true); // scatter-gather IOVA below the direct window
  mode.space.translate(direct, 64, DMA_ACCESS_READ, t);
  assertEquals(t.gpa, 0x1000);
  mode.space.translate(sg, 64, DMA_ACCESS_READ, t);
  assertEquals(t.gpa, 0x60_0010);
  const straddle = mode.api.map(0x48_0000 - 8, 16, DMA_TO_DEVICE) as number; // crosses the window end
  assertEquals(straddle < 0x8000_0000, true);
  mode.api.unmap(sg, 64, DMA_TO_DEVICE);
  assertEquals(
    assertThrows(() => mode.space.translate(sg, 1, DMA_ACCESS_READ, t), DmaFault).reason,
    "unmapped",
  );
  assertEquals(
    assertThrows(() => mode.api.unmap(sg, 64, DMA_TO_DEVICE), DmaMapError).reason,
    "not-mapped",
  );
  mode.api.unmap(direct, 64, DMA_TO_DEVICE); // dma-direct: nothing to undo
  // the page-number form goes to the same path: the window's is a no-op, the IOMMU's unmaps
  const api = mode.api;
  const sg2 = api.mapNumber!(0x60_0010, 64, DMA_TO_DEVICE);
  const d2 = api.mapNumber!(0x2000, 64, DMA_TO_DEVICE);
  api.unmapPage!(Math.floor(d2 / 4096), d2 % 4096, 64, DMA_TO_DEVICE);
  api.unmapPage!(Math.floor(sg2 / 4096), sg2 % 4096, 64, DMA_TO_DEVICE);
  assertEquals(
    assertThrows(() => mode.space.translate(sg2, 1, DMA_ACCESS_READ, t), DmaFault).reason,
    "unmapped",
  );
  assertEquals(
    assertThrows(() => api.unmapPage!(Math.floor(sg2 / 4096), sg2 % 4096, 64, 1), DmaMapError)
      .reason,
    "not-mapped",
  );
});

Deno.test("createDmaLab: regions on one backing store; fastCopy makes it a WebAssembly store with a memmove", () => {
  for (const fastCopy of [false, true]) {
    const lab = createDmaLab("confidential", { poolSize: 1 << 20, fastCopy });
    const [buffers, rings, pool] = lab.memory.regions;
    const store = buffers.bytes.buffer;
    assertEquals([rings.bytes.buffer === store, pool.bytes.buffer === store], [true, true]);
    assertEquals([rings.bytes.byteOffset, pool.bytes.byteOffset], [rings.gpa, pool.gpa]);
    assertEquals(backingCopier(store) !== null, fastCopy);
    // a bounce from the private buffers into the shared pool and back, through that store
    const api = lab.mode.api;
    lab.memory.write(0x1000, new Uint8Array(1500).fill(0x5a));
    const bus = api.map(0x1000, 1500, DMA_BIDIRECTIONAL) as number;
    assertEquals(lab.memory.readU8(bus + 1499), 0x5a);
    lab.memory.fill(bus, 1500, 0xa5); // the device writes the whole buffer
    api.unmap(bus, 1500, DMA_BIDIRECTIONAL);
    assertEquals([lab.memory.readU8(0x1000), lab.memory.readU8(0x1000 + 1499)], [0xa5, 0xa5]);
  }
  // sizes the regions refuse still get the regions' own error, not an ArrayBuffer one
  assertThrows(
    () => createDmaLab("swiotlb", { bufferSize: 100 }),
    RangeError,
    "multiple of 0x1000",
  );
});
