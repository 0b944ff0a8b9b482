/**
 * Planted bugs for the DMA fast-path tests: a private copy of `src/dma` and `src/memory` with one
 * source edit, imported fresh, so a test can show that its property fails on the planted bug.
 */
import { assert } from "@std/assert";
import { fileURLToPath } from "node:url";

// deno-lint-ignore no-explicit-any
type Mod = any;

const SRC = fileURLToPath(new URL("../../src/", import.meta.url));

/**
 * Runs `body` on the DMA and memory faces of a copy of `src/dma` and `src/memory` in which the
 * first `from` in `file` (a path under `src/`, e.g. `src/dma/iotlb.ts`) is replaced by `to`; the
 * copy is removed afterwards.
 * @throws AssertionError when `from` is not in `file` (the plant site moved).
 */
export async function withPlantedDma<T>(
  file: string,
  from: string,
  to: string,
  body: (dma: Mod, memory: Mod) => T | Promise<T>,
): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "dma-plant-" });
  try {
    for (const f of ["dma", "memory"]) {
      await new Deno.Command("cp", { args: ["-r", `${SRC}${f}`, `${dir}/`] }).output();
    }
    const path = `${dir}/${file.replace(/^src\//, "")}`;
    const text = await Deno.readTextFile(path);
    assert(text.includes(from), `plant site not found in ${file}`);
    await Deno.writeTextFile(path, text.replace(from, to));
    const dma = await import(`file://${dir}/dma/mod.ts`);
    const memory = await import(`file://${dir}/memory/mod.ts`);
    return await body(dma, memory);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
