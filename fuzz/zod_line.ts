/**
 * zod errors as one line: each issue as `field.path: message`, separated by `; `.
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
  if (issues.length === 0) return "invalid";
  const shown = issues.slice(0, 12).map((i) => `${at(i.path)}: ${i.message}`);
  if (issues.length > 12) shown.push(`and ${issues.length - 12} more`);
  return shown.join("; ");
}
