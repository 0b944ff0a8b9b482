/**
 * Cross-field checks of a topology file, each issue with its field path and a fix: what zod's
 * per-field schema (`topology.ts`) cannot see (duplicate ids, dangling IOMMU references, legacy
 * feature bits, overlapping memory, run memory outside RAM).
 *
 * @module
 */

import type { z } from "zod";
import type { Topology } from "./topology_types.ts";
import { RUN_RING_BYTES, runLayout } from "./topology_layout.ts";

type Ctx = z.RefinementCtx;

/**
 * Adds one zod issue to `ctx` per cross-field problem of `t` (a topology whose fields parsed).
 * Internal to the schema's refinement.
 */
export function crossCheckTopology(
  t: Omit<Topology, "$schema" | "source" | "deviation">,
  ctx: Ctx,
): void {
  const issue = (path: (string | number)[], message: string) =>
    ctx.addIssue({ code: "custom", path, message });
  const iommuIds = new Set<string>();
  t.iommus.forEach((m, i) => {
    if (iommuIds.has(m.id)) issue(["iommus", i, "id"], `duplicate IOMMU id "${m.id}": rename one`);
    iommuIds.add(m.id);
    if (m.iova && BigInt(m.iova.end) <= BigInt(m.iova.start)) {
      issue(["iommus", i, "iova"], "iova.end must be above iova.start");
    }
  });
  const devIds = new Set<string>();
  const rids = new Map<string, string>();
  t.devices.forEach((d, i) => {
    if (devIds.has(d.id)) issue(["devices", i, "id"], `duplicate device id "${d.id}": rename one`);
    devIds.add(d.id);
    if (d.transport === "pci" && d.bdf === undefined) {
      issue(["devices", i, "bdf"], 'a pci device needs its PCI address, e.g. "bdf": "00:03.0"');
    }
    if (d.transport !== "pci" && d.bdf !== undefined) {
      issue(["devices", i, "bdf"], `only pci devices have a bdf; remove it or set transport "pci"`);
    }
    if (d.bdf !== undefined) {
      const prev = rids.get(d.bdf);
      if (prev) issue(["devices", i, "bdf"], `PCI address ${d.bdf} is already used by "${prev}"`);
      rids.set(d.bdf, d.id);
    }
    if (d.legacy && d.offers.some((f) => f !== "INDIRECT_DESC" && f !== "EVENT_IDX")) {
      issue(
        ["devices", i, "offers"],
        "a legacy interface has only 32 feature bits: VERSION_1, ACCESS_PLATFORM (33) and the " +
          'bits above 32 cannot be offered; remove them or set "legacy": false',
      );
    }
    if (d.transport === "ccw" && t.machine.arch !== "s390x-ccw") {
      issue(["devices", i, "transport"], 'virtio-ccw exists only on "s390x-ccw" machines');
    }
    if (d.behind !== "auto" && d.behind !== "none" && !iommuIds.has(d.behind)) {
      issue(["devices", i, "behind"], `no IOMMU "${d.behind}" in iommus[]; add it or use "auto"`);
    }
  });
  const refIommu = (path: (string | number)[], ref: string) => {
    if (!iommuIds.has(ref)) {
      issue(path, `no IOMMU "${ref}" in iommus[]; declare it there (ids: ${[...iommuIds]})`);
    }
  };
  t.firmware.dmar?.drhd.forEach((d, i) =>
    refIommu(["firmware", "dmar", "drhd", i, "iommu"], d.iommu)
  );
  t.firmware.ivrs?.ivhd.forEach((d, i) =>
    refIommu(["firmware", "ivrs", "ivhd", i, "iommu"], d.iommu)
  );
  t.firmware.iort?.mappings.forEach((m, i) =>
    refIommu(["firmware", "iort", "mappings", i, "iommu"], m.iommu)
  );
  if (t.firmware.viot) refIommu(["firmware", "viot", "iommu"], t.firmware.viot.iommu);
  t.firmware.deviceTree?.iommus.forEach((m, i) => {
    refIommu(["firmware", "deviceTree", "iommus", i, "iommu"], m.iommu);
    if (!devIds.has(m.device)) {
      issue(["firmware", "deviceTree", "iommus", i, "device"], `no device "${m.device}"`);
    }
  });
  t.firmware.deviceTree?.iommuMap.forEach((m, i) =>
    refIommu(["firmware", "deviceTree", "iommuMap", i, "iommu"], m.iommu)
  );
  t.iommus.forEach((m, i) => {
    if (m.kind === "virtio-iommu" && m.device !== undefined) {
      const d = t.devices.find((x) => x.id === m.device);
      if (!d) issue(["iommus", i, "device"], `no device "${m.device}" in devices[]`);
      else if (d.type !== "iommu") {
        issue(["iommus", i, "device"], `device "${m.device}" must have "type": "iommu"`);
      }
    }
  });
  for (const k of Object.keys(t.expect)) {
    if (!devIds.has(k)) {
      issue(["expect", k], `expect names device "${k}" which is not in devices[]`);
    }
  }
  checkMemory(t, issue);
}

/** Memory ranges: whole pages, below 2^52, disjoint; the run's own memory inside RAM. */
function checkMemory(
  t: Omit<Topology, "$schema" | "source" | "deviation">,
  issue: (path: (string | number)[], message: string) => void,
): void {
  t.memory.forEach((r, i) => {
    const g = BigInt(r.gpa), s = BigInt(r.size);
    if (g % 4096n !== 0n || s % 4096n !== 0n || s === 0n) {
      issue(["memory", i], "gpa and size must be non-zero multiples of 4096 (whole pages)");
    }
    if (g + s > 2n ** 52n) issue(["memory", i], "memory ends above 2^52 (52 physical bits)");
    t.memory.forEach((o, j) => {
      if (j <= i) return;
      const og = BigInt(o.gpa), os = BigInt(o.size);
      if (g < og + os && og < g + s) {
        issue(["memory", j], `overlaps memory[${i}]${r.name ? ` (${r.name})` : ""}`);
      }
    });
  });
  // The run's own memory must be RAM (each piece inside one RAM range).
  const L = runLayout(t);
  const need: [string, number, number][] = [
    ["rings", L.ringGpa, RUN_RING_BYTES],
    ["buffers", L.bufferGpa, 2 * Math.ceil(t.workload.bufferBytes / 4096) * 4096],
    ["bounce pool", L.poolGpa, t.guest.swiotlbSlots * 2048],
    ["virtio-iommu staging", L.stagingGpa, 0x4000],
  ];
  for (const [what, gpa, len] of need) {
    const inRam = t.memory.some((m) =>
      m.kind === "ram" && gpa >= Number(m.gpa) && gpa + len <= Number(m.gpa) + Number(m.size)
    );
    if (!inRam || gpa % 4096 !== 0) {
      issue(
        ["workload"],
        `the run puts the ${what} at 0x${gpa.toString(16)} (+0x${len.toString(16)}), which is ` +
          `${gpa % 4096 ? "not page-aligned" : "not inside one RAM range"}: give the first RAM ` +
          "range at least 34 MiB, or set workload.ringGpa / workload.bufferGpa (page-aligned) " +
          "inside RAM (the pool goes 16 MiB after the rings)",
      );
    }
  }
}
