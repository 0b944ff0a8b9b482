/**
 * Mutation operators over the TypeScript AST (ts-morph), the ones StrykerJS applies to the
 * engine's kind of code: equality and relational operators (`<` -> `<=`, `===` -> `!==`),
 * arithmetic (`+` <-> `-`, `*` <-> `/`), bitwise (`&` <-> `|`, `<<` <-> `>>`, `>>>` -> `>>`),
 * logical (`&&` <-> `||`, `??` -> `||`), unary negation removed (`!x` -> `x`), boolean literals
 * flipped, integer literals off by one (`n` -> `n + 1`), `if` conditions forced (`if (c)` ->
 * `if (false)` / `if (true)`) and `throw` statements removed. Each mutant is one text
 * replacement, so it is shown as a one-line diff and applied without re-printing the file.
 *
 * Not mutated: type positions, import/export declarations, string literals (messages), JSDoc,
 * and lines carrying `// mutate-ignore` (for code whose mutants are equivalent by design).
 *
 * @module
 */

import { type Node, Project, SyntaxKind } from "ts-morph";

/** One mutant: a replacement of `[start, end)` of `file`'s text. */
export interface Mutant {
  /** Stable id: `file:line:col:operator`. */
  id: string;
  /** Repo-relative path (posix). */
  file: string;
  /** 1-based line of `start`. */
  line: number;
  /** 1-based column of `start`. */
  column: number;
  /** Operator name, e.g. `relational`, `if-false`. */
  operator: string;
  /** Start offset (UTF-16) in the original text. */
  start: number;
  /** End offset (exclusive). */
  end: number;
  /** The original text of `[start, end)`. */
  original: string;
  /** Its replacement. */
  replacement: string;
}

const BINARY_SWAPS: Readonly<Record<string, readonly [string, string][]>> = {
  relational: [["<", "<="], ["<=", "<"], [">", ">="], [">=", ">"]],
  equality: [["===", "!=="], ["!==", "==="], ["==", "!="], ["!=", "=="]],
  arithmetic: [["+", "-"], ["-", "+"], ["*", "/"], ["/", "*"], ["%", "*"]],
  bitwise: [["&", "|"], ["|", "&"], ["^", "&"], ["<<", ">>"], [">>", "<<"], [">>>", ">>"]],
  logical: [["&&", "||"], ["||", "&&"], ["??", "||"]],
};
const SWAP = new Map<string, [string, string]>();
for (const [op, pairs] of Object.entries(BINARY_SWAPS)) {
  for (const [from, to] of pairs) SWAP.set(from, [op, to]);
}

const STRINGISH = new Set([
  SyntaxKind.StringLiteral,
  SyntaxKind.TemplateExpression,
  SyntaxKind.NoSubstitutionTemplateLiteral,
]);

