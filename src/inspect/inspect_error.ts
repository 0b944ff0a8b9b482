/**
 * The inspect layer's error: a fixture, oracle or command-line input that cannot be used, naming
 * the file, the field and the fix (house rule for tools: "errors name the file, field and fix").
 * @module
 */

/**
 * Thrown when a fixture index, a pages image, a QEMU oracle file or an inspect option is
 * unusable. `message` is `file: field: problem. Fix: ...`.
 */
export class InspectInputError extends Error {
  /** Stable code, `INSPECT_INPUT`. */
  readonly code = "INSPECT_INPUT" as const;
  /** The file (or `"<argv>"` for command-line options) the problem is in. */
  readonly file: string;
  /** Dotted path of the offending field, e.g. `queues[3].size`, or `""` for the whole file. */
  readonly field: string;
  /** What to do about it. */
  readonly fix: string;

  /**
   * Creates the error; the message reads `file: field: problem. Fix: fix`.
   * @param file file name (or `"<argv>"`).
   * @param field dotted field path (`""` for the file as a whole).
   * @param problem what is wrong, naming the value.
   * @param fix how to fix it.
   */
  constructor(file: string, field: string, problem: string, fix: string) {
    super(`${file}: ${field === "" ? "" : field + ": "}${problem}. Fix: ${fix}`);
    this.name = "InspectInputError";
    this.file = file;
    this.field = field;
    this.fix = fix;
  }
}

/**
 * The inspector's own catalogue: findings about a **capture** (an image of a guest) that are not
 * virtqueue rule violations of `VIRTQ_ERRORS` (src/virtio/errors.ts). Each is reported per queue
 * (a {@link DecodeError} with the code), the other queues are still inspected, and `inspect`
 * exits 1. New codes go at the end.
 */
export const INSPECT_ERRORS = {
  IOVA_UNTRANSLATED: {
    spec: "Intel VT-d §3 DMA remapping: a request whose IOVA the root / context / PASID / paging " +
      "structures do not translate is blocked and faults (QEMU vtd_do_iommu_translate)",
    summary: "an IOVA (ring area, indirect table or buffer) does not translate through the " +
      "captured VT-d tables; the message names the IOVA and the structure and level that " +
      "stopped the walk",
  },
  IOMMU_TABLE_NOT_CAPTURED: {
    spec: "capture limit: the VT-d table page the walk needs was not kept",
    summary: "a VT-d table page needed to translate an IOVA is not in the capture (re-capture " +
      "with the tables; not a guest error)",
  },
  RING_OUTSIDE_RAM: {
    spec: "§2.7/§2.8 ring areas are in guest memory; the capture's ram_size bounds guest RAM",
    summary: "a ring area's GPA (after translation) is at or beyond the guest RAM size the " +
      "capture gives",
  },
  PAGE_TRUNCATED: {
    spec: "capture limit: the pages image ends before a page the index lists",
    summary: "a ring area lies in a page the index lists but the (truncated) pages image does " +
      "not hold",
  },
  QUEUE_DECODE_FAILED: {
    spec: "inspector robustness: any other failure while decoding one queue",
    summary: "decoding this queue failed unexpectedly; the message says why (please report it " +
      "with the capture); the other queues are still reported",
  },
} as const;

/** A code of {@link INSPECT_ERRORS}. */
export type InspectErrorCode = keyof typeof INSPECT_ERRORS;
