import { assertEquals, assertThrows } from "@std/assert";
import {
  DMA_ACCESS_READ,
  DMA_ACCESS_WRITE,
  DmaFault,
  DmaTranslation,
  type ViommuRequest,
  VIRTIO_IOMMU_ATTACH_F_BYPASS,
  VIRTIO_IOMMU_DEFAULT_FEATURES,
  VIRTIO_IOMMU_F_BYPASS_CONFIG,
  VIRTIO_IOMMU_F_MAP_UNMAP,
  VIRTIO_IOMMU_F_PROBE,
  VIRTIO_IOMMU_FAULT_F_ADDRESS,
  VIRTIO_IOMMU_FAULT_F_READ,
  VIRTIO_IOMMU_FAULT_F_WRITE,
  VIRTIO_IOMMU_FAULT_R_DOMAIN,
  VIRTIO_IOMMU_FAULT_R_MAPPING,
  VIRTIO_IOMMU_FAULT_R_UNKNOWN,
  VIRTIO_IOMMU_MAP_F_MMIO,
  VIRTIO_IOMMU_MAP_F_READ,
  VIRTIO_IOMMU_MAP_F_WRITE,
  VIRTIO_IOMMU_RESV_MEM_T_MSI,
  VIRTIO_IOMMU_RESV_MEM_T_RESERVED,
  VIRTIO_IOMMU_S_DEVERR,
  VIRTIO_IOMMU_S_FAULT,
  VIRTIO_IOMMU_S_INVAL,
  VIRTIO_IOMMU_S_IOERR,
  VIRTIO_IOMMU_S_NOENT,
  VIRTIO_IOMMU_S_NOMEM,
  VIRTIO_IOMMU_S_OK,
  VIRTIO_IOMMU_S_RANGE,
  VIRTIO_IOMMU_S_UNSUPP,
  VIRTIO_IOMMU_T_ATTACH,
  VIRTIO_IOMMU_T_DETACH,
  VIRTIO_IOMMU_T_MAP,
  VIRTIO_IOMMU_T_PROBE,
  VIRTIO_IOMMU_T_UNMAP,
  VirtioIommuDevice,
  type VirtioIommuDeviceOptions,
  VirtqError,
} from "../../../src/mod.ts";
import {
  decodeViommuConfig,
  decodeViommuFault,
  encodeViommuConfig,
  encodeViommuRequest,
  parseProbeProperties,
} from "../../../src/devices/_internal.ts";
import { Chain } from "../../../src/mod.ts";
import { ListDeviceQueue, newMemory, send, TAIL_GPA } from "./_viommu_helpers.ts";

const RW = VIRTIO_IOMMU_MAP_F_READ | VIRTIO_IOMMU_MAP_F_WRITE;
const hex = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, "0")).join(" ");

function setup(opts: Partial<VirtioIommuDeviceOptions> = {}) {
  const dev = new VirtioIommuDevice({ endpoints: [{ id: 8 }, { id: 9 }], ...opts });
  const mem = newMemory();
  const req = (r: ViommuRequest, wlen = 4) => send(dev, mem, encodeViommuRequest(r), wlen);
  const attach = (domain: number, endpoint: number, flags = 0) =>
    req({ type: VIRTIO_IOMMU_T_ATTACH, domain, endpoint, flags }).status;
  const map = (
    domain: number,
    s: number | bigint,
    e: number | bigint,
    p: number | bigint,
    flags = RW,
  ) =>
    req({ type: VIRTIO_IOMMU_T_MAP, domain, virtStart: s, virtEnd: e, physStart: p, flags }).status;
  const unmap = (domain: number, s: number | bigint, e: number | bigint) =>
    req({ type: VIRTIO_IOMMU_T_UNMAP, domain, virtStart: s, virtEnd: e }).status;
  return { dev, mem, req, attach, map, unmap };
}

Deno.test("viommu config: 40-byte little-endian layout, known answers at each offset", () => {
  const bytes = encodeViommuConfig({
    pageSizeMask: 0x4020_1000,
    inputStart: 0x1000,
    inputEnd: 2 ** 48 - 1,
    domainStart: 1,
    domainEnd: 0xffff,
    probeSize: 512,
    bypass: 1,
  });
  assertEquals(bytes.length, 40);
  assertEquals(
    hex(bytes),
    "00 10 20 40 00 00 00 00 " + // 0x00 page_size_mask
      "00 10 00 00 00 00 00 00 " + // 0x08 input_range.start
      "ff ff ff ff ff ff 00 00 " + // 0x10 input_range.end
      "01 00 00 00 ff ff 00 00 " + // 0x18 domain_range.start, 0x1c .end
      "00 02 00 00 01 00 00 00", // 0x20 probe_size, 0x24 bypass, reserved
  );
  assertEquals(decodeViommuConfig(bytes).inputEnd, 2 ** 48 - 1);
  // Default: 64-bit input range stays exact (bigint).
  const dev = new VirtioIommuDevice({ endpoints: [] });
  const d = decodeViommuConfig(dev.readConfig());
  assertEquals(d.inputEnd, 2n ** 64n - 1n);
  assertEquals(d.pageSizeMask, 0xffff_ffff_ffff_f000n);
  assertEquals(d.domainEnd, 0xffff_ffff);
});

