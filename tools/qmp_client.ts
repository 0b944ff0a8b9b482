/**
 * A small QMP (QEMU Machine Protocol) client over a unix socket, for `deno task capture` and the
 * live QEMU test. Every reply is validated with zod; every wait (connect, greeting, each command)
 * has a timeout; 64-bit integers in replies stay exact ({@link parseExactJson}).
 *
 * Protocol (QEMU docs/interop/qmp-spec): the server sends a greeting `{"QMP": {...}}`, the client
 * sends `{"execute": "qmp_capabilities"}`, then each `{"execute": CMD, "arguments": {...},
 * "id": N}` is answered by `{"return": ...}` or `{"error": {"class", "desc"}}` with the same id;
 * asynchronous `{"event": ...}` messages may arrive in between (kept, not answered).
 *
 * @module
 */

import { z } from "zod";
import { parseExactJson } from "../src/inspect/mod.ts";

/** A QMP command QEMU refused (`{"error": {...}}`), or a protocol/timeout failure. */
export class QmpError extends Error {
  /** QEMU's error class (e.g. `GenericError`, `CommandNotFound`), or `Timeout` / `Protocol`. */
  readonly errorClass: string;
  /**
   * @param errorClass QEMU's class or `Timeout` / `Protocol` / `Closed`.
   * @param message what happened.
   */
  constructor(errorClass: string, message: string) {
    super(message);
    this.name = "QmpError";
    this.errorClass = errorClass;
  }
}

const GreetingSchema = z.object({
  QMP: z.object({
    version: z.object({
      qemu: z.object({ major: z.number(), minor: z.number(), micro: z.number() }),
      package: z.string().optional(),
    }).loose(),
    capabilities: z.array(z.string()),
  }),
});

const ReturnSchema = z.object({ return: z.unknown(), id: z.unknown().optional() });
const ErrorSchema = z.object({
  error: z.object({ class: z.string(), desc: z.string() }),
  id: z.unknown().optional(),
});

/** QEMU's version from the greeting. */
export interface QemuVersion {
  /** Major. */
  major: number;
  /** Minor. */
  minor: number;
  /** Micro. */
  micro: number;
  /** Distribution package string, e.g. `Debian 1:7.2+dfsg-7+deb12u18`. */
  package: string;
}

/** Options of {@link QmpClient.connect}. */
export interface QmpConnectOptions {
  /** Milliseconds to wait for the socket and the greeting (default 5000). */
  timeoutMs?: number;
}

/** One connection to a QEMU's QMP unix socket. */
export class QmpClient {
  #conn: Deno.UnixConn;
  #buf = "";
  #queue: unknown[] = [];
  #waiter: (() => void) | null = null;
  #closed = false;
  #readError: Error | null = null;
  #nextId = 1;
  #pump: Promise<void>;
  /** Asynchronous events received so far (`{"event": ...}` messages). */
  readonly events: unknown[] = [];
  /** QEMU's version, from the greeting. */
  version: QemuVersion = { major: 0, minor: 0, micro: 0, package: "" };

  private constructor(conn: Deno.UnixConn) {
    this.#conn = conn;
    this.#pump = this.#readLoop();
  }

  /**
   * Connects, reads the greeting and negotiates capabilities.
   * @param path the QMP unix socket (QEMU's `-qmp unix:PATH,server=on,wait=off`).
   * @throws QmpError `Timeout` when the socket or greeting does not come in time, `Protocol`
   * on a malformed greeting; Deno errors (NotFound, ConnectionRefused) when there is no server.
   */
  static async connect(path: string, opts: QmpConnectOptions = {}): Promise<QmpClient> {
    const timeoutMs = opts.timeoutMs ?? 5000;
    const conn = await withTimeout(
      Deno.connect({ transport: "unix", path }),
      timeoutMs,
      `no QMP answer on ${path} within ${timeoutMs} ms`,
      (c) => c.close(),
    );
    const client = new QmpClient(conn);
    try {
      const greeting = GreetingSchema.safeParse(await client.#next(timeoutMs, "the QMP greeting"));
      if (!greeting.success) {
        throw new QmpError("Protocol", `${path} did not greet as QMP: ${greeting.error.message}`);
      }
      const v = greeting.data.QMP.version;
      client.version = {
        major: v.qemu.major,
        minor: v.qemu.minor,
        micro: v.qemu.micro,
        package: (v.package ?? "").trim(),
      };
      await client.execute("qmp_capabilities", undefined, timeoutMs);
      return client;
    } catch (e) {
      await client.close();
      throw e;
    }
  }

  async #readLoop(): Promise<void> {
    const dec = new TextDecoder();
    const chunk = new Uint8Array(65536);
    try {
      while (true) {
        const n = await this.#conn.read(chunk);
        if (n === null) break;
        this.#buf += dec.decode(chunk.subarray(0, n), { stream: true });
        let nl: number;
        while ((nl = this.#buf.indexOf("\n")) >= 0) {
          const line = this.#buf.slice(0, nl).trim();
          this.#buf = this.#buf.slice(nl + 1);
          if (line === "") continue;
          try {
            this.#queue.push(parseExactJson(line));
          } catch (e) {
            this.#readError = new QmpError(
              "Protocol",
              `not JSON from QMP: ${(e as Error).message}`,
            );
          }
        }
        this.#wake();
      }
    } catch (e) {
      if (!this.#closed) this.#readError = e as Error;
    }
    this.#closed = true;
    this.#wake();
  }

  #wake(): void {
    const w = this.#waiter;
    this.#waiter = null;
    w?.();
  }

