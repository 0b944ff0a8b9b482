/**
 * zod errors as one line: the first issue as `field.path: message`, then how many more.
 * @module
 */

import type { z } from "zod";

/** `a.b[2]: expected number, received string (and 3 more problems)`. */
export function zodLine(error: z.ZodError): string {
  const issues = error.issues;
  const at = (path: readonly PropertyKey[]) =>
    path.length === 0
      ? "(top level)"
      : path.map((p, i) => typeof p === "number" ? `[${p}]` : `${i === 0 ? "" : "."}${String(p)}`)
        .join("");
  const first = issues[0];
  if (first === undefined) return "invalid";
  const more = issues.length > 1 ? ` (and ${issues.length - 1} more problem(s))` : "";
  return `${at(first.path)}: ${first.message}${more}`;
}