Deno.test("viommu config: only bypass is writable, and only with BYPASS_CONFIG negotiated", () => {
  const dev = new VirtioIommuDevice({ endpoints: [] });
  dev.negotiate(VIRTIO_IOMMU_DEFAULT_FEATURES & ~(1n << BigInt(VIRTIO_IOMMU_F_BYPASS_CONFIG)));
  dev.writeConfig(0x24, Uint8Array.of(0));
  assertEquals(dev.readConfig()[0x24], 1);
  dev.negotiate(VIRTIO_IOMMU_DEFAULT_FEATURES);
  dev.writeConfig(0x20, Uint8Array.of(0, 0, 0, 0, 0)); // spans probe_size and bypass
  assertEquals(dev.readConfig()[0x24], 0);
  assertEquals(dev.config.probeSize, 512);
  dev.writeConfig(0x24, Uint8Array.of(7)); // not 0/1: ignored
  assertEquals(dev.config.bypass, 0);
  dev.reset(); // sticky across device reset
  assertEquals(dev.config.bypass, 0);
  dev.systemReset();
  assertEquals(dev.config.bypass, 1);
});

Deno.test("viommu requests: MAP codec known answer", () => {
  const b = encodeViommuRequest({
    type: VIRTIO_IOMMU_T_MAP,
    domain: 7,
    virtStart: 0x1000,
    virtEnd: 0x1fff,
    physStart: 0x2_0000_3000,
    flags: 3,
  });
  assertEquals(
    hex(b),
    "03 00 00 00 07 00 00 00 00 10 00 00 00 00 00 00 ff 1f 00 00 00 00 00 00 " +
      "00 30 00 00 02 00 00 00 03 00 00 00",
  );
  assertEquals(
    encodeViommuRequest({ type: VIRTIO_IOMMU_T_ATTACH, domain: 1, endpoint: 2, flags: 1 }).length,
    20,
  );
  assertEquals(
    encodeViommuRequest({ type: VIRTIO_IOMMU_T_DETACH, domain: 1, endpoint: 2 }).length,
    20,
  );
  assertEquals(
    encodeViommuRequest({ type: VIRTIO_IOMMU_T_UNMAP, domain: 1, virtStart: 0, virtEnd: 1 }).length,
    28,
  );
  assertEquals(encodeViommuRequest({ type: VIRTIO_IOMMU_T_PROBE, endpoint: 2 }).length, 72);
});

Deno.test("viommu status OK: ATTACH, MAP, UNMAP, DETACH; used length is the tail", () => {
  const { dev, req, attach, map, unmap } = setup();
  assertEquals(attach(1, 8), VIRTIO_IOMMU_S_OK);
  assertEquals(dev.endpointDomain(8), 1);
  assertEquals(map(1, 0x1000, 0x2fff, 0x10000), VIRTIO_IOMMU_S_OK);
  assertEquals(dev.domainMappings(1), [
    { virtStart: 0x1000, virtEnd: 0x2fff, physStart: 0x10000, flags: RW },
  ]);
  assertEquals(unmap(1, 0, 0xffff), VIRTIO_IOMMU_S_OK);
  assertEquals(dev.domainMappings(1), []);
  const r = req({ type: VIRTIO_IOMMU_T_DETACH, domain: 1, endpoint: 8 });
  assertEquals([r.used, r.status], [4, VIRTIO_IOMMU_S_OK]);
  assertEquals(dev.domainIds(), []); // the empty domain ceased to exist
});

Deno.test("viommu status IOERR: PROBE properties area not writable", () => {
  const { dev, mem } = setup();
  const c = new Chain(mem);
  c.reset(0, 0);
  mem.write(0x1000, encodeViommuRequest({ type: VIRTIO_IOMMU_T_PROBE, endpoint: 8 }));
  c.addReadable(0x1000, 72);
  c.addWritable(0x100_0000, 512); // a hole in guest memory
  c.addWritable(TAIL_GPA, 4);
  assertEquals(dev.processRequest(c), 516);
  assertEquals(mem.readU8(TAIL_GPA), VIRTIO_IOMMU_S_IOERR);
});

