import { assertEquals } from "@std/assert";

// The README's library quick start must run as printed: extract its first ```ts block, point its
// import at src/mod.ts, run it, and compare what it prints with the result the README states.
Deno.test("README quick start runs and prints what the README says", async () => {
  const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));
  const match = readme.match(/```ts\n([\s\S]*?)```/);
  if (match === null) throw new Error("README.md has no ```ts block (the library quick start)");
  const code = match[1].replace(
    '"./src/mod.ts"',
    JSON.stringify(import.meta.resolve("../src/mod.ts")),
  );
  const expected = code.match(/\/\/ -> (.*)\n/)?.[1];
  if (expected === undefined) {
    throw new Error("the quick start must state its output as `// -> ...`");
  }
  const file = await Deno.makeTempFile({ dir: "/tmp", suffix: ".ts" });
  const printed: string[] = [];
  const log = console.log;
  console.log = (...args: unknown[]) => printed.push(args.map(String).join(" "));
  try {
    await Deno.writeTextFile(file, code);
    await import("file://" + file);
  } finally {
    console.log = log;
    await Deno.remove(file);
  }
  assertEquals(printed, [expected]);
});
