/**
 * Every counterexample under fuzz/corpus/ is a regression test: it is loaded (zod-validated) and
 * replayed against its registered target, and the recorded failure must be FIXED. With an empty
 * corpus the loader and the replay are still exercised on a synthetic entry.
 */
import { assert, assertEquals, assertStringIncludes } from "@std/assert";
import { TARGETS } from "../../fuzz/targets/mod.ts";
import { corpusEntry, loadCorpus, replayEntry, writeCorpusEntry } from "../../fuzz/corpus.ts";
import { runUnit } from "../../fuzz/runner.ts";
import { messageOf } from "../../fuzz/signature.ts";
import { COPY_FAULTS, makeCopyTarget } from "./fuzz_examples.ts";

const CORPUS = new URL("../../fuzz/corpus/", import.meta.url).pathname;
const entries = await loadCorpus(CORPUS);

for (const { file, entry } of entries) {
  const rel = file.slice(file.indexOf("fuzz/corpus/"));
  Deno.test(`corpus replay: ${rel} (${entry.error.signature}) is fixed`, () => {
    const target = TARGETS.find((t) => t.name === entry.target);
    if (target === undefined) {
      throw new Error(
        `${rel}: field "target" names "${entry.target}", which is not registered. ` +
          "Fix: register the target in fuzz/targets/mod.ts or delete the file",
      );
    }
    const r = replayEntry(target, entry, rel);
    assert(
      r.fixed,
      `${rel}: the recorded failure still happens (${r.signature}: ${messageOf(r.error)}). ` +
        `Fix the engine; see it with: deno task fuzz --replay ${rel}`,
    );
  });
}

Deno.test(`corpus replay: loader works (${entries.length} entries in fuzz/corpus/)`, async () => {
  // A synthetic entry for an in-test target: found on a broken engine, fixed on the real one.
  const dir = await Deno.makeTempDir({ prefix: "virtq-corpus-" });
  try {
    const broken = makeCopyTarget(COPY_FAULTS["flip-byte-13"]);
    const [f] = runUnit(broken, { target: "example-copy", slice: 0, seed: 8, runs: 5000 }).failures;
    assertEquals(f.signature.text, "example-copy/round-trip/-");
    await writeCorpusEntry(dir, f);
    const loaded = await loadCorpus(dir);
    assertEquals(loaded.map((l) => l.entry), [{ ...corpusEntry(f), date: loaded[0].entry.date }]);
    assertEquals(replayEntry(broken, loaded[0].entry).fixed, false);
    assertEquals(replayEntry(makeCopyTarget(), loaded[0].entry).fixed, true);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  for (const { file, entry } of entries) {
    assertStringIncludes(file, `/${entry.target}/${entry.error.hash}.json`);
  }
});