Deno.test("viommu status UNSUPP: MAP without F_MAP_UNMAP, PROBE without F_PROBE, unknown type (qemu policy)", () => {
  const { dev, map, attach, req } = setup({
    features: VIRTIO_IOMMU_DEFAULT_FEATURES & ~(1n << BigInt(VIRTIO_IOMMU_F_MAP_UNMAP)) &
      ~(1n << BigInt(VIRTIO_IOMMU_F_PROBE)),
  });
  assertEquals(attach(1, 8), VIRTIO_IOMMU_S_OK);
  assertEquals(map(1, 0, 0xfff, 0), VIRTIO_IOMMU_S_UNSUPP);
  // PROBE on a device that does not offer F_PROBE: unwritten, used length 0 (§5.13.6.7.2).
  const pr = req({ type: VIRTIO_IOMMU_T_PROBE, endpoint: 8 }, 516);
  assertEquals([pr.used, pr.status], [0, 0xee]);
  assertEquals(dev.domainMappings(1), []);
  const q = setup({ unknownType: "unsupp" });
  assertEquals(send(q.dev, q.mem, Uint8Array.of(9, 0, 0, 0)).status, VIRTIO_IOMMU_S_UNSUPP);
  const single = setup({ multipleEndpointsPerDomain: false });
  assertEquals(single.attach(1, 8), VIRTIO_IOMMU_S_OK);
  assertEquals(single.attach(1, 9), VIRTIO_IOMMU_S_UNSUPP);
});

Deno.test("viommu status DEVERR: readable part of the wrong size, wrong tail size", () => {
  const { dev, mem } = setup();
  const att = encodeViommuRequest({
    type: VIRTIO_IOMMU_T_ATTACH,
    domain: 1,
    endpoint: 8,
    flags: 0,
  });
  const long = new Uint8Array(21);
  long.set(att);
  assertEquals(send(dev, mem, long).status, VIRTIO_IOMMU_S_DEVERR);
  assertEquals(send(dev, mem, att.subarray(0, 19)).status, VIRTIO_IOMMU_S_DEVERR);
  const huge = new Uint8Array(200);
  huge[0] = VIRTIO_IOMMU_T_MAP;
  assertEquals(send(dev, mem, huge).status, VIRTIO_IOMMU_S_DEVERR);
  // Wrong tail size: the tail is the last 4 writable bytes, the rest zeroed.
  const r = send(dev, mem, att, 8);
  assertEquals([r.used, hex(r.writable)], [8, "00 00 00 00 03 00 00 00"]);
  assertEquals(dev.domainIds(), []);
});

Deno.test("viommu status INVAL: reserved bytes, unknown flags, overlap, inverted range, bypass domain", () => {
  const { dev, mem, attach, map, unmap, req } = setup();
  const att = encodeViommuRequest({
    type: VIRTIO_IOMMU_T_ATTACH,
    domain: 1,
    endpoint: 8,
    flags: 0,
  });
  for (const off of [16, 17, 18, 19]) {
    const b = att.slice();
    b[off] = 1;
    assertEquals(send(dev, mem, b).status, VIRTIO_IOMMU_S_INVAL, `reserved byte ${off}`);
  }
  assertEquals(attach(1, 8, 2), VIRTIO_IOMMU_S_INVAL);
  assertEquals(dev.domainIds(), []);
  assertEquals(attach(1, 8), VIRTIO_IOMMU_S_OK);
  assertEquals(map(1, 0x1000, 0x1fff, 0, 1 << 3), VIRTIO_IOMMU_S_INVAL);
  assertEquals(map(1, 0x2000, 0x1fff, 0), VIRTIO_IOMMU_S_INVAL);
  assertEquals(unmap(1, 0x2000, 0x1fff), VIRTIO_IOMMU_S_INVAL);
  assertEquals(map(1, 0x1000, 0x2fff, 0), VIRTIO_IOMMU_S_OK);
  assertEquals(map(1, 0x2000, 0x3fff, 0x8000), VIRTIO_IOMMU_S_INVAL); // overlap: never merged
  assertEquals(map(1, 0, 0xffff, 0x8000), VIRTIO_IOMMU_S_INVAL);
  const un = encodeViommuRequest({
    type: VIRTIO_IOMMU_T_UNMAP,
    domain: 1,
    virtStart: 0,
    virtEnd: 0xffff,
  });
  un[27] = 1;
  assertEquals(send(dev, mem, un).status, VIRTIO_IOMMU_S_INVAL);
  assertEquals(dev.domainMappings(1)!.length, 1);
  // DETACH from the wrong domain, bypass-flag mismatch, MAP into a bypass domain.
  assertEquals(
    req({ type: VIRTIO_IOMMU_T_DETACH, domain: 2, endpoint: 8 }).status,
    VIRTIO_IOMMU_S_INVAL,
  );
  assertEquals(attach(1, 9, VIRTIO_IOMMU_ATTACH_F_BYPASS), VIRTIO_IOMMU_S_INVAL);
  assertEquals(attach(5, 9, VIRTIO_IOMMU_ATTACH_F_BYPASS), VIRTIO_IOMMU_S_OK);
  assertEquals(map(5, 0, 0xfff, 0), VIRTIO_IOMMU_S_INVAL);
  // MMIO flag only with F_MMIO.
  const nommio = setup({ features: VIRTIO_IOMMU_DEFAULT_FEATURES & ~(1n << 5n) });
  nommio.attach(1, 8);
  assertEquals(nommio.map(1, 0, 0xfff, 0, VIRTIO_IOMMU_MAP_F_MMIO | 1), VIRTIO_IOMMU_S_INVAL);
  assertEquals(map(1, 0x10000, 0x10fff, 0, VIRTIO_IOMMU_MAP_F_MMIO | 1), VIRTIO_IOMMU_S_OK);
});

