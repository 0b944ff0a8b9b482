/**
 * Launchers for real vhost-user back-ends from Debian packages, each started fresh with its own
 * socket and log file, and `socket:PATH` for a back-end the user already runs.
 *
 * - DPDK testpmd with the vhost PMD (virtio-net; package `dpdk-dev`, `librte-net-vhost23`):
 *   split and packed, IN_ORDER, INDIRECT, EVENT_IDX; ACCESS_PLATFORM + device IOTLB with
 *   `iommu-support=1`; forwards frames back with `--forward-mode=macswap`;
 * - qemu-storage-daemon exporting a raw file as vhost-user-blk (package `qemu-system-common`):
 *   split only, INDIRECT, EVENT_IDX, CONFIG.
 *
 * Output goes to a log FILE, never a pipe to Deno: the front-end's data path blocks in
 * synchronous FFI and never drains a pipe, and a back-end blocked on a full pipe stops
 * answering (VHOST_USER.md). testpmd without `-i` waits on stdin, so its stdin stays open.
 *
 * @module
 */

import { VhostUserError } from "./errors.ts";

/** Which back-end. */
export type BackendKind = "testpmd" | "qsd" | "socket";

/** A back-end to connect to: launched by us, or already running. */
export interface VhostBackend {
  /** Kind. */
  readonly kind: BackendKind;
  /** Socket path. */
  readonly socket: string;
  /** Log file (launched back-ends), else `null`. */
  readonly logFile: string | null;
  /** Process id (launched back-ends), else `null`. */
  readonly pid: number | null;
  /** `null` while running (or not ours), else how it ended, e.g. `"exit code 1"`, `"signal SIGKILL"`. */
  exited(): string | null;
  /** The log so far (empty when none). */
  log(): string;
  /** Kills the process (SIGKILL) without waiting: a crash on demand. */
  kill(): void;
  /** Stops it (stdin closed, SIGTERM, SIGKILL after 3 s) and removes its socket. */
  stop(): Promise<void>;
}

/** Binary paths (overridable for tests through the options). */
export const TESTPMD_BINARY = "/usr/bin/dpdk-testpmd";
/** qemu-storage-daemon (Debian: package qemu-system-common). */
export const QSD_BINARY = "/usr/bin/qemu-storage-daemon";

/**
 * Why a back-end cannot run on this machine (binary missing), or `null` when it can.
 * Needs `--allow-read` for the binary path.
 */
export function backendUnavailable(kind: "testpmd" | "qsd"): string | null {
  const bin = kind === "testpmd" ? TESTPMD_BINARY : QSD_BINARY;
  const pkg = kind === "testpmd" ? "dpdk-dev librte-net-vhost23" : "qemu-system-common";
  try {
    Deno.statSync(bin);
    return null;
  } catch {
    return `${bin} not found (apt-get install -y --no-install-recommends ${pkg})`;
  }
}

let instance = 0;

function spawnLogged(
  kind: BackendKind,
  bin: string,
  args: string[],
  socket: string,
  keepStdin: boolean,
): VhostBackend {
  const logFile = `${socket}.log`;
  const child = new Deno.Command("sh", {
    args: ["-c", `exec "$0" "$@" >"$VHU_LOG" 2>&1`, bin, ...args],
    env: { VHU_LOG: logFile },
    stdin: keepStdin ? "piped" : "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  let status: string | null = null;
  const done = child.status.then((s) => {
    status = s.signal ? `killed by ${s.signal}` : `exit code ${s.code}`;
  });
  // The exit status arrives through a promise, which a synchronous FFI loop never lets settle:
  // /proc/PID/stat (state Z, or gone) tells synchronously that the process died.
  const exited = (): string | null => {
    if (status !== null) return status;
    try {
      const st = Deno.readTextFileSync(`/proc/${child.pid}/stat`);
      const state = st.slice(st.lastIndexOf(")") + 2, st.lastIndexOf(")") + 3);
      return state === "Z" || state === "X" ? "exited (status not collected yet)" : null;
    } catch {
      return "exited (status not collected yet)";
    }
  };
  return {
    kind,
    socket,
    logFile,
    pid: child.pid,
    exited,
    log() {
      try {
        return Deno.readTextFileSync(logFile);
      } catch {
        return "";
      }
    },
    kill() {
      if (status === null) {
        try {
          child.kill("SIGKILL");
        } catch { /* already gone */ }
      }
    },
    async stop() {
      if (status === null) {
        try {
          await child.stdin?.close();
        } catch { /* not piped or closed */ }
        try {
          child.kill("SIGTERM");
        } catch { /* gone */ }
        const t = setTimeout(() => {
          try {
            child.kill("SIGKILL");
          } catch { /* gone */ }
        }, 3000);
        await done;
        clearTimeout(t);
      } else {
        try {
          await child.stdin?.close();
        } catch { /* closed */ }
      }
      await done;
      try {
        Deno.removeSync(socket);
      } catch { /* absent */ }
    },
  };
}

async function waitForSocket(be: VhostBackend, ms: number): Promise<void> {
  const t0 = Date.now();
  while (Date.now() - t0 < ms) {
    if (be.exited() !== null) break;
    try {
      if (Deno.statSync(be.socket).isSocket) return;
    } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 25));
  }
  const why = be.exited() ?? `no socket within ${ms} ms`;
  await be.stop();
  const tail = be.log().trim().split("\n").slice(-5).join(" | ");
  throw new VhostUserError(
    "BACKEND_START_FAILED",
    `${be.kind} did not start (${why}); log ${be.logFile}: ${tail}`,
  );
}

