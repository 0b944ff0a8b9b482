/**
 * Guards the packed walk's translated path (`PackedChainWalk.addRecorded`) against V8's inlining
 * limit, from above.
 *
 * The walk calls `addRecorded` for a direct descriptor off the identity fast path. Over
 * `--max-inlined-bytecode-size` it is never inlined into the walk (so it does not spend the
 * budget of `pop`, into which the walk is inlined) and is optimised on its own, with a whole
 * cumulative budget for the DMA view's `translate` (under an IOMMU: translate, translatePage and
 * the IOTLB probe), as the split walk's `addRecorded` is. Shrunk under the limit (for instance by
 * moving its translate loop back into a helper), TurboFan inlines it into `pop` and calls the
 * DMA view's translate from a second function again: the packed IOMMU round trip reads slower
 * with no test failing. This test compiles it in a child Deno (the same binary) with
 * `--print-bytecode` and checks its length against the limit that V8 itself reports.
 */
import { assert } from "@std/assert";
import { bytecodeLength, inlineLimit } from "../_v8_bytecode.ts";

Deno.test("packed walk's translated addRecorded stays over V8's inlining limit", async () => {
  const dir = await Deno.makeTempDir({ prefix: "packed-walk-inline-" });
  try {
    const limit = await inlineLimit(dir);
    const script = `${dir}/packed_walk.ts`;
    const url = new URL("../../../src/virtio/packed/walk.ts", import.meta.url).href;
    await Deno.writeTextFile(
      script,
      `import { PackedChainWalk } from ${JSON.stringify(url)};\n` +
        // Compiled by one call that throws early (no chain).
        `try { (PackedChainWalk.prototype as any).addRecorded.call({}, null, 0); } catch { /* compiled */ }\n`,
    );
    const len = await bytecodeLength(script, "addRecorded");
    assert(
      len > limit,
      `PackedChainWalk.addRecorded is ${len} bytes of bytecode, not over V8's inlining limit ` +
        `of ${limit}: keep its translate loop written out in it (see its JSDoc)`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