Deno.test("viommu reserved fields the spec says to ignore: head, DETACH, PROBE", () => {
  const { dev, mem } = setup();
  const att = encodeViommuRequest({
    type: VIRTIO_IOMMU_T_ATTACH,
    domain: 1,
    endpoint: 8,
    flags: 0,
  });
  att.set([1, 2, 3], 1); // head reserved (§5.13.6.2: MUST ignore)
  assertEquals(send(dev, mem, att).status, VIRTIO_IOMMU_S_OK);
  const pr = encodeViommuRequest({ type: VIRTIO_IOMMU_T_PROBE, endpoint: 8 });
  pr.fill(0xff, 8, 72); // PROBE reserved (§5.13.6.7.2: MUST ignore)
  assertEquals(send(dev, mem, pr, 516).status, VIRTIO_IOMMU_S_OK);
  const det = encodeViommuRequest({ type: VIRTIO_IOMMU_T_DETACH, domain: 1, endpoint: 8 });
  det.fill(0xff, 12, 20); // DETACH reserved (§5.13.6.4.2: MUST ignore)
  assertEquals(send(dev, mem, det).status, VIRTIO_IOMMU_S_OK);
  assertEquals(dev.endpointDomain(8), null);
});

Deno.test("viommu status RANGE: unaligned, outside input_range, domain outside domain_range, split", () => {
  const { dev, attach, map, unmap } = setup({
    config: { inputStart: 0x1000, inputEnd: 0xffff_ffff, domainStart: 1, domainEnd: 10 },
  });
  assertEquals(attach(11, 8), VIRTIO_IOMMU_S_RANGE);
  assertEquals(attach(0, 8), VIRTIO_IOMMU_S_RANGE);
  assertEquals(attach(10, 8), VIRTIO_IOMMU_S_OK);
  assertEquals(map(10, 0x1001, 0x1fff, 0), VIRTIO_IOMMU_S_RANGE); // virt_start
  assertEquals(map(10, 0x1000, 0x1ffe, 0), VIRTIO_IOMMU_S_RANGE); // virt_end + 1
  assertEquals(map(10, 0x1000, 0x1fff, 0x10), VIRTIO_IOMMU_S_RANGE); // phys_start
  assertEquals(map(10, 0, 0xfff, 0), VIRTIO_IOMMU_S_RANGE); // below input_range
  assertEquals(map(10, 0xffff_f000, 0x1_0000_0fff, 0), VIRTIO_IOMMU_S_RANGE); // above
  assertEquals(map(10, 0x1000, 0x1fff, 2 ** 52), VIRTIO_IOMMU_S_RANGE); // beyond 52-bit GPA
  assertEquals(dev.domainMappings(10), []);
  assertEquals(map(10, 0x1000, 0x2fff, 0), VIRTIO_IOMMU_S_OK);
  assertEquals(unmap(10, 0x1000, 0x1fff), VIRTIO_IOMMU_S_RANGE);
  assertEquals(dev.domainMappings(10)!.length, 1);
  // Without INPUT_RANGE and DOMAIN_RANGE offered, the config ranges are not in force.
  const open = setup({
    config: { inputStart: 0x1000, inputEnd: 0xffff_ffff, domainStart: 1, domainEnd: 10 },
    features: VIRTIO_IOMMU_DEFAULT_FEATURES & ~3n,
  });
  assertEquals(open.attach(0, 8), VIRTIO_IOMMU_S_OK);
  assertEquals(open.map(0, 0, 0xfff, 0), VIRTIO_IOMMU_S_OK);
});

Deno.test("viommu status NOENT: unknown endpoint or domain", () => {
  const { req, attach, map, unmap } = setup();
  assertEquals(attach(1, 77), VIRTIO_IOMMU_S_NOENT);
  assertEquals(
    req({ type: VIRTIO_IOMMU_T_DETACH, domain: 1, endpoint: 77 }).status,
    VIRTIO_IOMMU_S_NOENT,
  );
  assertEquals(map(1, 0, 0xfff, 0), VIRTIO_IOMMU_S_NOENT);
  assertEquals(unmap(1, 0, 0xfff), VIRTIO_IOMMU_S_NOENT);
  assertEquals(req({ type: VIRTIO_IOMMU_T_PROBE, endpoint: 77 }, 516).status, VIRTIO_IOMMU_S_NOENT);
});

