/**
 * Guards the size of the split driver's completion fast path against V8's inlining limit.
 *
 * `SplitDriverQueue.getUsed` hands a completion to `#takeUsed`, whose one-descriptor fast path
 * is kept small so that TurboFan inlines it into its callers (`getUsed`, and through it
 * `VhostUserDevice.waitUsed` and a polling loop); every other case goes to
 * `#takeUsedGeneral`, a call. A `#takeUsed` grown past `--max-inlined-bytecode-size` is
 * silently called out of line and the testpmd round trip (`deno task bench:vhost-user`) reads
 * slower with no test failing. This test compiles it in a child Deno (the same binary) with
 * `--print-bytecode` and checks its length against the limit V8 itself reports.
 *
 * The mapped one-segment add (the top of `#addGeneral`) is the other way round: it is kept OVER
 * the limit, so that V8 never inlines it and optimises it alone, with a whole cumulative inlining
 * budget for the DMA API's `mapNumber` chain (window-iommu: the fallback's `mapNumber`,
 * `accepts`, the window lookup twice). Inlined into a busy caller, part of that chain would be
 * left out of line and return its bus address (>= 2^31) as a heap number: 10 B/chain, as in
 * session 7.
 */
import { assert, assertEquals } from "@std/assert";
import { bytecodeLength, inlineLimit } from "../_v8_bytecode.ts";

/** Bytecode length of `#takeUsed`, compiled by one completed one-descriptor buffer. */
async function takeUsedBytecodeLength(dir: string): Promise<number> {
  return await driverBytecodeLength(dir, "RawGpaDmaApi", "#takeUsed");
}

/** Bytecode length of the split driver's `fn`, compiled by one buffer added and completed. */
async function driverBytecodeLength(dir: string, dmaClass: string, fn: string): Promise<number> {
  const src = (p: string) =>
    JSON.stringify(new URL(`../../../src/${p}/mod.ts`, import.meta.url).href);
  const script = `${dir}/take_used.ts`;
  await Deno.writeTextFile(
    script,
    `import { GuestMemory } from ${src("memory")};\n` +
      `import { ${dmaClass} } from ${src("dma")};\n` +
      `import { createDriverQueue, SgList } from ${src("virtio")};\n` +
      `const memory = GuestMemory.flat(1 << 20);\n` +
      `const q = createDriverQueue("split", { memory, dma: new ${dmaClass}(), size: 8, ` +
      `features: 1n << 32n, ringGpa: 0 });\n` +
      `q.add(SgList.of(), SgList.of([0x80000, 64]), 7);\n` +
      `q.kick();\n` +
      `const used = Number(q.addresses.deviceAddr);\n` +
      `memory.writeU32(used + 4, 0); memory.writeU32(used + 8, 64); memory.writeU16(used + 2, 1);\n` +
      `if (q.getUsed() !== 7) throw new Error("no completion");\n`,
  );
  return await bytecodeLength(script, fn);
}

Deno.test("split driver's completion fast path (#takeUsed) stays under V8's inlining limit", async () => {
  const dir = await Deno.makeTempDir({ prefix: "take-used-inline-" });
  try {
    const limit = await inlineLimit(dir);
    assertEquals(limit > 0, true);
    const len = await takeUsedBytecodeLength(dir);
    assert(len > 0);
    assert(
      len < limit,
      `SplitDriverQueue#takeUsed is ${len} bytes of bytecode, V8 inlines up to ${limit}: move ` +
        `work to #takeUsedGeneral`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("split driver's mapped one-segment add (#addGeneral) stays over V8's inlining limit", async () => {
  const dir = await Deno.makeTempDir({ prefix: "add-one-mapped-inline-" });
  try {
    const limit = await inlineLimit(dir);
    const len = await driverBytecodeLength(dir, "DirectDmaApi", "#addGeneral");
    assert(
      len > limit,
      `SplitDriverQueue#addGeneral is ${len} bytes of bytecode, V8 inlines up to ${limit}: ` +
        `inlined, it would share its caller's inlining budget with the mapNumber chain`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
