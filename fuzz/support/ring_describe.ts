/**
 * `describe` for ring targets: the ring state a failing input builds, rendered by the inspector
 * (`src/inspect`): the descriptor table, available and used rings (or the packed descriptor ring
 * and event suppression areas), chains and indirect tables decoded, plus hex dumps of each area.
 * @module
 */

import type { GuestMemory } from "../../src/memory/mod.ts";
import type { RingLayout } from "../../src/virtio/mod.ts";
import { hexDump, inspectQueue, queueReportToJson } from "../../src/inspect/_internal.ts";

/** Where a target put its queue. */
export interface RingPlace {
  /** Ring layout. */
  layout: RingLayout;
  /** Queue Size. */
  size: number;
  /** Negotiated features. */
  features: bigint;
  /** Descriptor area GPA. */
  desc: number;
  /** Driver area GPA (available ring / driver event suppression). */
  driver: number;
  /** Device area GPA (used ring / device event suppression). */
  device: number;
}

/**
 * The inspector's decoding of the queue at `place` in `memory` (device positions inferred from
 * the rings), with hex dumps of the three areas. Never throws: a decoding failure is reported in
 * the result.
 */
export function describeRing(memory: GuestMemory, place: RingPlace, ramSize: number): unknown {
  try {
    const r = inspectQueue({
      device: "fuzz",
      path: "fuzz",
      queue: 0,
      size: place.size,
      layout: place.layout,
      descAddr: place.desc,
      driverAddr: place.driver,
      deviceAddr: place.device,
      features: place.features,
    }, { memory, ramSize, positions: "memory" });
    const hex = (gpa: number, bytes: number) => {
      try {
        return hexDump(memory, gpa, bytes).join("\n");
      } catch (e) {
        return `(not readable: ${(e as Error).message})`;
      }
    };
    return {
      inspected: queueReportToJson(r),
      hex: {
        descriptorArea: hex(place.desc, r.areas.desc.bytes),
        driverArea: hex(place.driver, r.areas.driver.bytes),
        deviceArea: hex(place.device, r.areas.device.bytes),
      },
    };
  } catch (e) {
    return `(the inspector could not decode the ring: ${(e as Error).message})`;
  }
}