Deno.test("viommu status FAULT: the request's readable part is not readable", () => {
  const { dev, mem } = setup();
  const c = new Chain(mem);
  c.reset(0, 0);
  c.addReadable(0x100_0000, 20); // a hole
  c.addWritable(TAIL_GPA, 4);
  assertEquals(dev.processRequest(c), 4);
  assertEquals(mem.readU8(TAIL_GPA), VIRTIO_IOMMU_S_FAULT);
});

Deno.test("viommu status NOMEM: beyond maxMappings / maxDomains, nothing changed", () => {
  const { dev, attach, map } = setup({ maxMappings: 1, maxDomains: 1 });
  assertEquals(attach(1, 8), VIRTIO_IOMMU_S_OK);
  assertEquals(attach(2, 9), VIRTIO_IOMMU_S_NOMEM);
  assertEquals(attach(2, 8), VIRTIO_IOMMU_S_OK); // moving the only endpoint frees domain 1
  assertEquals(dev.domainIds(), [2]);
  assertEquals(map(2, 0, 0xfff, 0), VIRTIO_IOMMU_S_OK);
  assertEquals(map(2, 0x1000, 0x1fff, 0), VIRTIO_IOMMU_S_NOMEM);
  assertEquals(dev.mappingCount, 1);
});

Deno.test("viommu unparseable: no tail room, short head, unknown type give used length 0, unwritten", () => {
  const { dev, mem } = setup();
  const att = encodeViommuRequest({
    type: VIRTIO_IOMMU_T_ATTACH,
    domain: 1,
    endpoint: 8,
    flags: 0,
  });
  let r = send(dev, mem, att, 3);
  assertEquals([r.used, hex(r.writable)], [0, "ee ee ee"]);
  r = send(dev, mem, Uint8Array.of(1, 0, 0));
  assertEquals([r.used, r.status], [0, 0xee]);
  r = send(dev, mem, Uint8Array.of(0, 0, 0, 0));
  assertEquals([r.used, r.status], [0, 0xee]);
  r = send(dev, mem, Uint8Array.of(6, 0, 0, 0, 1, 0, 0, 0));
  assertEquals([r.used, r.status], [0, 0xee]);
  assertEquals(dev.domainIds(), []);
  assertEquals(dev.stats.unparsed, 4);
});

Deno.test("viommu UNMAP: the spec's seven examples", () => {
  const cases: [string, [number, number][], [number, number], number, [number, number][]][] = [
    ["1 unmap(0,4) on empty", [], [0, 4], VIRTIO_IOMMU_S_OK, []],
    ["2 map(0,9) unmap(0,9)", [[0, 9]], [0, 9], VIRTIO_IOMMU_S_OK, []],
    ["3 map(0,4) map(5,9) unmap(0,9)", [[0, 4], [5, 9]], [0, 9], VIRTIO_IOMMU_S_OK, []],
    ["4 map(0,9) unmap(0,4) fails", [[0, 9]], [0, 4], VIRTIO_IOMMU_S_RANGE, [[0, 9]]],
    ["5 map(0,4) map(5,9) unmap(0,4)", [[0, 4], [5, 9]], [0, 4], VIRTIO_IOMMU_S_OK, [[5, 9]]],
    ["6 map(0,4) unmap(0,9)", [[0, 4]], [0, 9], VIRTIO_IOMMU_S_OK, []],
    ["7 map(0,4) map(10,14) unmap(0,14)", [[0, 4], [10, 14]], [0, 14], VIRTIO_IOMMU_S_OK, []],
  ];
  for (const [name, maps, [us, ue], status, left] of cases) {
    // Granule 1 byte so that the abstract example ranges are aligned.
    const { dev, attach, map, unmap } = setup({ config: { pageSizeMask: 1 } });
    assertEquals(attach(1, 8), VIRTIO_IOMMU_S_OK);
    for (const [s, e] of maps) assertEquals(map(1, s, e, 0x1000 + s), VIRTIO_IOMMU_S_OK, name);
    assertEquals(unmap(1, us, ue), status, name);
    assertEquals(dev.domainMappings(1)!.map((m) => [m.virtStart, m.virtEnd]), left, name);
  }
  // A split at the end of the range also removes nothing, even mappings fully inside it.
  const { dev, attach, map, unmap } = setup({ config: { pageSizeMask: 1 } });
  attach(1, 8);
  map(1, 0, 4, 0);
  map(1, 5, 9, 0);
  assertEquals(unmap(1, 0, 7), VIRTIO_IOMMU_S_RANGE);
  assertEquals(dev.domainMappings(1)!.length, 2);
});

