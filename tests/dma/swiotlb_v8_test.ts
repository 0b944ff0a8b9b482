/**
 * Guards two V8 facts swiotlb's one-slot fast paths rely on, each in a child Deno (the same
 * binary):
 * - size: a ring driver inlines `mapNumber` -> `#mapFast` -> `#bounceOne` into its mapped add
 *   and `unmap` -> `#bounceBack` -> `#releaseOne` into its unmap loop. Each function must stay
 *   under `--max-inlined-bytecode-size` and each chain within the cumulative budget
 *   (`--max-inlined-bytecode-size-cumulative`), or part of it is silently called out of line.
 * - no mid-run deoptimization: the byte counters cross the Smi range after 1 GiB of bounces; as
 *   small-integer fields that overflow deoptimizes the callers and changes the API object's
 *   field representation, which deoptimizes every function inlining the fast paths. Their
 *   fields start as doubles, so bouncing 2 GiB after warm-up deoptimizes nothing.
 */
import { assert, assertEquals } from "@std/assert";
import { bytecodeLength, inlineLimit, runDeno } from "../virtio/_v8_bytecode.ts";

const MAP_CHAIN = ["mapNumber", "#mapFast", "#bounceOne"];
const UNMAP_CHAIN = ["unmap", "#bounceBack", "#releaseOne"];

/** A script that bounces 32 buffers per round through a 1 MiB pool (64 B and 2048 B). */
async function writeScript(dir: string, body: string): Promise<string> {
  const src = (p: string) => JSON.stringify(new URL(`../../src/${p}/mod.ts`, import.meta.url).href);
  const script = `${dir}/swiotlb_child.ts`;
  await Deno.writeTextFile(
    script,
    `import { GuestMemory, createCopyableBacking } from ${src("memory")};\n` +
      `import { DirectDmaApi, SwiotlbDmaApi } from ${src("dma")};\n` +
      `const BUF = 1 << 20, POOL = 1 << 20;\n` +
      `const backing = createCopyableBacking(BUF + POOL) ?? new ArrayBuffer(BUF + POOL);\n` +
      `const memory = new GuestMemory([{ gpa: 0, size: BUF, name: "buffers", backing },\n` +
      `  { gpa: BUF, size: POOL, name: "swiotlb", backing, backingOffset: BUF }]);\n` +
      `const api = new SwiotlbDmaApi({ memory, poolGpa: BUF, poolSize: POOL, ` +
      `inner: new DirectDmaApi() });\n` +
      `const bus = new Float64Array(32);\n` +
      `function mapAll(len: number) { for (let c = 0; c < 32; c++) {\n` +
      `  const b = api.mapNumber(c * 8192, len, 2);\n` +
      `  bus[c] = b >= 0 ? b : Number(api.map(c * 8192, len, 2)); } }\n` +
      `function unmapAll(len: number) { for (let c = 0; c < 32; c++) api.unmap(bus[c], len, 2); }\n` +
      body,
  );
  return script;
}

Deno.test("swiotlb's one-slot fast paths fit V8's inlining limits (each function, each chain)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "swiotlb-inline-" });
  try {
    const limit = await inlineLimit(dir);
    const help = await runDeno(["run", "--v8-flags=--help", `${dir}/empty.ts`]);
    const cum = Number(help.match(/--max-inlined-bytecode-size-cumulative=(\d+)/)?.[1] ?? NaN);
    assertEquals(limit > 0 && cum >= limit, true, `limits ${limit} / ${cum}`);
    const script = await writeScript(
      dir,
      `for (let i = 0; i < 3; i++) { mapAll(64); unmapAll(64); }\n`,
    );
    for (const chain of [MAP_CHAIN, UNMAP_CHAIN]) {
      let total = 0;
      for (const fn of chain) {
        const len = await bytecodeLength(script, fn);
        assert(len > 0);
        assert(
          len < limit,
          `SwiotlbDmaApi ${fn} is ${len} bytes of bytecode, V8 inlines up to ${limit}: move the ` +
            "rare work out of line (#toSlotOne, #fromSlotOne, the general paths)",
        );
        total += len;
      }
      assert(
        total <= cum,
        `${chain.join(" -> ")} is ${total} bytes of bytecode, over V8's cumulative inlining ` +
          `budget of ${cum}`,
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("swiotlb's fast paths are not deoptimized when the byte counters pass 1 GiB", async () => {
  const dir = await Deno.makeTempDir({ prefix: "swiotlb-deopt-" });
  try {
    // warm-up with both copy routines (64 B: the small copy; 2048 B: the memmove), then bounce
    // 2 GiB each way: the byte counters pass 2^30 (the Smi range) and 2^31
    const script = await writeScript(
      dir,
      `for (let i = 0; i < 3000; i++) { mapAll(64); unmapAll(64); mapAll(2048); unmapAll(2048); }\n` +
        `while (api.stats.bytesFromSlot < 2 ** 31) { mapAll(2048); unmapAll(2048); }\n` +
        `console.log("bounced", api.stats.bytesToSlot, api.stats.bytesFromSlot);\n`,
    );
    const out = await runDeno(["run", "--allow-read", "--v8-flags=--trace-deopt", script]);
    const done = out.match(/bounced (\d+) (\d+)/);
    if (done === null) throw new Error(`the child did not finish:\n${out.slice(0, 400)}`);
    assertEquals(Number(done[2]) >= 2 ** 31, true);
    // a counter overflowing a Smi deoptimizes with reason "overflow"; a field representation
    // change, every function that checked the object's old map ("wrong map")
    const bad = out.split("\n").filter((l) =>
      /reason: (overflow|wrong map)/.test(l) &&
      /<JSFunction (mapAll|unmapAll|mapNumber|#mapFast|#bounceOne|unmap|#bounceBack)\b/.test(l)
    );
    assertEquals(bad, [], "mid-run deoptimizations of the fast paths or their callers");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
