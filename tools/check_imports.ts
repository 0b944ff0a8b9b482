/**
 * Import-graph check: no import cycle anywhere, imports point one way between layers, and code
 * in `fuzz/`, `bench/` and `tools/` reaches `src/` through folder faces only.
 *
 * The graph comes from `deno info --json` (Deno's own resolver, so import maps, `.ts`
 * extensions and type-only imports resolve exactly as `deno check` sees them) over one
 * temporary root module that imports every `.ts` file of the project.
 *
 * Layers (imports point down; a folder may import its own files and any lower layer):
 *
 *     memory <- dma <- virtio <- {devices, inspect, vhost_user, transport} <- platform
 *            <- src/mod.ts <- {fuzz, bench, tools}
 *
 * Folders on one level are peers and do not import each other. `tests/` may import anything;
 * nothing imports `tests/` (except tests). A face is `src/<folder>/mod.ts`, or an internal face
 * `src/<folder>/_internal.ts` for symbols fuzz/bench/tools need but the public surface hides.
 *
 * Usage: `deno task check:imports [--json FILE] [--root DIR]`. Exit 0 when clean, 1 when a
 * problem is found (one line each), 2 on bad usage.
 *
 * @module
 */

import { parseArgs } from "@std/cli/parse-args";

/** Module graph: repo-relative path (posix) -> repo-relative paths it imports. */
export type ImportGraph = Map<string, Set<string>>;

/** Layer rank of each folder; a module may import only modules of its own folder or lower rank. */
export const LAYERS: Readonly<Record<string, number>> = {
  "src/memory": 0,
  "src/dma": 1,
  "src/virtio": 2,
  "src/devices": 3,
  "src/inspect": 3,
  "src/vhost_user": 3,
  "src/transport": 3,
  "src/platform": 4,
  "src/mod.ts": 5,
  "fuzz": 6,
  "bench": 6,
  "tools": 6,
  "tests": 7,
};

/** The layer folder of a repo-relative path (longest matching key of {@link LAYERS}), or null. */
export function layerOf(path: string): string | null {
  let best: string | null = null;
  for (const key of Object.keys(LAYERS)) {
    if (path === key || path.startsWith(key + "/")) {
      if (best === null || key.length > best.length) best = key;
    }
  }
  return best;
}

/**
 * Every import cycle, as the strongly connected components of more than one module (or a
 * module importing itself), each listed from its smallest path. Tarjan's algorithm, iterative.
 */
export function findCycles(graph: ImportGraph): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const sccs: string[][] = [];
  let next = 0;
  for (const start of [...graph.keys()].sort()) {
    if (index.has(start)) continue;
    const work: { node: string; edges: string[]; i: number }[] = [];
    const enter = (node: string) => {
      index.set(node, next);
      low.set(node, next);
      next++;
      stack.push(node);
      onStack.add(node);
      work.push({ node, edges: [...(graph.get(node) ?? [])].sort(), i: 0 });
    };
    enter(start);
    while (work.length > 0) {
      const top = work[work.length - 1];
      if (top.i < top.edges.length) {
        const to = top.edges[top.i++];
        if (!index.has(to)) enter(to);
        else if (onStack.has(to)) low.set(top.node, Math.min(low.get(top.node)!, index.get(to)!));
        continue;
      }
      work.pop();
      if (work.length > 0) {
        const parent = work[work.length - 1].node;
        low.set(parent, Math.min(low.get(parent)!, low.get(top.node)!));
      }
      if (low.get(top.node) === index.get(top.node)) {
        const scc: string[] = [];
        let n: string;
        do {
          n = stack.pop()!;
          onStack.delete(n);
          scc.push(n);
        } while (n !== top.node);
        const selfLoop = graph.get(top.node)?.has(top.node) ?? false;
        if (scc.length > 1 || selfLoop) sccs.push(scc.sort());
      }
    }
  }
  return sccs.sort((a, b) => a[0].localeCompare(b[0]));
}

/** True for a folder face (`src/<folder>/mod.ts`, `src/<folder>/_internal.ts`, `src/mod.ts`). */
export function isFace(path: string): boolean {
  return path === "src/mod.ts" || /^src\/[a-z_]+\/(mod|_internal)\.ts$/.test(path);
}

/** One line per import that points the wrong way between layers or skips a folder face. */
export function layerViolations(graph: ImportGraph): string[] {
  const problems: string[] = [];
  for (const [from, tos] of [...graph].sort(([a], [b]) => a.localeCompare(b))) {
    const fromLayer = layerOf(from);
    if (fromLayer === null) continue;
    for (const to of [...tos].sort()) {
      const toLayer = layerOf(to);
      if (toLayer === null || toLayer === fromLayer) continue;
      if (fromLayer === "tests") continue;
      if (LAYERS[toLayer] >= LAYERS[fromLayer]) {
        problems.push(
          `${from} imports ${to}: layer ${toLayer} may not be imported by ${fromLayer} ` +
            `(imports point down: memory <- dma <- virtio <- devices/inspect/vhost_user/` +
            `transport <- platform <- fuzz/bench/tools). Fix: move the shared code down a layer`,
        );
      } else if (LAYERS[fromLayer] >= LAYERS["fuzz"] && to.startsWith("src/") && !isFace(to)) {
        problems.push(
          `${from} imports ${to}, a deep file. Fix: import its folder face ` +
            `(${to.split("/").slice(0, 2).join("/")}/mod.ts, or _internal.ts for internals)`,
        );
      }
    }
  }
  return problems;
}