Deno.test("viommu PROBE: RESV_MEM property bytes, zero fill, too-small area → INVAL", () => {
  const { dev, req } = setup({
    config: { probeSize: 64 },
    endpoints: [{
      id: 8,
      resvMem: [
        { subtype: VIRTIO_IOMMU_RESV_MEM_T_MSI, start: 0xfee0_0000, end: 0xfeef_ffff },
        { subtype: VIRTIO_IOMMU_RESV_MEM_T_RESERVED, start: 0x1_0000_0000, end: 0x1_0000_0fff },
      ],
    }],
  });
  const r = req({ type: VIRTIO_IOMMU_T_PROBE, endpoint: 8 }, 68);
  assertEquals(r.used, 68);
  assertEquals(
    hex(r.writable),
    "01 00 14 00 01 00 00 00 00 00 e0 fe 00 00 00 00 ff ff ef fe 00 00 00 00 " +
      "01 00 14 00 00 00 00 00 00 00 00 00 01 00 00 00 ff 0f 00 00 01 00 00 00 " +
      "00 ".repeat(16) + "00 00 00 00",
  );
  assertEquals(parseProbeProperties(r.writable.subarray(0, 64)), [
    { subtype: 1, start: 0xfee0_0000, end: 0xfeef_ffff },
    { subtype: 0, start: 0x1_0000_0000, end: 0x1_0000_0fff },
  ]);
  const small = req({ type: VIRTIO_IOMMU_T_PROBE, endpoint: 8 }, 40);
  assertEquals(small.status, VIRTIO_IOMMU_S_INVAL);
  assertEquals(hex(small.writable.subarray(0, 36)), "00 ".repeat(35) + "00");
  assertEquals(dev.stats.statusCounts[VIRTIO_IOMMU_S_INVAL], 1);
});

Deno.test("viommu probe parsing: ignores reserved type bits and unknown types, unknown subtype is RESERVED", () => {
  const area = new Uint8Array(64);
  const v = new DataView(area.buffer);
  v.setUint16(0, 0x1001, true); // RESV_MEM with a reserved bit: ignored
  v.setUint16(2, 20, true);
  v.setUint16(24, 7, true); // unknown type, 4 bytes
  v.setUint16(26, 4, true);
  v.setUint16(32, 1, true);
  v.setUint16(34, 20, true);
  area[36] = 9; // unknown subtype
  v.setUint32(40, 0x5000, true);
  v.setUint32(48, 0x5fff, true);
  assertEquals(parseProbeProperties(area), [{ subtype: 0, start: 0x5000, end: 0x5fff }]);
});

Deno.test("viommu translate: data path through a mapping, contiguous prefix, permissions", () => {
  const { dev, attach, map, unmap } = setup();
  attach(1, 8);
  map(1, 0x10_0000, 0x10_0fff, 0x3000, VIRTIO_IOMMU_MAP_F_READ);
  map(1, 0x10_1000, 0x10_1fff, 0x9000, RW);
  const s = dev.endpointSpace(8);
  const out = new DmaTranslation();
  s.translate(0x10_0ff0, 0x100, DMA_ACCESS_READ, out);
  assertEquals([out.gpa, out.length], [0x3ff0, 0x10]);
  s.translate(0x10_1000, 0x100, DMA_ACCESS_READ | DMA_ACCESS_WRITE, out);
  assertEquals([out.gpa, out.length], [0x9000, 0x100]);
  const f = assertThrows(() => s.translate(0x10_0000, 4, DMA_ACCESS_WRITE, out), DmaFault);
  assertEquals(f.reason, "permission");
  // Same mapping right after a read hit (the cached fast path) still checks permissions.
  s.translate(0x10_0004, 4, DMA_ACCESS_READ, out);
  assertThrows(() => s.translate(0x10_0008, 4, DMA_ACCESS_WRITE, out), DmaFault);
  // An UNMAP invalidates the cached mapping at once.
  assertEquals(unmap(1, 0x10_0000, 0x10_0fff), VIRTIO_IOMMU_S_OK);
  assertThrows(() => s.translate(0x10_0004, 4, DMA_ACCESS_READ, out), DmaFault);
  assertEquals(
    assertThrows(() => s.translate(0x10_2000, 4, DMA_ACCESS_READ, out), DmaFault).reason,
    "unmapped",
  );
  // A high IOVA (bigint) is exact.
  assertEquals(map(1, 0xffff_ffff_ffff_0000n, 0xffff_ffff_ffff_ffffn, 0x20000), VIRTIO_IOMMU_S_OK);
  s.translate(0xffff_ffff_ffff_fff0n, 0x100, DMA_ACCESS_READ, out);
  assertEquals([out.gpa, out.length], [0x2fff0, 0x10]);
});

