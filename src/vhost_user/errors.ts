/**
 * The vhost-user catalogue: every way a front-end operation can fail, with one stable code each,
 * and the typed outcome a caller observes instead of a hang or an uncaught error.
 *
 * A back-end that disconnects, exits or stops answering is an *observed outcome* of the device
 * under test, not a bug of ours: {@link outcomeOf} turns the errors below into
 * {@link VhostUserOutcome} values so fuzz oracles can give verdicts.
 *
 * @module
 */

/** One catalogue entry. */
export interface VhostUserErrorInfo {
  /** `backend`: what the device did; `frontend`: refused by us; `env`: the machine. */
  readonly side: "backend" | "frontend" | "env";
  /** The vhost-user spec rule (QEMU `docs/interop/vhost-user.rst`) or the reason. */
  readonly spec: string;
  /** One line: what happened. */
  readonly summary: string;
}

/** Every vhost-user error code. */
export const VHOST_USER_ERRORS = {
  CONNECT_FAILED: {
    side: "env",
    spec: "the back-end listens on a unix stream socket (vhost-user.rst: Communication)",
    summary: "nothing accepts connections on the socket path (absent, refused, or not a socket)",
  },
  TIMEOUT: {
    side: "backend",
    spec: "every reply awaited has a deadline (house rule: every wait on another process)",
    summary: "the back-end did not answer (reply, REPLY_ACK, or used buffer) within the timeout",
  },
  DISCONNECTED: {
    side: "backend",
    spec: "vhost-user.rst: the back-end may close the connection; the front-end must cope",
    summary: "the back-end closed or reset the connection",
  },
  BAD_REPLY: {
    side: "backend",
    spec: "vhost-user.rst Message Specification: reply header (request, flags: version 1 | reply)",
    summary: "a reply with the wrong request code, flags, size or contents",
  },
  NACK: {
    side: "backend",
    spec: "vhost-user.rst REPLY_ACK: a non-zero u64 payload means the request failed",
    summary: "the back-end acknowledged a request with a failure code",
  },
  NOT_NEGOTIATED: {
    side: "frontend",
    spec: "vhost-user.rst: a message needing a protocol feature is only sent once it is negotiated",
    summary: "the operation needs a feature or protocol feature that was not negotiated",
  },
  BAD_ARGUMENT: {
    side: "frontend",
    spec:
      "message payload limits (vhost-user.rst: at most 8 memory regions per SET_MEM_TABLE, ...)",
    summary: "a front-end call with an argument that cannot be encoded",
  },
  SYSCALL_FAILED: {
    side: "env",
    spec: "libc call failed (errno in the message)",
    summary: "a system call failed",
  },
  FFI_UNAVAILABLE: {
    side: "env",
    spec: "Deno needs --allow-ffi to reach libc",
    summary: "libc could not be opened through FFI",
  },
  BACKEND_START_FAILED: {
    side: "env",
    spec: "launchers start a fresh back-end with its own socket and log file",
    summary: "a back-end binary is missing or did not create its socket in time",
  },
  BACKEND_EXITED: {
    side: "backend",
    spec: "the back-end process died (observed from its exit status)",
    summary: "the back-end process exited",
  },
} as const satisfies Record<string, VhostUserErrorInfo>;

/** A vhost-user error code. */
export type VhostUserErrorCode = keyof typeof VHOST_USER_ERRORS;

/** A failed vhost-user operation; `code` is from {@link VHOST_USER_ERRORS}. */
export class VhostUserError extends Error {
  /** The stable code. */
  readonly code: VhostUserErrorCode;
  /** The request (name) the failure concerns, when there is one. */
  readonly request: string | undefined;
  /**
   * Creates the error; the message starts with the code.
   * @param code catalogue code.
   * @param message what happened, with values.
   * @param request name of the message concerned, e.g. `"GET_FEATURES"`.
   */
  constructor(code: VhostUserErrorCode, message: string, request?: string) {
    super(`${code}: ${message}`);
    this.name = "VhostUserError";
    this.code = code;
    this.request = request;
  }
}

/** True when `e` is a {@link VhostUserError} (with `code`, when given). */
export function isVhostUserError(e: unknown, code?: VhostUserErrorCode): e is VhostUserError {
  return e instanceof VhostUserError && (code === undefined || e.code === code);
}

/**
 * What a front-end operation against a back-end came to:
 * - `ok`: done, with its value;
 * - `timeout`: the back-end stayed silent past the deadline;
 * - `disconnected`: it closed or reset the connection;
 * - `nack`: it refused the request (REPLY_ACK with a non-zero code);
 * - `bad-reply`: it answered something malformed;
 * - `exited`: its process is gone (set by callers that watch a launched back-end).
 */
export type VhostUserOutcome<T> =
  | { readonly kind: "ok"; readonly value: T }
  | { readonly kind: "timeout"; readonly request?: string; readonly message: string }
  | { readonly kind: "disconnected"; readonly request?: string; readonly message: string }
  | { readonly kind: "nack"; readonly request?: string; readonly message: string }
  | { readonly kind: "bad-reply"; readonly request?: string; readonly message: string }
  | { readonly kind: "exited"; readonly message: string };

/**
 * Runs `fn` and returns its {@link VhostUserOutcome}: back-end behaviour (timeout, disconnect,
 * nack, bad reply, exit) becomes a value; any other error (our bug, bad arguments, the
 * environment) is rethrown.
 */
export function outcomeOf<T>(fn: () => T): VhostUserOutcome<T> {
  try {
    return { kind: "ok", value: fn() };
  } catch (e) {
    if (!(e instanceof VhostUserError)) throw e;
    const base = { request: e.request, message: e.message };
    switch (e.code) {
      case "TIMEOUT":
        return { kind: "timeout", ...base };
      case "DISCONNECTED":
        return { kind: "disconnected", ...base };
      case "NACK":
        return { kind: "nack", ...base };
      case "BAD_REPLY":
        return { kind: "bad-reply", ...base };
      case "BACKEND_EXITED":
        return { kind: "exited", message: e.message };
      default:
        throw e;
    }
  }
}