/**
 * Waits until the back-end's log holds `line` (after its socket exists).
 * @throws VhostUserError `BACKEND_START_FAILED` when it exits first or `ms` pass.
 */
async function waitForLogLine(be: VhostBackend, line: string, ms: number): Promise<void> {
  const t0 = Date.now();
  while (Date.now() - t0 < ms) {
    if (be.exited() !== null) break;
    if (be.log().includes(line)) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  const why = be.exited() ?? `no "${line}" in its log within ${ms} ms`;
  await be.stop();
  const tail = be.log().trim().split("\n").slice(-5).join(" | ");
  throw new VhostUserError(
    "BACKEND_START_FAILED",
    `${be.kind} did not start (${why}); log ${be.logFile}: ${tail}`,
  );
}

/** The line testpmd prints once its forwarding lcore runs (non-interactive mode). */
const TESTPMD_FORWARDING = "Press enter to exit";
/** coreutils `stdbuf` (line-buffers testpmd's stdout into its log). */
const STDBUF = "/usr/bin/stdbuf";

function isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

/** Options of {@link startTestpmd}. */
export interface TestpmdOptions {
  /** Directory for the socket and log (created). */
  dir: string;
  /** Queue pairs (default 1); more than 1 also sets testpmd's `--rxq` and `--txq`. */
  queues?: number;
  /** Offer ACCESS_PLATFORM and the device IOTLB (`iommu-support=1`). */
  iommu?: boolean;
  /** testpmd forwarding mode (default `macswap`). */
  forwardMode?: string;
  /** Extra vdev arguments, e.g. `["client=0"]`. */
  vdevArgs?: string[];
  /** Wait for the socket and for forwarding to start, in ms (default 20000). */
  startTimeoutMs?: number;
  /** Binary (default {@link TESTPMD_BINARY}). */
  binary?: string;
  /** Extra EAL arguments, e.g. `["--log-level=lib.vhost.*:debug"]`. */
  ealArgs?: string[];
}

/**
 * Starts DPDK testpmd with one vhost PMD port as a vhost-user server (no hugepages, no PCI, its
 * own `--file-prefix`), forwarding with macswap, and waits for its socket and then for its
 * forwarding lcore to run.
 *
 * `--disable-link-check`: testpmd otherwise starts forwarding only once it sees the port's link
 * up (polled every 100 ms, up to 9 s), and a vhost port's link is up only while a front-end is
 * connected with DRIVER_OK. The socket appears before that, so the first session's frames could
 * wait unforwarded; on a loaded machine longer than a fuzz case's probe (a valid case then read
 * as WEDGED: its session ended in the testpmd log before "start packet forwarding").
 * Needs `--allow-run`, `--allow-read`, `--allow-write` on `dir`.
 * @throws VhostUserError `BACKEND_START_FAILED` (names the log file and its last lines).
 */
export async function startTestpmd(o: TestpmdOptions): Promise<VhostBackend> {
  Deno.mkdirSync(o.dir, { recursive: true });
  const tag = `vq${Deno.pid}-${instance++}`;
  const socket = `${o.dir}/testpmd-${tag}.sock`;
  try {
    Deno.removeSync(socket);
  } catch { /* absent */ }
  const vdev = [
    `net_vhost0`,
    `iface=${socket}`,
    `queues=${o.queues ?? 1}`,
    ...(o.iommu ? ["iommu-support=1"] : []),
    ...(o.vdevArgs ?? []),
  ].join(",");
  const args = [
    "-l",
    "0-1",
    "--no-huge",
    "-m",
    "512",
    "--no-pci",
    "--file-prefix",
    tag,
    ...(o.ealArgs ?? []),
    "--vdev",
    vdev,
    "--",
    `--forward-mode=${o.forwardMode ?? "macswap"}`,
    "--auto-start",
    "--disable-link-check",
    "--nb-cores=1",
    // one forwarding stream per queue pair, all on the one forwarding lcore
    ...((o.queues ?? 1) > 1 ? [`--rxq=${o.queues}`, `--txq=${o.queues}`] : []),
    "--total-num-mbufs=2048",
    "--txd=64",
    "--rxd=64",
  ];
  const bin = o.binary ?? TESTPMD_BINARY;
  // testpmd's stdout goes to a file, block-buffered: line-buffer it (coreutils stdbuf) so the
  // forwarding line reaches the log when printed; without stdbuf, only the socket is awaited
  const lineBuffered = isFile(STDBUF);
  const be = lineBuffered
    ? spawnLogged("testpmd", STDBUF, ["-oL", bin, ...args], socket, true)
    : spawnLogged("testpmd", bin, args, socket, true);
  const t0 = Date.now();
  const ms = o.startTimeoutMs ?? 20000;
  await waitForSocket(be, ms);
  if (lineBuffered) {
    await waitForLogLine(be, TESTPMD_FORWARDING, Math.max(1000, ms - (Date.now() - t0)));
  }
  return be;
}

/** Options of {@link startQsd}. */
export interface QsdOptions {
  /** Directory for the socket and log (created). */
  dir: string;
  /** Raw disk image file to export. */
  disk: string;
  /** Export writable (default true). */
  writable?: boolean;
  /** Socket wait in ms (default 10000). */
  startTimeoutMs?: number;
  /** Binary (default {@link QSD_BINARY}). */
  binary?: string;
}

/**
 * Starts qemu-storage-daemon exporting `disk` (raw) as vhost-user-blk and waits for its socket.
 * @throws VhostUserError `BACKEND_START_FAILED`.
 */
export async function startQsd(o: QsdOptions): Promise<VhostBackend> {
  Deno.mkdirSync(o.dir, { recursive: true });
  const socket = `${o.dir}/qsd-vq${Deno.pid}-${instance++}.sock`;
  try {
    Deno.removeSync(socket);
  } catch { /* absent */ }
  const args = [
    "--blockdev",
    `driver=file,node-name=file0,filename=${o.disk}`,
    "--export",
    `type=vhost-user-blk,id=exp0,node-name=file0,addr.type=unix,addr.path=${socket},writable=${
      (o.writable ?? true) ? "on" : "off"
    }`,
  ];
  const be = spawnLogged("qsd", o.binary ?? QSD_BINARY, args, socket, false);
  await waitForSocket(be, o.startTimeoutMs ?? 10000);
  return be;
}

/** A back-end someone else runs, at `socket`: nothing to start or stop. */
export function existingBackend(socket: string): VhostBackend {
  return {
    kind: "socket",
    socket,
    logFile: null,
    pid: null,
    exited: () => null,
    log: () => "",
    kill: () => {},
    stop: () => Promise.resolve(),
  };
}

/**
 * Parses a back-end spec as the CLIs take it: `testpmd`, `qsd` or `socket:PATH`.
 * @throws VhostUserError `BAD_ARGUMENT` naming the accepted forms.
 */
export function parseBackendSpec(
  spec: string,
): { kind: "testpmd" } | { kind: "qsd" } | { kind: "socket"; path: string } {
  if (spec === "testpmd" || spec === "qsd") return { kind: spec };
  if (spec.startsWith("socket:") && spec.length > 7) return { kind: "socket", path: spec.slice(7) };
  throw new VhostUserError(
    "BAD_ARGUMENT",
    `back-end "${spec}": use testpmd, qsd or socket:PATH`,
  );
}
