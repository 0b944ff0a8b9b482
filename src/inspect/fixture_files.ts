/**
 * File access for real-ring fixtures: reads an index, its pages image and its QMP capture from
 * disk and hands bytes and parsed JSON to the decoders beside it.
 *
 * Fixtures live in the repository: `tests/fixtures/qemu-7.2-linux-6.1/` (about 400 KiB), so a bare
 * clone has them. Override the directory with `VIRTQ_FIXTURES_DIR` (it must then hold
 * `scenarioA.*` and `scenarioB.*` files of the same format).
 *
 * @module
 */

import { parseExactJson } from "./exact_json.ts";
import { type Fixture, loadFixture } from "./fixture.ts";
import { InspectInputError } from "./inspect_error.ts";
import { parseQemuOracle, type QemuQueueView } from "./qemu_oracle.ts";

/** Environment variable that overrides the fixtures directory. */
export const FIXTURES_ENV = "VIRTQ_FIXTURES_DIR";

/** The repo root (two directories above `src/inspect/`). */
export function repoRoot(): string {
  return decodeURIComponent(new URL("../..", import.meta.url).pathname).replace(/\/$/, "");
}

/** The bundled fixtures: `<repo>/tests/fixtures/qemu-7.2-linux-6.1`. */
export const DEFAULT_FIXTURES_DIR: string = `${repoRoot()}/tests/fixtures/qemu-7.2-linux-6.1`;

/**
 * Where the fixtures directory came from, for messages: the environment variable or the bundled
 * copy.
 */
export function fixturesSource(): string {
  const dir = fixturesDir();
  return dir === DEFAULT_FIXTURES_DIR
    ? `${dir} (bundled; override with ${FIXTURES_ENV})`
    : `${dir} (from ${FIXTURES_ENV})`;
}

/** The fixtures directory: `$VIRTQ_FIXTURES_DIR`, else `<repo>/tests/fixtures/qemu-7.2-linux-6.1`. */
export function fixturesDir(): string {
  let env: string | undefined;
  try {
    // Ask only when already granted: never prompt (e.g. a fuzz run without --allow-env).
    const granted = Deno.permissions.querySync({ name: "env", variable: FIXTURES_ENV });
    if (granted.state === "granted") env = Deno.env.get(FIXTURES_ENV);
  } catch {
    // No permission API or no access: the default location.
  }
  if (env) return env;
  return DEFAULT_FIXTURES_DIR;
}

/** Sibling files of an index: `X.index.json` -> `X.pages.bin.gz`, `X.qmp-virtio.json`. */
export function siblingFiles(indexPath: string): { pages: string; qmp: string } {
  const base = indexPath.replace(/\.index\.json$/, "");
  if (base === indexPath) {
    throw new InspectInputError(
      indexPath,
      "",
      "the index file name must end in .index.json",
      "pass the *.index.json of a fixture (its pages and QMP files sit beside it)",
    );
  }
  return { pages: `${base}.pages.bin.gz`, qmp: `${base}.qmp-virtio.json` };
}

async function readText(path: string, what: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    throw new InspectInputError(
      path,
      "",
      `cannot read ${what} (${(e as Error).message})`,
      `check the path; fixtures are looked up in ${fixturesDir()} (override with ${FIXTURES_ENV})`,
    );
  }
}

function parseJsonFile(text: string, path: string): unknown {
  try {
    return parseExactJson(text);
  } catch (e) {
    throw new InspectInputError(
      path,
      "",
      `not valid JSON (${(e as Error).message})`,
      "pass the unedited capture file",
    );
  }
}

/**
 * Reads and loads a fixture from its index path (the pages image beside it).
 * @throws InspectInputError naming the file, field and fix.
 */
export async function readFixture(indexPath: string): Promise<Fixture> {
  const { pages } = siblingFiles(indexPath);
  const json = parseJsonFile(await readText(indexPath, "the fixture index"), indexPath);
  let gz: Uint8Array;
  try {
    gz = await Deno.readFile(pages);
  } catch (e) {
    throw new InspectInputError(
      pages,
      "",
      `cannot read the pages image (${(e as Error).message})`,
      "keep X.pages.bin.gz beside X.index.json",
    );
  }
  return await loadFixture(json, gz, { index: indexPath, pages });
}

/**
 * Reads the QEMU oracle beside an index, or returns `null` when there is none.
 * @throws InspectInputError when the file exists but is invalid.
 */
export async function readOracle(indexPath: string): Promise<Map<string, QemuQueueView> | null> {
  const { qmp } = siblingFiles(indexPath);
  let text: string;
  try {
    text = await Deno.readTextFile(qmp);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw new InspectInputError(
      qmp,
      "",
      `cannot read the QEMU oracle (${(e as Error).message})`,
      "make it a readable file, or pass --no-oracle",
    );
  }
  return parseQemuOracle(parseJsonFile(text, qmp), qmp);
}
