/**
 * Helper of `mutate_test.ts`, run in a subprocess (ts-morph reads the environment, which
 * `deno task test` does not grant): prints the operators' answers on a fixed source as JSON.
 * @module
 */
import { applyMutant, mutantDiff, mutantsOf, sampleMutants } from "../../tools/mutate/operators.ts";
import { NOT_MUTATED } from "../../tools/mutate.ts";
import { NOT_ENGINE } from "../../fuzz/coverage.ts";

/** The source the operators run on. */
export const SRC = `import { x } from "./x.ts";
type T = 1 | 2;
export function f(a: number, b: number): boolean {
  if (a < b && !x) throw new RangeError("bad " + a);
  return a + 1 === b; // mutate-ignore
}
`;

/** Text interpolated into a failure helper's message is not mutated; other templates are. */
export const SRC_TEMPLATE = `class Q {
  #fail(code: string, detail: string): never {
    throw new Error(code + detail);
  }
  g(a: number): string {
    if (a > 1) this.#fail("X", \`idx \${a & 0xffff}\`);
    return \`\${a + 1}\`;
  }
}
`;

if (import.meta.main) {
  const ms = mutantsOf("src/f.ts", SRC);
  const rel = ms.find((m) => m.operator === "relational")!;
  console.log(JSON.stringify({
    ops: ms.map((m) => `${m.line}:${m.operator}:${m.original}->${m.replacement}`),
    applied: applyMutant(SRC, rel),
    diff: mutantDiff(SRC, rel),
    sampleA: sampleMutants(ms, 3, 7).map((m) => m.id),
    sampleB: sampleMutants(ms, 3, 7).map((m) => m.id),
    all: sampleMutants(ms, 99, 1).length,
    // leaving out mutants replaces only those in a sample: the others stay drawn
    sampleC: sampleMutants(ms, 4, 7).map((m) => m.id),
    sampleD: sampleMutants(ms, 4, 7, (m) => m.id !== sampleMutants(ms, 4, 7)[1].id).map((m) =>
      m.id
    ),
    count: ms.length,
    notMutated: [...NOT_MUTATED].sort(),
    notEngine: [...NOT_ENGINE.keys()].sort(),
    template: mutantsOf("src/q.ts", SRC_TEMPLATE).map((m) =>
      `${m.line}:${m.operator}:${m.original}->${m.replacement}`
    ),
  }));
}
