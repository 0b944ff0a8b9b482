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
