/**
 * Readable rendering of fuzz inputs for `--replay`: byte arrays (`Uint8Array`, hex strings of
 * 8+ bytes, arrays of byte values under keys such as `bytes`, `raw`, `ring`) become hex dumps,
 * everything else indented JSON-like text with bigints and typed arrays spelled out.
 * @module
 */

/** Classic hex dump: offset, 16 bytes in hex, ASCII. */
export function hexDump(bytes: Uint8Array, indent = ""): string {
  if (bytes.length === 0) return `${indent}(0 bytes)`;
  const lines: string[] = [];
  for (let off = 0; off < bytes.length; off += 16) {
    const row = bytes.subarray(off, off + 16);
    const hex = [...row].map((b, i) => b.toString(16).padStart(2, "0") + (i === 7 ? " " : ""))
      .join(" ");
    const ascii = [...row].map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : "."))
      .join("");
    lines.push(`${indent}${off.toString(16).padStart(8, "0")}  ${hex.padEnd(49)} |${ascii}|`);
  }
  return lines.join("\n");
}

function hexToBytes(s: string): Uint8Array | undefined {
  // "0x" and at most 16 digits is one 64-bit value (an address, a feature mask), not bytes
  if (s.startsWith("0x") && s.length <= 18) return undefined;
  const h = s.startsWith("0x") ? s.slice(2) : s;
  if (h.length < 16 || h.length % 2 !== 0 || !/^[0-9a-fA-F]+$/.test(h)) return undefined;
  const out = new Uint8Array(h.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(h.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** Words of a key that mark byte arrays (`descriptorTable`, `raw_bytes`; not `writable`). */
const BYTE_WORDS = new Set(["bytes", "data", "payload", "raw", "ring", "buf", "buffer", "table"]);
/** Whether `key` has a byte-ish word: camelCase, snake_case and kebab-case words are compared whole. */
export function isByteKey(key: string): boolean {
  return key.replace(/([a-z0-9])([A-Z])/g, "$1 $2").split(/[\s_-]+/)
    .some((w) => BYTE_WORDS.has(w.toLowerCase()));
}
const isByte = (x: unknown) => Number.isInteger(x) && (x as number) >= 0 && (x as number) <= 255;

/** Renders a value readably (see the module doc). */
export function describeValue(v: unknown, indent = ""): string {
  const inner = indent + "  ";
  if (v instanceof Uint8Array) return `Uint8Array(${v.length})\n${hexDump(v, inner)}`;
  if (typeof v === "string") {
    const b = hexToBytes(v);
    if (b) return `hex(${b.length} bytes)\n${hexDump(b, inner)}`;
    // multi-line text (e.g. an inspector hex dump) as an indented block
    if (v.includes("\n")) return `\n${v.split("\n").map((l) => inner + l).join("\n")}`;
    return JSON.stringify(v);
  }
  if (typeof v === "bigint") return `${v}n (0x${v.toString(16)})`;
  if (typeof v === "number") {
    return Number.isInteger(v) && v > 255 ? `${v} (0x${v.toString(16)})` : String(v);
  }
  if (v === null || typeof v !== "object") return String(v);
  if (ArrayBuffer.isView(v) && !(v instanceof DataView)) {
    return `${v.constructor.name}[${Array.from(v as unknown as ArrayLike<number>).join(", ")}]`;
  }
  if (Array.isArray(v)) {
    if (v.length === 0) return "[]";
    if (v.every((x) => x === null || typeof x !== "object")) {
      const flat = `[${v.map((x) => describeValue(x, inner)).join(", ")}]`;
      if (flat.length <= 80 && !flat.includes("\n")) return flat; // short lists of scalars inline
    }
    return `[\n${v.map((x) => inner + describeValue(x, inner)).join(",\n")}\n${indent}]`;
  }
  const proto = Object.getPrototypeOf(v);
  if (proto !== null && proto !== Object.prototype && v.toString !== Object.prototype.toString) {
    return String(v); // class instances with their own rendering, e.g. fc.commands sequences
  }
  const entries = Object.entries(v as Record<string, unknown>);
  if (entries.length === 0) return "{}";
  const field = ([k, x]: [string, unknown]) => {
    // Arrays of byte values under a byte-ish key (`bytes`, `data`, `payload`, `raw`, `ring`...)
    if (isByteKey(k) && Array.isArray(x) && x.length > 0 && x.every(isByte)) {
      return `${inner}${k}: bytes(${x.length})\n${hexDump(Uint8Array.from(x), inner + "  ")}`;
    }
    return `${inner}${k}: ${describeValue(x, inner)}`;
  };
  return `{\n${entries.map(field).join(",\n")}\n${indent}}`;
}

/**
 * Renders what a target's `describe(input)` returned for `--replay`: a string as is, any other
 * value by {@link describeValue} (byte arrays as hex dumps with offsets).
 */
export function describeOutput(v: unknown): string {
  return typeof v === "string" ? v : describeValue(v);
}
