/**
 * Using virtq-lab from another Deno project (docs/LIBRARY.md): a temp project links this checkout
 * (deno.json "links", or a nested workspace member), imports the root face and the folder faces
 * by their `exports` subpaths, and runs a round trip. The library's own "imports" (zod,
 * fast-check...) resolve for the outside importer, without its `--config`.
 */
import { assertEquals, assertStringIncludes } from "@std/assert";
import { relative } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../", import.meta.url)).replace(/\/$/, "");
const EXPORTS: Record<string, string> = JSON.parse(Deno.readTextFileSync(`${ROOT}/deno.json`))
  .exports;

const SCRIPT = `
import { createQueuePair, parseTopology } from "@virtq-lab/virtq-lab";
import { SgList, VIRTIO_F_VERSION_1, featureMask } from "@virtq-lab/virtq-lab/virtio";
import { GuestMemory } from "@virtq-lab/virtq-lab/memory";
import { createDmaLab } from "@virtq-lab/virtq-lab/dma";
import { LoopbackDevice } from "@virtq-lab/virtq-lab/devices";
import { PRESET_NAMES } from "@virtq-lab/virtq-lab/platform";
import * as inspect from "@virtq-lab/virtq-lab/inspect";

const { memory, driver, device } = createQueuePair({ features: featureMask(VIRTIO_F_VERSION_1) });
memory.write(0x10000, new TextEncoder().encode("hi"));
driver.add(SgList.of([0x10000, 2]), SgList.of([0x11000, 16]), "t");
driver.kick();
new LoopbackDevice(device).process();
const token = driver.getUsed();
let zodError = "";
try {
  parseTopology({ bogus: 1 }, "x.json");
} catch (e) {
  zodError = (e as Error).name;
}
console.log(JSON.stringify({
  token,
  usedLen: driver.usedLen,
  memory: memory instanceof GuestMemory,
  dma: typeof createDmaLab,
  presets: PRESET_NAMES.length > 0,
  inspect: Object.keys(inspect).length > 0,
  zodError,
}));
`;

async function runIn(dir: string): Promise<{ code: number; out: string; err: string }> {
  await Deno.writeTextFile(`${dir}/main.ts`, SCRIPT);
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", "main.ts"],
    cwd: dir,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const dec = new TextDecoder();
  return { code: r.code, out: dec.decode(r.stdout), err: dec.decode(r.stderr) };
}

const EXPECTED = {
  token: "t",
  usedLen: 2,
  memory: true,
  dma: "function",
  presets: true,
  inspect: true,
  zodError: "TopologyError",
};

Deno.test("library use: every face is an exports subpath", () => {
  for (const face of ["memory", "dma", "virtio", "devices", "inspect", "platform"]) {
    assertEquals(EXPORTS[`./${face}`], `./src/${face}/mod.ts`);
  }
  assertEquals(EXPORTS["."], "./src/mod.ts");
});

Deno.test('library use: an outside project with deno.json "links" imports the faces; zod resolves', async () => {
  const dir = await Deno.makeTempDir({ prefix: "virtq-outside-links-" });
  try {
    await Deno.writeTextFile(
      `${dir}/deno.json`,
      JSON.stringify({
        links: [relative(dir, ROOT)],
        imports: { "@virtq-lab/virtq-lab": "jsr:@virtq-lab/virtq-lab@^0.1.0" },
      }),
    );
    const r = await runIn(dir);
    assertEquals(r.code, 0, r.err);
    assertEquals(JSON.parse(r.out), EXPECTED);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("library use: a checkout nested in the project (submodule) as a workspace member", async () => {
  const dir = await Deno.makeTempDir({ prefix: "virtq-outside-ws-" });
  try {
    await Deno.mkdir(`${dir}/vendor`);
    // (ln: Deno.symlink needs unscoped permissions, the test task grants --allow-write=/tmp)
    const ln = await new Deno.Command("ln", { args: ["-s", ROOT, `${dir}/vendor/virtq-lab`] })
      .output();
    assertEquals(ln.code, 0);
    await Deno.writeTextFile(
      `${dir}/deno.json`,
      JSON.stringify({ workspace: ["./vendor/virtq-lab"] }),
    );
    const r = await runIn(dir);
    assertEquals(r.code, 0, r.err);
    assertEquals(JSON.parse(r.out), EXPECTED);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("library use: importing src/mod.ts by path alone does not get the library's imports (why links)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "virtq-outside-path-" });
  try {
    await Deno.writeTextFile(`${dir}/deno.json`, "{}");
    await Deno.writeTextFile(
      `${dir}/main.ts`,
      `import { createQueuePair } from "${ROOT}/src/mod.ts";\nconsole.log(typeof createQueuePair);\n`,
    );
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--quiet", "main.ts"],
      cwd: dir,
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).output();
    assertEquals(r.code, 1);
    assertStringIncludes(new TextDecoder().decode(r.stderr), 'Import "zod" not a dependency');
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
