/** A registry whose module load never finishes (for the load watchdog test). */
// deno-lint-ignore no-empty
while (Date.now() > 0) {}
export const TARGETS = [];
