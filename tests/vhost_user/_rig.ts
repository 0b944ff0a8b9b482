// Shared rig for the back-end tests: decides whether they can run here, starts back-ends, and
// lays out virtio-net frames and virtio-blk requests.
//
// The tests need --allow-all (FFI, child processes): under `deno task test` (no FFI) they are
// ignored; `deno task test:vhost-user` runs them. A back-end binary that is missing FAILS the
// test in CI (env CI=true) and is reported as skipped, with the reason, elsewhere.

import {
  backendUnavailable,
  startQsd,
  startTestpmd,
  type TestpmdOptions,
  type VhostBackend,
  type VhostUserDevice,
} from "../../src/vhost_user/mod.ts";
import { SgList } from "../../src/virtio/mod.ts";

/** True when this test process may call libc through FFI and run back-ends. */
export const CAN_RUN = Deno.permissions.querySync({ name: "ffi" }).state === "granted" &&
  Deno.permissions.querySync({ name: "run" }).state === "granted";

/** Scratch directory for sockets, logs and disk images. */
export const WORK_DIR = `/tmp/virtq-vhost-tests-${Deno.pid}`;

/**
 * `null` when back-end `kind` can run; otherwise logs why the test is skipped and returns the
 * reason. In CI a missing back-end throws (the run must fail).
 */
export function skipWithout(kind: "testpmd" | "qsd"): string | null {
  const why = backendUnavailable(kind);
  if (why === null) return null;
  if (Deno.env.get("CI") === "true") throw new Error(`CI: back-end ${kind} cannot start: ${why}`);
  console.log(`SKIPPED (${kind} unavailable): ${why}`);
  return why;
}

/** Starts testpmd in the scratch directory. */
export function testpmd(o: Partial<TestpmdOptions> = {}): Promise<VhostBackend> {
  return startTestpmd({ dir: WORK_DIR, ...o });
}

/** Sector size of the test disk. */
export const SECTOR = 512;

/** Byte `i` of sector `s` of the known disk image. */
export function diskByte(s: number, i: number): number {
  return (s * 31 + i * 7 + 1) & 0xff;
}

/** Writes a known 1 MiB raw image and starts qemu-storage-daemon on it. */
export async function qsd(): Promise<{ be: VhostBackend; disk: string }> {
  Deno.mkdirSync(WORK_DIR, { recursive: true });
  const disk = `${WORK_DIR}/disk-${crypto.randomUUID().slice(0, 8)}.raw`;
  const img = new Uint8Array(1 << 20);
  for (let s = 0; s < img.length / SECTOR; s++) {
    for (let i = 0; i < SECTOR; i++) img[s * SECTOR + i] = diskByte(s, i);
  }
  Deno.writeFileSync(disk, img);
  return { be: await startQsd({ dir: WORK_DIR, disk }), disk };
}

/** virtio-net header bytes with VERSION_1 (`struct virtio_net_hdr` + num_buffers, §5.1.6). */
export const NET_HDR = 12;

/** Writes a 60-byte Ethernet frame (dst 02:..:01, src 02:..:02, seq at byte 14) after a zero header. */
export function writeFrame(dev: VhostUserDevice, gpa: number, seq: number): number {
  const b = new Uint8Array(NET_HDR + 60);
  b.set([2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x88, 0xb5], NET_HDR);
  new DataView(b.buffer).setUint32(NET_HDR + 14, seq, true);
  dev.shared.memory.write(gpa, b);
  return b.length;
}

/** Reads back (dst MAC byte 5, src MAC byte 5, seq) of a frame received at `gpa`. */
export function readFrame(dev: VhostUserDevice, gpa: number): [number, number, number] {
  const v = dev.shared.memory.dataView(gpa + NET_HDR, 20);
  return [v.getUint8(5), v.getUint8(11), v.getUint32(14, true)];
}

/**
 * One frame out on vring 1 (TX) and back on vring 0 (RX), retransmitted up to `tries` times
 * (a back-end may drop a frame while it misses an IOTLB translation).
 * @returns the RX token and the number of transmissions, or the failed wait.
 */
export function roundTrip(
  dev: VhostUserDevice,
  txGpa: number,
  seq: number,
  timeoutMs = 2000,
  tries = 1,
): { token: number; sends: number } | { fail: string } {
  const len = writeFrame(dev, txGpa, seq);
  const tx = dev.vrings[1];
  for (let sends = 1; sends <= tries; sends++) {
    tx.queue.add(SgList.of([txGpa, len]), SgList.of(), 100000 + seq);
    dev.kick(1);
    const r = dev.waitUsed(0, sends < tries ? Math.min(200, timeoutMs) : timeoutMs, 200);
    for (let t = tx.queue.getUsed(); t !== undefined; t = tx.queue.getUsed()) { /* reclaim */ }
    if (r.kind === "used") return { token: r.token, sends };
    if (r.kind !== "timeout" || sends === tries) return { fail: `${r.kind}: ${JSON.stringify(r)}` };
  }
  return { fail: "unreachable" };
}

/** Posts `n` RX buffers of 2 KiB from `gpa`, token = slot. */
export function postRx(dev: VhostUserDevice, gpa: number, n: number): void {
  for (let i = 0; i < n; i++) {
    dev.vrings[0].queue.add(SgList.of(), SgList.of([gpa + i * 4096, 2048]), i);
  }
  dev.kick(0);
}