// Type positions, imports, the arguments of a catalogued error's constructor, and text
// interpolated into the message of a failure helper (`this.#fail(code, `...${x}...`)`): messages
// and the addresses they print, so mutating them changes diagnostics only.
function inTypeOrIgnored(node: Node): boolean {
  let inTemplate = false;
  for (let n: Node | undefined = node.getParent(); n !== undefined; n = n.getParent()) {
    const k = n.getKind();
    if (k === SyntaxKind.NewExpression) {
      const callee = n.asKindOrThrow(SyntaxKind.NewExpression).getExpression().getText();
      if (/(Error|Fault)$/.test(callee)) return true;
    }
    if (k === SyntaxKind.TemplateExpression) inTemplate = true;
    if (inTemplate && k === SyntaxKind.CallExpression) {
      const callee = n.asKindOrThrow(SyntaxKind.CallExpression).getExpression().getText();
      if (/(^|\.)#?fail$/.test(callee)) return true;
    }
    if (
      k === SyntaxKind.ImportDeclaration || k === SyntaxKind.ExportDeclaration ||
      k === SyntaxKind.TypeAliasDeclaration || k === SyntaxKind.InterfaceDeclaration ||
      k === SyntaxKind.TypeReference || k === SyntaxKind.LiteralType ||
      k === SyntaxKind.EnumDeclaration
    ) return true;
  }
  return false;
}

/**
 * Every mutant of one source text.
 * @param file repo-relative path recorded in each mutant.
 * @param text the file's TypeScript source.
 * @returns mutants in source order.
 */
export function mutantsOf(file: string, text: string): Mutant[] {
  const project = new Project({ useInMemoryFileSystem: true });
  const sf = project.createSourceFile("/m.ts", text);
  const ignored = new Set<number>();
  text.split("\n").forEach((l, i) => {
    if (l.includes("mutate-ignore")) ignored.add(i + 1);
  });
  const out: Mutant[] = [];
  const add = (node: Node, operator: string, start: number, end: number, replacement: string) => {
    const { line, column } = sf.getLineAndColumnAtPos(start);
    if (ignored.has(line)) return;
    out.push({
      id: `${file}:${line}:${column}:${operator}`,
      file,
      line,
      column,
      operator,
      start,
      end,
      original: text.slice(start, end),
      replacement,
    });
    void node;
  };
  sf.forEachDescendant((node) => {
    const kind = node.getKind();
    if (kind === SyntaxKind.BinaryExpression) {
      const tok = node.asKindOrThrow(SyntaxKind.BinaryExpression).getOperatorToken();
      const b = node.asKindOrThrow(SyntaxKind.BinaryExpression);
      const s = SWAP.get(tok.getText());
      const stringy = STRINGISH.has(b.getLeft().getKind()) || STRINGISH.has(b.getRight().getKind());
      if (s !== undefined && !stringy && !inTypeOrIgnored(node)) {
        add(node, s[0], tok.getStart(), tok.getEnd(), s[1]);
      }
    } else if (kind === SyntaxKind.PrefixUnaryExpression) {
      const p = node.asKindOrThrow(SyntaxKind.PrefixUnaryExpression);
      if (p.getOperatorToken() === SyntaxKind.ExclamationToken && !inTypeOrIgnored(node)) {
        const operand = p.getOperand();
        add(node, "negation", node.getStart(), node.getEnd(), operand.getText());
      }
    } else if (kind === SyntaxKind.TrueKeyword || kind === SyntaxKind.FalseKeyword) {
      if (!inTypeOrIgnored(node)) {
        add(
          node,
          "boolean",
          node.getStart(),
          node.getEnd(),
          kind === SyntaxKind.TrueKeyword ? "false" : "true",
        );
      }
    } else if (kind === SyntaxKind.NumericLiteral) {
      const t = node.getText();
      const v = Number(t);
      const parent = node.getParent();
      const inProp = parent?.getKind() === SyntaxKind.PropertyAssignment &&
        parent.asKindOrThrow(SyntaxKind.PropertyAssignment).getNameNode() === node;
      if (Number.isSafeInteger(v) && v < 2 ** 31 && !inProp && !inTypeOrIgnored(node)) {
        add(node, "literal", node.getStart(), node.getEnd(), String(v + 1));
      }
    } else if (kind === SyntaxKind.IfStatement) {
      const c = node.asKindOrThrow(SyntaxKind.IfStatement).getExpression();
      add(node, "if-false", c.getStart(), c.getEnd(), "false");
      add(node, "if-true", c.getStart(), c.getEnd(), "true");
    } else if (kind === SyntaxKind.ThrowStatement) {
      add(node, "no-throw", node.getStart(), node.getEnd(), "{}");
    }
  });
  return out;
}

/** The text of `text` with mutant `m` applied. */
export function applyMutant(text: string, m: Mutant): string {
  return text.slice(0, m.start) + m.replacement + text.slice(m.end);
}

/**
 * A unified diff (one hunk, the mutated line with one line of context each side).
 * @param text the original file text.
 */
export function mutantDiff(text: string, m: Mutant): string {
  const lines = text.split("\n");
  const mutated = applyMutant(text, m).split("\n");
  const first = m.line - 1;
  const lastOrig = first + m.original.split("\n").length - 1;
  const lastMut = first + m.replacement.split("\n").length - 1;
  const lo = Math.max(0, first - 1);
  const before = lines.slice(lo, first).map((l) => ` ${l}`);
  const minus = lines.slice(first, lastOrig + 1).map((l) => `-${l}`);
  const plus = mutated.slice(first, lastMut + 1).map((l) => `+${l}`);
  const after = lines.slice(lastOrig + 1, lastOrig + 2).map((l) => ` ${l}`);
  const oldCount = before.length + minus.length + after.length;
  const newCount = before.length + plus.length + after.length;
  return [
    `--- a/${m.file}`,
    `+++ b/${m.file}`,
    `@@ -${lo + 1},${oldCount} +${lo + 1},${newCount} @@ ${m.operator}`,
    ...before,
    ...minus,
    ...plus,
    ...after,
  ].join("\n");
}

/** Deterministic PRNG (mulberry32) for seeded sampling. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `n` mutants drawn without replacement by a seeded shuffle (all of them when `n >= length`),
 * returned in (file, offset) order. `drawn` leaves mutants out after the shuffle of the whole
 * list, so leaving some out replaces only those in a seed's sample (the next in its order). */
export function sampleMutants(
  all: readonly Mutant[],
  n: number,
  seed: number,
  drawn: (m: Mutant) => boolean = () => true,
): Mutant[] {
  const idx = all.map((_, i) => i);
  const rnd = mulberry32(seed);
  for (let i = idx.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [idx[i], idx[j]] = [idx[j], idx[i]];
  }
  const kept = idx.filter((i) => drawn(all[i]));
  return kept.slice(0, Math.min(n, kept.length)).sort((a, b) => a - b).map((i) => all[i]);
}
