/**
 * Guards the size of the two chain walks against V8's inlining limit.
 *
 * The split and packed device queues rely on TurboFan inlining their chain walk into `pop`
 * (see the JSDoc of `SplitChainWalk.walk` and `PackedChainWalk.walk`): a walk whose bytecode
 * grows past `--max-inlined-bytecode-size` is silently called out of line, and every
 * device-side bench reads slower with no test failing. This test compiles each walk in a
 * child Deno (the same binary) with `--print-bytecode` and checks its bytecode length against
 * the limit that V8 itself reports, so it fails on the edit that crosses it, not in a bench.
 */
import { assert, assertEquals } from "@std/assert";
import { bytecodeLength, inlineLimit } from "./_v8_bytecode.ts";

const WALKS = [
  { file: "../../src/virtio/split/walk.ts", cls: "SplitChainWalk" },
  { file: "../../src/virtio/packed/walk.ts", cls: "PackedChainWalk" },
] as const;

/** Bytecode length (bytes) of `cls.prototype.walk`, compiled by one call that throws early. */
async function walkBytecodeLength(dir: string, file: string, cls: string): Promise<number> {
  const script = `${dir}/${cls}.ts`;
  const url = new URL(file, import.meta.url).href;
  await Deno.writeTextFile(
    script,
    `import { ${cls} } from ${JSON.stringify(url)};\n` +
      `try { ${cls}.prototype.walk.call({}, null, 0, 0, 0); } catch { /* compiled */ }\n`,
  );
  return await bytecodeLength(script, "walk");
}

Deno.test("split and packed chain walks stay under V8's inlining bytecode limit", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walk-inline-" });
  try {
    const limit = await inlineLimit(dir);
    assertEquals(limit > 0, true);
    for (const w of WALKS) {
      const len = await walkBytecodeLength(dir, w.file, w.cls);
      assert(
        len < limit,
        `${w.cls}.walk is ${len} bytes of bytecode, not under V8's inlining limit of ${limit}: ` +
          "move the new work out of line (see the walk's JSDoc)",
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
