/**
 * Human and machine renderings of a {@link TopologyResolution}: for each device, the features,
 * both views layer by layer with the rule that chose each layer, the path of one DMA from the
 * driver's buffer to memory (driver address -> bus address -> each translation -> GPA), the
 * verdict, and where the driver's and the device's views part.
 *
 * @module
 */

import { hex64, type U64 } from "../memory/u64.ts";
import type { DeviceResolution, TopologyResolution } from "./resolve.ts";

const addr = (a: U64 | null) => (a === null ? "FAULT" : hex64(a));

/**
 * Renders a resolution as plain text (no colours), one block per device.
 * @param r the resolution from `resolveTopology`.
 * @returns lines joined by `\n`, ending with a summary line.
 */
export function explainText(r: TopologyResolution): string {
  const out: string[] = [];
  out.push(`${r.name}: ${r.title}${r.catalogue.length ? `  [${r.catalogue.join(", ")}]` : ""}`);
  if (r.deviation) out.push(...wrap(`deviation from the catalogue: ${r.deviation}`, 100, "  "));
  for (const d of r.devices) out.push("", ...explainDevice(d));
  const bad = r.devices.filter((d) => !matchesExpectation(d) || !predictionHolds(d));
  out.push(
    "",
    `summary: ${r.devices.length} device(s); ` +
      r.devices.map((d) => `${d.id}=${d.observed.verdict}`).join(", ") +
      (bad.length ? `; MISMATCH: ${bad.map((d) => d.id).join(", ")}` : ""),
  );
  return out.join("\n");
}

/** Word-wraps `text` to `width` columns; continuation lines start with `indent`. */
function wrap(text: string, width: number, indent: string): string[] {
  const lines: string[] = [];
  let line = "";
  for (const w of text.split(/\s+/)) {
    if (line && line.length + 1 + w.length > width) {
      lines.push(line);
      line = indent + w;
    } else line = line ? `${line} ${w}` : w;
  }
  if (line) lines.push(line);
  return lines;
}

function explainDevice(d: DeviceResolution): string[] {
  const p = d.plan;
  const o: string[] = [];
  const dev = p.device;
  o.push(
    `device ${d.id} (virtio-${dev.type} over ${dev.transport}${dev.bdf ? ` ${dev.bdf}` : ""}, ` +
      `back-end ${dev.backend.kind})`,
  );
  o.push(`  features offered:    ${d.offered.join(" ") || "(none)"}`);
  o.push(`  features negotiated: ${d.negotiated.join(" ") || "(none)"}`);
  o.push(
    `  probe:               ${p.probe.status}${p.probe.status !== "ok" ? ` - ${p.probe.why}` : ""}`,
  );
  o.push(`  DMA API:             ${p.usesDmaApi ? "yes" : "no"} - ${p.dmaApiWhy}`);
  o.push(
    `  firmware says:       ${p.guestIommu ?? "no IOMMU"}; host has: ${p.hostIommu ?? "no IOMMU"}` +
      (p.hostIommu ? ` (${p.hostHonours ? "honoured" : "not honoured"} for this device)` : ""),
  );
  if (p.probe.status === "ok") {
    o.push("  driver view (GPA -> bus address):");
    for (const l of p.driverLayers) o.push(`    [${l.mode}] ${l.kind}: ${l.why}`);
    o.push("  device view (bus address -> GPA):");
    for (const l of p.deviceLayers) {
      const what = l.kind === "iommu" ? `iommu ${l.iommu} (${l.state})` : l.kind;
      o.push(`    ${what}: ${l.why}`);
    }
    o.push("  one DMA, layer by layer:");
    for (const s of d.trace) {
      const arrow = s.side === "driver" ? "map" : "xlate";
      o.push(
        `    ${s.side.padEnd(6)} ${arrow.padEnd(5)} ${s.layer.padEnd(24)} ${addr(s.from)} -> ${
          addr(s.to)
        }  ${s.note}`,
      );
    }
  }
  o.push(`  views part at:       ${d.partsAt ?? "nowhere (the views agree)"}`);
  o.push(
    `  verdict (rings):     ${d.observed.verdict.toUpperCase()}${
      d.observed.layer ? ` at ${d.observed.layer}` : ""
    }${d.observed.reason ? ` (${d.observed.reason})` : ""} - ${d.observed.detail}`,
  );
  if (!predictionHolds(d)) {
    o.push(
      `  PREDICTION DIFFERS:  ${d.predicted.verdict}${
        d.predicted.layer ? ` at ${d.predicted.layer}` : ""
      } - ${d.predicted.detail}`,
    );
  }
  if (d.expected) {
    o.push(
      `  recorded verdict:    ${d.expected.verdict}${
        d.expected.layer ? ` at ${d.expected.layer}` : ""
      } ` +
        (matchesExpectation(d) ? "(matches)" : "(DOES NOT MATCH)"),
    );
  }
  for (const w of d.warnings) o.push(`  warning: ${w}`);
  return o;
}

/** True when the observed verdict (and layer, when recorded) equals the topology's expectation. */
export function matchesExpectation(d: DeviceResolution): boolean {
  if (!d.expected) return true;
  return d.expected.verdict === d.observed.verdict &&
    (d.expected.layer === undefined || d.expected.layer === d.observed.layer);
}

/** True when the verdict predicted from the views equals the one the rings showed. */
export function predictionHolds(d: DeviceResolution): boolean {
  return d.predicted.verdict === d.observed.verdict && d.predicted.layer === d.observed.layer;
}

/**
 * A JSON-safe form of a resolution (u64 addresses and feature masks as hex strings), for
 * `explain --json`.
 */
export function explainJson(r: TopologyResolution): unknown {
  return JSON.parse(
    JSON.stringify(r, (_k, v) => (typeof v === "bigint" ? "0x" + v.toString(16) : v)),
  );
}