Deno.test("viommu bypass: unattached endpoints are identity with bypass=1, fault R_DOMAIN with 0", () => {
  const { dev, attach } = setup();
  const out = new DmaTranslation();
  const s = dev.endpointSpace(8);
  s.translate(0x5000, 16, DMA_ACCESS_READ, out);
  assertEquals([out.gpa, out.length], [0x5000, 16]);
  dev.writeConfig(0x24, Uint8Array.of(0));
  assertEquals(
    assertThrows(() => s.translate(0x5000, 16, DMA_ACCESS_READ, out), DmaFault).reason,
    "no-domain",
  );
  // An endpoint the IOMMU does not know: identity under bypass, else R_UNKNOWN.
  const u = dev.endpointSpace(1234);
  assertThrows(() => u.translate(0x5000, 16, DMA_ACCESS_READ, out), DmaFault);
  dev.writeConfig(0x24, Uint8Array.of(1));
  u.translate(0x5000, 16, DMA_ACCESS_READ, out);
  assertEquals(out.gpa, 0x5000);
  // Attached: translation only, even with bypass on.
  attach(1, 8);
  assertEquals(
    assertThrows(() => s.translate(0x5000, 16, DMA_ACCESS_READ, out), DmaFault).reason,
    "unmapped",
  );
  // A bypass domain is identity.
  attach(2, 9, VIRTIO_IOMMU_ATTACH_F_BYPASS);
  dev.writeConfig(0x24, Uint8Array.of(0));
  dev.endpointSpace(9).translate(0x7000, 8, DMA_ACCESS_WRITE, out);
  assertEquals(out.gpa, 0x7000);
  // Legacy F_BYPASS negotiated: unattached endpoints bypass even with bypass = 0.
  const legacy = new VirtioIommuDevice({
    endpoints: [{ id: 1 }],
    features: (1n << 3n) | (1n << 2n),
    config: { bypass: 0 },
  });
  legacy.endpointSpace(1).translate(0x5000, 1, DMA_ACCESS_READ, out);
  assertEquals(out.gpa, 0x5000);
  legacy.negotiate(1n << 2n);
  assertThrows(() => legacy.endpointSpace(1).translate(0x5000, 1, DMA_ACCESS_READ, out), DmaFault);
});

Deno.test("viommu RESV_MEM: RESERVED faults, MSI is identity, MAP over a region is INVAL", () => {
  const { dev, attach, map } = setup({
    endpoints: [{
      id: 8,
      resvMem: [
        { subtype: VIRTIO_IOMMU_RESV_MEM_T_MSI, start: 0xfee0_0000, end: 0xfeef_ffff },
        { subtype: VIRTIO_IOMMU_RESV_MEM_T_RESERVED, start: 0x8000, end: 0x8fff },
      ],
    }],
  });
  attach(1, 8);
  assertEquals(map(1, 0x8000, 0x8fff, 0), VIRTIO_IOMMU_S_INVAL);
  assertEquals(map(1, 0xfee0_0000, 0xfee0_0fff, 0), VIRTIO_IOMMU_S_INVAL);
  assertEquals(map(1, 0x7000, 0x7fff, 0x1000), VIRTIO_IOMMU_S_OK);
  const out = new DmaTranslation();
  const s = dev.endpointSpace(8);
  assertEquals(
    assertThrows(() => s.translate(0x8004, 4, DMA_ACCESS_READ, out), DmaFault).reason,
    "reserved-region",
  );
  s.translate(0xfee0_1000, 4, DMA_ACCESS_WRITE, out);
  assertEquals([out.gpa, out.length], [0xfee0_1000, 4]);
  s.translate(0x7ff0, 0x100, DMA_ACCESS_READ, out);
  assertEquals([out.gpa, out.length], [0x1ff0, 0x10]);
});

