/**
 * JSON form of an inspection, for machines: every 64-bit address and the feature mask become
 * `"0x…"` hex strings (exact; JSON numbers would round above 2^53), everything else stays a
 * plain number, string or boolean.
 * @module
 */

import { hex64, type U64 } from "../memory/u64.ts";
import type { DecodedChain, DecodedDescriptor } from "./decoded_chain.ts";
import type { QueueReport, UsedEntry } from "./inspect_queue.ts";

/** A descriptor in JSON form (`addr` as a hex string). */
export type DescriptorJson = Omit<DecodedDescriptor, "addr"> & { addr: string };

/** A chain in JSON form. */
export type ChainJson = Omit<DecodedChain, "descriptors" | "indirect"> & {
  descriptors: DescriptorJson[];
  indirect: DescriptorJson | null;
};

/** A used entry in JSON form. */
export type UsedEntryJson = Omit<UsedEntry, "chain"> & { chain?: ChainJson };

/** A queue report in JSON form. */
export type QueueReportJson =
  & Omit<QueueReport, "features" | "areas" | "outstanding" | "completed">
  & {
    features: string;
    areas: Record<"desc" | "driver" | "device", { addr: string; bytes: number }>;
    outstanding: ChainJson[];
    completed: UsedEntryJson[];
  };

const hex = (v: U64): string => hex64(v);

function descJson(d: DecodedDescriptor): DescriptorJson {
  return { ...d, addr: hex(d.addr) };
}

/** Converts a {@link QueueReport} to its JSON-safe form (see the module notes). */
export function queueReportToJson(r: QueueReport): QueueReportJson {
  return {
    ...r,
    features: "0x" + r.features.toString(16).padStart(16, "0"),
    areas: {
      desc: { addr: hex(r.areas.desc.addr), bytes: r.areas.desc.bytes },
      driver: { addr: hex(r.areas.driver.addr), bytes: r.areas.driver.bytes },
      device: { addr: hex(r.areas.device.addr), bytes: r.areas.device.bytes },
    },
    outstanding: r.outstanding.map(chainJson),
    completed: r.completed.map((u) => ({ ...u, chain: u.chain ? chainJson(u.chain) : undefined })),
  };
}

function chainJson(c: DecodedChain): ChainJson {
  return {
    ...c,
    descriptors: c.descriptors.map(descJson),
    indirect: c.indirect ? descJson(c.indirect) : null,
  };
}