/** Every `.ts` file under the given folders of `root`, repo-relative, sorted. */
export function projectFiles(root: string, folders: readonly string[]): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    let entries: Deno.DirEntry[];
    try {
      entries = [...Deno.readDirSync(`${root}/${rel}`)];
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return;
      throw e;
    }
    for (const e of entries) {
      const p = `${rel}/${e.name}`;
      if (e.isDirectory) walk(p);
      else if (e.isFile && e.name.endsWith(".ts") && !e.name.endsWith(".d.ts")) out.push(p);
    }
  };
  for (const f of folders) walk(f);
  return out.sort();
}

interface DenoInfoModule {
  specifier: string;
  dependencies?: { code?: { specifier?: string }; type?: { specifier?: string } }[];
}

/**
 * The import graph of `files` (repo-relative) under `root`, from one `deno info --json` run over
 * a temporary root module that imports them all. Only edges between files under `root` are kept.
 */
export async function loadGraph(root: string, files: readonly string[]): Promise<ImportGraph> {
  const rootUrl = new URL(`file://${Deno.realPathSync(root)}/`);
  const tmp = Deno.makeTempFileSync({ dir: "/tmp", prefix: "check_imports_", suffix: ".ts" });
  try {
    Deno.writeTextFileSync(
      tmp,
      files.map((f) => `import ${JSON.stringify(new URL(f, rootUrl).href)};\n`).join(""),
    );
    const args = ["info", "--json", "--allow-import"];
    try {
      Deno.statSync(`${root}/deno.json`);
      args.push("--config", `${root}/deno.json`);
    } catch {
      args.push("--no-config");
    }
    const out = await new Deno.Command(Deno.execPath(), {
      args: [...args, tmp],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) {
      throw new Error(`deno info failed: ${new TextDecoder().decode(out.stderr).trim()}`);
    }
    const info = JSON.parse(new TextDecoder().decode(out.stdout)) as { modules: DenoInfoModule[] };
    const rel = (spec: string | undefined): string | null =>
      spec !== undefined && spec.startsWith(rootUrl.href)
        ? decodeURIComponent(spec.slice(rootUrl.href.length))
        : null;
    const graph: ImportGraph = new Map();
    for (const m of info.modules) {
      const from = rel(m.specifier);
      if (from === null) continue;
      const edges = graph.get(from) ?? new Set<string>();
      graph.set(from, edges);
      for (const d of m.dependencies ?? []) {
        for (const spec of [d.code?.specifier, d.type?.specifier]) {
          const to = rel(spec);
          if (to !== null) edges.add(to);
        }
      }
    }
    return graph;
  } finally {
    Deno.removeSync(tmp);
  }
}

/** All problems of the project at `root`: cycles first, then layer and face violations. */
export async function checkImports(root: string): Promise<string[]> {
  const files = projectFiles(root, ["src", "fuzz", "bench", "tools", "tests"]);
  const graph = await loadGraph(root, files);
  const problems = findCycles(graph).map((c) =>
    `import cycle among ${c.join(", ")}. Fix: move what they share into a file none of them imports`
  );
  return [...problems, ...layerViolations(graph)];
}

const HELP = `Usage: deno task check:imports [--root DIR] [--json FILE]

Fails (exit 1) on any import cycle among the project's .ts files, on an import that points up
the layers (memory <- dma <- virtio <- devices/inspect/vhost_user/transport <- platform <-
fuzz/bench/tools; tests may import anything) and on fuzz/bench/tools importing a deep src file
instead of a folder face. Uses \`deno info --json\`.

  --root DIR    project to check (default: the current directory)
  --json FILE   also write {"problems": [...]} to FILE
  --help        this text`;

if (import.meta.main) {
  const unknown = Deno.args.find((a) =>
    a.startsWith("-") && !/^--(root|json|help)(=|$)/.test(a) && a !== "-h"
  );
  if (unknown !== undefined) {
    console.error(
      `check:imports: ${unknown}: unknown flag. Fix: use --root DIR, --json FILE or --help`,
    );
    Deno.exit(2);
  }
  const args = parseArgs(Deno.args, {
    string: ["root", "json"],
    boolean: ["help"],
    alias: { h: "help" },
  });
  if (args.help) {
    console.log(HELP);
    Deno.exit(0);
  }
  if (args._.length > 0) {
    console.error(`check:imports: unexpected argument "${args._[0]}". Fix: see --help`);
    Deno.exit(2);
  }
  const root = args.root ?? ".";
  const problems = await checkImports(root);
  if (args.json !== undefined) {
    Deno.writeTextFileSync(args.json, JSON.stringify({ problems }, null, 2) + "\n");
  }
  for (const p of problems) console.log(p);
  console.log(
    problems.length === 0
      ? "check:imports: no import cycle, no layer or face violation"
      : `check:imports: ${problems.length} problem(s)`,
  );
  Deno.exit(problems.length === 0 ? 0 : 1);
}
