/**
 * Registry checks: every target exported by a file in `fuzz/targets/` must be registered in
 * `fuzz/targets/mod.ts` exactly once, with a unique kebab-case name and a one-line description.
 * The runner refuses to start otherwise, and `tests/fuzz/fuzz_registry_test.ts` checks the same.
 * @module
 */

import type { FuzzTarget } from "./target.ts";

/** True when `v` has the shape of a {@link FuzzTarget}. */
export function isFuzzTarget(v: unknown): v is FuzzTarget<unknown> {
  if (typeof v !== "object" || v === null) return false;
  const t = v as Record<string, unknown>;
  return typeof t.name === "string" && typeof t.description === "string" &&
    typeof t.arbitrary === "function" && typeof t.run === "function";
}

/** Problems of the registry list itself (names, descriptions, duplicates). */
export function registryProblems(targets: readonly FuzzTarget<unknown>[]): string[] {
  const problems: string[] = [];
  const names = new Set<string>();
  for (const t of targets) {
    if (!/^[a-z0-9]+(-[a-z0-9]+)*$/.test(t.name)) {
      problems.push(`target "${t.name}": name must be kebab-case (e.g. "split-hostile-driver")`);
    }
    if (names.has(t.name)) problems.push(`target "${t.name}" is registered twice in TARGETS`);
    names.add(t.name);
    if (t.description.trim() === "" || t.description.includes("\n")) {
      problems.push(`target "${t.name}": description must be one non-empty line (shown by --list)`);
    }
  }
  return problems;
}

/**
 * Imports every `.ts` file under `dir` (except `mod.ts`) and reports each exported target that
 * is not in `registered` (compared by identity, then by name). Helper modules that export no
 * target are fine.
 */
export async function unregisteredTargets(
  dirUrl: URL,
  registered: readonly FuzzTarget<unknown>[],
): Promise<string[]> {
  const problems: string[] = [];
  const walk = async (url: URL, rel: string): Promise<void> => {
    const entries = [...Deno.readDirSync(url)].sort((a, b) => a.name.localeCompare(b.name));
    for (const e of entries) {
      if (e.isDirectory) {
        await walk(new URL(`${e.name}/`, url), `${rel}${e.name}/`);
        continue;
      }
      if (!e.name.endsWith(".ts") || e.name.endsWith(".d.ts") || `${rel}${e.name}` === "mod.ts") {
        continue;
      }
      const mod = await import(new URL(e.name, url).href) as Record<string, unknown>;
      for (const [exportName, v] of Object.entries(mod)) {
        if (!isFuzzTarget(v)) continue;
        if (registered.includes(v)) continue;
        const byName = registered.find((t) => t.name === v.name);
        problems.push(
          byName === undefined
            ? `fuzz/targets/${rel}${e.name}: target "${v.name}" (export ${exportName}) is not ` +
              `registered. Fix: add ${exportName} to TARGETS in fuzz/targets/mod.ts`
            : `fuzz/targets/${rel}${e.name}: export ${exportName} is named "${v.name}" like a ` +
              `registered target but is a different object. Fix: register this export itself`,
        );
      }
    }
  };
  await walk(dirUrl, "");
  return problems;
}