Deno.test("viommu eventq: fault report bytes; dropped without buffers or with a short one", () => {
  const { dev, mem, attach, map } = setup({ config: { bypass: 0 } });
  const evq = new ListDeviceQueue();
  dev.attachQueues(new ListDeviceQueue(), evq);
  const out = new DmaTranslation();
  assertThrows(
    () => dev.endpointSpace(8).translate(0x1234_5678_9000, 8, DMA_ACCESS_WRITE, out),
    DmaFault,
  );
  assertEquals(dev.stats.faultsDropped, 1); // no buffer yet
  evq.offerWritable(mem, 0x20000, 64);
  assertThrows(
    () => dev.endpointSpace(8).translate(0x1234_5678_9000, 8, DMA_ACCESS_WRITE, out),
    DmaFault,
  );
  assertEquals(evq.used[0].len, 24);
  assertEquals(
    hex(mem.view(0x20000, 24)),
    "01 00 00 00 02 01 00 00 08 00 00 00 00 00 00 00 00 90 78 56 34 12 00 00",
  );
  assertEquals(decodeViommuFault(mem.view(0x20000, 24)), {
    reason: VIRTIO_IOMMU_FAULT_R_DOMAIN,
    flags: VIRTIO_IOMMU_FAULT_F_WRITE | VIRTIO_IOMMU_FAULT_F_ADDRESS,
    endpoint: 8,
    address: 0x1234_5678_9000,
  });
  // R_MAPPING with READ for an unmapped read; R_UNKNOWN for an unknown endpoint.
  attach(1, 8);
  map(1, 0, 0xfff, 0x1000, VIRTIO_IOMMU_MAP_F_WRITE);
  evq.offerWritable(mem, 0x20100, 24);
  evq.offerWritable(mem, 0x20200, 24);
  evq.offerWritable(mem, 0x20300, 16);
  assertThrows(() => dev.endpointSpace(8).translate(0x10, 1, DMA_ACCESS_READ, out), DmaFault);
  assertThrows(() => dev.endpointSpace(99).translate(0x10, 1, DMA_ACCESS_READ, out), DmaFault);
  assertThrows(() => dev.endpointSpace(99).translate(0x10, 1, DMA_ACCESS_READ, out), DmaFault);
  const r1 = decodeViommuFault(mem.view(0x20100, 24))!;
  assertEquals([r1.reason, r1.flags, r1.address], [
    VIRTIO_IOMMU_FAULT_R_MAPPING,
    VIRTIO_IOMMU_FAULT_F_READ | VIRTIO_IOMMU_FAULT_F_ADDRESS,
    0x10,
  ]);
  assertEquals(decodeViommuFault(mem.view(0x20200, 24))!.reason, VIRTIO_IOMMU_FAULT_R_UNKNOWN);
  assertEquals(evq.used.map((u) => u.len), [24, 24, 24, 0]); // the 16-byte buffer is too short
  assertEquals([dev.stats.faultsReported, dev.stats.faultsDropped], [3, 2]);
  // The driver ignores a report with `reserved` set, but ignores `reserved1` and unknown flags
  // and reads an unknown reason as UNKNOWN (§5.13.6.9.1).
  const bad = mem.view(0x20100, 24).slice();
  bad[13] = 1;
  bad[6] = 0x80;
  assertEquals(
    decodeViommuFault(bad)?.flags,
    VIRTIO_IOMMU_FAULT_F_READ | VIRTIO_IOMMU_FAULT_F_ADDRESS,
  );
  bad[0] = 9;
  assertEquals(decodeViommuFault(bad)?.reason, VIRTIO_IOMMU_FAULT_R_UNKNOWN);
  bad[2] = 1;
  assertEquals(decodeViommuFault(bad), null);
});

Deno.test("viommu ATTACH: re-attach moves the endpoint, an emptied domain and its mappings vanish", () => {
  const { dev, attach, map } = setup();
  attach(1, 8);
  map(1, 0, 0xfff, 0);
  attach(1, 9);
  attach(2, 8);
  assertEquals(dev.domainIds(), [1, 2]);
  attach(2, 9);
  assertEquals(dev.domainIds(), [2]);
  assertEquals(dev.mappingCount, 0);
  assertEquals(attach(1, 8), VIRTIO_IOMMU_S_OK);
  assertEquals(dev.domainMappings(1), []); // a reused ID starts empty
});

Deno.test("viommu requestq: a queue error stops the device, completed requests stay used", () => {
  const { dev, mem } = setup();
  const q = new ListDeviceQueue();
  dev.attachQueues(q, null);
  mem.write(
    0x1000,
    encodeViommuRequest({ type: VIRTIO_IOMMU_T_ATTACH, domain: 1, endpoint: 8, flags: 0 }),
  );
  const c = new Chain(mem);
  c.reset(0, 0);
  c.addReadable(0x1000, 20);
  c.addWritable(TAIL_GPA, 4);
  q.available.push(c);
  let pops = 0;
  const pop = q.pop.bind(q);
  q.pop = () => {
    if (pops++ === 1) throw new VirtqError("DESC_NEXT_OUT_OF_RANGE", "hostile next");
    return pop();
  };
  assertEquals(dev.processRequestQueue(), true); // the ATTACH is published
  assertEquals(q.used.map((u) => u.len), [4]);
  assertEquals(dev.endpointDomain(8), 1);
  assertEquals(dev.broken?.code, "DESC_NEXT_OUT_OF_RANGE");
  assertEquals(dev.processRequestQueue(), false); // stopped until reset
  assertEquals(pops, 2);
  dev.reset();
  assertEquals([dev.broken, dev.endpointDomain(8)], [null, null]);
});
