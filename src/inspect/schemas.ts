/**
 * zod schemas of the inspector's inputs (fixture index, QMP oracle): validation at the edge. Not
 * part of the public face (`src/mod.ts` exports the typed interfaces and parse functions). The
 * interfaces live beside their parse functions, which assign each parsed value to its interface, so
 * a schema that drifts from its interface fails `deno check` (and this file imports neither).
 * @module
 */

import { z } from "zod";
import { GUEST_PAGE_SIZE } from "../memory/guest_memory.ts";

const u64 = z.union([z.number().int().nonnegative(), z.bigint().nonnegative()]);
const u16 = z.number().int().min(0).max(0xffff);
const pageAligned = z.number().int().nonnegative().multipleOf(GUEST_PAGE_SIZE);
const hexU64 = z.string().regex(/^0x[0-9a-fA-F]{1,16}$/, 'a hex string "0x..." of at most 64 bits');
const BDF_RE = /^(?:0{1,4}:)?[0-9a-fA-F]{1,2}:[01]?[0-9a-fA-F]\.[0-7]$/;

/** zod schema of one `x-query-virtio-queue-status` answer. */
export const QemuQueueStatusSchema = z.object({
  name: z.string(),
  "queue-index": u16,
  inuse: z.number().int().nonnegative(),
  "vring-num": z.number().int().nonnegative(),
  "vring-num-default": z.number().int().nonnegative(),
  "vring-align": z.number().int().nonnegative(),
  "vring-desc": u64,
  "vring-avail": u64,
  "vring-used": u64,
  "last-avail-idx": u16.optional(),
  "shadow-avail-idx": u16.optional(),
  "used-idx": u16,
  "signalled-used": u16,
  "signalled-used-valid": z.boolean(),
});

const DescSchema = z.object({
  addr: u64,
  len: z.number().int().nonnegative(),
  flags: z.array(z.string()),
});

/** zod schema of one `x-query-virtio-queue-element` return value. */
export const QemuQueueElementSchema = z.object({
  name: z.string(),
  index: z.number().int().nonnegative(),
  descs: z.array(DescSchema),
  avail: z.object({ idx: u16, flags: u16, ring: u16 }).optional(),
  used: z.object({ idx: u16, flags: u16 }).optional(),
});

const ElementQuerySchema = z.object({
  index_arg: u16.nullable(),
  result: z.union([
    z.object({ return: QemuQueueElementSchema }),
    z.object({ error: z.object({ class: z.string(), desc: z.string() }) }),
  ]),
});

/** zod schema of a captured `*.qmp-virtio.json` file. */
export const QemuOracleSchema = z.object({
  "x-query-virtio": z.array(z.object({ name: z.string(), path: z.string() })),
  devices: z.record(
    z.string(),
    z.object({
      name: z.string(),
      status: z.object({ "num-vqs": z.number().int().nonnegative() }).loose(),
      queues: z.array(
        z.object({
          queue: u16,
          status: QemuQueueStatusSchema,
          elements: z.array(ElementQuerySchema),
        }),
      ),
    }),
  ),
});

/** zod schema of one queue of a fixture index. */
export const FixtureQueueSchema = z.object({
  device: z.string().min(1),
  path: z.string().min(1),
  queue: z.number().int().min(0).max(0xffff),
  size: z.number().int().min(1).max(32768),
  desc: u64,
  avail: u64,
  used: u64,
  packed: z.boolean(),
  addresses_are_iova: z.boolean().optional(),
  bdf: z.string().regex(BDF_RE, 'a PCI address "BB:DD.F", e.g. "00:03.0"').optional(),
  indirect_tables_referenced: z.number().int().nonnegative().optional(),
  buffers_referenced: z.number().int().nonnegative().optional(),
  guest_features: z.object({
    transports: z.array(z.string()),
    "dev-features": z.array(z.string()),
    "unknown-dev-features": u64.optional(),
  }),
  qemu_status: QemuQueueStatusSchema.optional(),
});

/** zod schema of a fixture index (`*.index.json`). */
export const FixtureIndexSchema = z.object({
  format: z.literal("virtio-ring-fixture-v1"),
  page_size: z.literal(GUEST_PAGE_SIZE),
  ram_size: z.number().int().positive(),
  note: z.string().optional(),
  pages: z.array(
    z.object({ gpa: pageAligned, file_offset: pageAligned, why: z.array(z.string()) }),
  ),
  queues: z.array(FixtureQueueSchema),
  iommu: z.object({
    rtaddr_reg: hexU64,
    iova_to_gpa: z.record(z.string().regex(BDF_RE, "a PCI address"), z.record(hexU64, hexU64))
      .optional(),
  }).optional(),
});
