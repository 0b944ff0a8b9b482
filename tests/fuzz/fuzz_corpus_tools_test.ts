import { assert, assertEquals, assertStringIncludes } from "@std/assert";
import { mergeCorpora, minimiseInput } from "../../fuzz/corpus_tools.ts";
import { corpusMain } from "../../fuzz/corpus_cli.ts";
import { loadCorpus, writeCorpusEntry } from "../../fuzz/corpus.ts";
import { runUnit } from "../../fuzz/runner.ts";
import { COPY_FAULTS, makeCopyTarget } from "./fuzz_examples.ts";

const buggy = makeCopyTarget(COPY_FAULTS["flip-byte-13"]);

Deno.test("tmin: a hand-written failing input shrinks to the smallest one with the same signature", () => {
  const big = { offset: 700, hex: "5a".repeat(40) };
  const r = minimiseInput(buggy, big);
  // flip-byte-13 needs 14 bytes; the rest goes, bytes become zero, the offset 0
  assertEquals(r.input, { offset: 0, hex: "00".repeat(14) });
  assert(r.steps > 0);
  let threw = false;
  try {
    minimiseInput(makeCopyTarget(), big);
  } catch (e) {
    threw = true;
    assertStringIncludes((e as Error).message, "does not fail");
  }
  assert(threw);
});

Deno.test("fuzz:corpus merge keeps one entry per signature (the smaller); tmin CLI writes an entry", async () => {
  const dir = await Deno.makeTempDir({ prefix: "virtq-corpus-tools-" });
  try {
    const u1 = runUnit(buggy, { target: buggy.name, slice: 0, seed: 1, runs: 2000 });
    const u2 = runUnit(buggy, { target: buggy.name, slice: 0, seed: 2, runs: 2000 });
    assertEquals(u1.failures.length, 1);
    await writeCorpusEntry(`${dir}/a`, u1.failures[0]);
    await writeCorpusEntry(`${dir}/b`, { ...u2.failures[0], inputText: "x".repeat(9999) });
    const r = await mergeCorpora([`${dir}/a`, `${dir}/b`], `${dir}/m`);
    assertEquals(r, { read: 2, written: 1, duplicates: 1 });
    const merged = await loadCorpus(`${dir}/m`);
    assertEquals(merged.length, 1);
    assertEquals(merged[0].entry.inputText, u1.failures[0].inputText);

    await Deno.writeTextFile(
      `${dir}/hand.json`,
      JSON.stringify({ target: "example-copy", input: { offset: 9, hex: "ff".repeat(30) } }),
    );
    const code = await corpusMain(
      ["tmin", `${dir}/hand.json`, "--out", `${dir}/min.json`],
      () => Promise.resolve([buggy]),
    );
    assertEquals(code, 0);
    const entry = JSON.parse(await Deno.readTextFile(`${dir}/min.json`));
    assertEquals(entry.input, { offset: 0, hex: "00".repeat(14) });
    assertEquals(entry.error.hash, u1.failures[0].signature.hash);
    for (
      const bad of [
        ["tmin", `${dir}/none.json`],
        ["merge", `${dir}/m`],
        ["merge", `${dir}/out`, `${dir}/none`],
        ["bogus"],
      ]
    ) assertEquals(await corpusMain(bad, () => Promise.resolve([buggy])), 2, bad.join(" "));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
