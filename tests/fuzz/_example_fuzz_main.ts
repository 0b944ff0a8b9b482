/**
 * The fuzz CLI over the example targets (planted faults on), run as a process by the matrix test.
 * @module
 */
import { fuzzMain } from "../../fuzz/main.ts";
import { COPY_FAULTS, INDEX_FAULTS, makeCopyTarget, makeIndexTarget } from "./fuzz_examples.ts";

const enc = new TextEncoder();
Deno.exit(
  await fuzzMain(Deno.args, {
    targets: [
      makeCopyTarget(COPY_FAULTS["flip-byte-13"]),
      makeIndexTarget(INDEX_FAULTS["no-wrap"]),
      { ...makeCopyTarget(COPY_FAULTS["missed-fault"]), name: "example-copy-2" },
    ],
    registryUrl: new URL("./fuzz_examples.ts", import.meta.url).href,
    out: (s) => void Deno.stdout.writeSync(enc.encode(s)),
    err: (s) => void Deno.stderr.writeSync(enc.encode(s)),
    isTty: false,
    cores: 1,
  }),
);
