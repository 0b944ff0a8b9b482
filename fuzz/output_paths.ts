/**
 * Checking a CLI's output paths before any work starts, so a long campaign never ends with an
 * unwritable `--json` / `--junit` path and a lost report.
 * @module
 */

/**
 * Why `path` cannot be written as the output file of `flag`, as one line naming the flag, the
 * path and the fix; `null` when it can. The check creates the file when it is missing and removes
 * it again, so permissions are tested for real.
 */
export function outputPathProblem(flag: string, path: string): string | null {
  if (path.trim() === "") return `${flag}: empty path. Fix: write ${flag} FILE`;
  let existed = false;
  try {
    const st = Deno.statSync(path);
    if (st.isDirectory) {
      return `${flag}: ${path} is a directory. Fix: name a file, e.g. ${
        path.replace(/\/+$/, "")
      }/report.${flag === "--junit" ? "xml" : "json"}`;
    }
    existed = true;
  } catch { /* missing (or a parent is not a directory): the directory check names it */ }
  const slash = path.lastIndexOf("/");
  const dir = slash < 0 ? "." : slash === 0 ? "/" : path.slice(0, slash);
  try {
    if (!Deno.statSync(dir).isDirectory) {
      return `${flag}: ${dir} is not a directory. Fix: name a file in an existing directory`;
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) {
      return `${flag}: ${dir} is not a usable directory (${oneLine(e)}). Fix: name a file in ` +
        "an existing directory";
    }
    return `${flag}: directory ${dir} does not exist. Fix: create it first (mkdir -p ${dir}) ` +
      "or name a file in an existing directory";
  }
  try {
    const f = Deno.openSync(path, { write: true, create: true });
    f.close();
    if (!existed) Deno.removeSync(path);
  } catch (e) {
    return `${flag}: cannot write ${path} (${oneLine(e)}). Fix: name a writable file`;
  }
  return null;
}

/** The first line of an error's message. */
export function oneLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split("\n")[0];
}

/** The first problem among `[flag, path]` pairs (undefined paths are skipped), or `null`. */
export function outputPathsProblem(
  outputs: readonly (readonly [string, string | undefined])[],
): string | null {
  for (const [flag, path] of outputs) {
    if (path === undefined) continue;
    const p = outputPathProblem(flag, path);
    if (p !== null) return p;
  }
  return null;
}