  /** Next non-event message, waiting at most `timeoutMs`. */
  async #next(timeoutMs: number, what: string): Promise<unknown> {
    const deadline = Date.now() + timeoutMs;
    while (true) {
      while (this.#queue.length > 0) {
        const m = this.#queue.shift();
        if (m !== null && typeof m === "object" && "event" in m) {
          this.events.push(m);
          continue;
        }
        return m;
      }
      if (this.#readError) throw this.#readError;
      if (this.#closed) {
        throw new QmpError("Closed", `QMP connection closed while waiting for ${what}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new QmpError("Timeout", `no answer to ${what} within ${timeoutMs} ms`);
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#waiter = resolve;
        timer = setTimeout(resolve, left);
      });
      clearTimeout(timer);
    }
  }

  /**
   * Runs one QMP command and returns its `return` value.
   * @param command e.g. `"x-query-virtio-queue-status"`.
   * @param args its arguments.
   * @param timeoutMs how long to wait for the answer (default 10000).
   * @throws QmpError with QEMU's class when QEMU answers an error, `Timeout` when it does not
   * answer in time (the connection is then unusable: close it).
   */
  async execute(
    command: string,
    args?: Record<string, unknown>,
    timeoutMs = 10000,
  ): Promise<unknown> {
    if (this.#closed) throw new QmpError("Closed", `QMP connection closed before ${command}`);
    const id = this.#nextId++;
    const msg = args === undefined
      ? { execute: command, id }
      : { execute: command, arguments: args, id };
    const bytes = new TextEncoder().encode(stringifyExact(msg, 0) + "\n");
    let off = 0;
    while (off < bytes.length) off += await this.#conn.write(bytes.subarray(off));
    const raw = await this.#next(timeoutMs, command);
    const ok = ReturnSchema.safeParse(raw);
    const err = ok.success ? null : ErrorSchema.safeParse(raw);
    const replyId = ok.success ? ok.data.id : err?.success ? err.data.id : undefined;
    if (replyId !== undefined && replyId !== id) {
      throw new QmpError("Protocol", `QMP reply id ${replyId} to ${command} (expected ${id})`);
    }
    if (ok.success) return ok.data.return;
    if (err?.success) {
      throw new QmpError(err.data.error.class, `${command}: ${err.data.error.desc}`);
    }
    throw new QmpError("Protocol", `malformed QMP reply to ${command}`);
  }

  /**
   * Runs one QMP command and validates its `return` value with `schema`.
   * @throws QmpError as {@link execute}, or `Protocol` when the answer does not fit `schema`.
   */
  async query<T>(
    schema: z.ZodType<T>,
    command: string,
    args?: Record<string, unknown>,
    timeoutMs?: number,
  ): Promise<T> {
    const raw = await this.execute(command, args, timeoutMs);
    const r = schema.safeParse(raw);
    if (!r.success) {
      const issue = r.error.issues[0];
      throw new QmpError(
        "Protocol",
        `${command}: unexpected answer at ${issue.path.map(String).join(".") || "<root>"}: ` +
          issue.message,
      );
    }
    return r.data;
  }

  /**
   * Runs a human-monitor command through QMP `human-monitor-command` and returns its text.
   * @throws QmpError as {@link execute}.
   */
  async hmp(commandLine: string, timeoutMs?: number): Promise<string> {
    return await this.query(
      z.string(),
      "human-monitor-command",
      { "command-line": commandLine },
      timeoutMs,
    );
  }

  /** Closes the connection (idempotent) and waits for the reader to stop. */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      try {
        this.#conn.close();
      } catch { /* already closed */ }
    }
    await this.#pump;
  }
}

/** Races `p` against a timer; on timeout, `onLate` disposes of a value that arrives later. */
async function withTimeout<T>(
  p: Promise<T>,
  ms: number,
  message: string,
  onLate: (v: T) => void,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let timedOut = false;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      timedOut = true;
      reject(new QmpError("Timeout", message));
    }, ms);
  });
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
    if (timedOut) p.then(onLate, () => {});
  }
}

/**
 * `JSON.stringify` keeping bigints exact (written as raw JSON integers, as QEMU writes 64-bit
 * values).
 * @param value any JSON value, bigints allowed.
 * @param indent spaces of indentation (0: one line).
 */
export function stringifyExact(value: unknown, indent = 1): string {
  const raw = (JSON as unknown as { rawJSON(s: string): unknown }).rawJSON;
  return JSON.stringify(
    value,
    (_k, v) => typeof v === "bigint" ? raw(v.toString()) : v,
    indent || undefined,
  );
}
