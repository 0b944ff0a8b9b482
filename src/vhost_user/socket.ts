/**
 * A connected AF_UNIX stream socket driven with sendmsg/recvmsg, so file descriptors travel as
 * SCM_RIGHTS ancillary data (vhost-user.rst "Communication"). Every receive has a deadline;
 * a closed or reset peer is `DISCONNECTED`, silence is `TIMEOUT`: never a hang.
 *
 * x86-64 layouts (VHOST_USER.md): `struct sockaddr_un` 110 bytes (u16 family, char path[108]);
 * `struct iovec` { base @0, len @8 }; `struct msghdr` 56 bytes { name @0, namelen @8, iov @16,
 * iovlen @24, control @32, controllen @40, flags @48 }; `struct cmsghdr` { len (size_t) @0,
 * level @8, type @12, data @16 }, CMSG_LEN(4n) = 16 + 4n, CMSG_SPACE(4n) = 16 + align8(4n).
 *
 * @module
 */

import { VhostUserError } from "./errors.ts";
import {
  AF_UNIX,
  closeFd,
  ECONNREFUSED,
  ECONNRESET,
  ENOENT,
  EPIPE,
  errno,
  errnoText,
  libc,
  MSG_DONTWAIT,
  MSG_NOSIGNAL,
  MSG_PEEK,
  POLLERR,
  POLLHUP,
  pollIn,
  SCM_RIGHTS,
  Scratch,
  type ScratchBlock,
  sleepMs,
  SOCK_CLOEXEC,
  SOCK_STREAM,
  socketPair,
  SOL_SOCKET,
} from "./libc.ts";

/** Most fds attached to one message (SET_MEM_TABLE: 8 regions). */
export const MAX_FDS_PER_MESSAGE = 8;
/** Bytes of a socket's message buffer. */
export const SOCKET_BUFFER_SIZE = 4096;

/** A unix stream socket with a message buffer in stable (mmap'd) memory. */
export class UnixSocket {
  /** The socket fd (-1 once closed). */
  fd: number;
  readonly #scratch: Scratch;
  readonly #msg: ScratchBlock;
  readonly #iov: ScratchBlock;
  readonly #ctl: ScratchBlock;
  /** The message buffer: encode into it, send from it, receive into it. */
  readonly buf: ScratchBlock;
  readonly #revents = [0];

  // Buffers of closed sockets, reused by new ones: a closed socket's buffer is never unmapped,
  // so a late write into it cannot fault the process.
  static readonly #pool: Scratch[] = [];

  private constructor(fd: number) {
    this.fd = fd;
    const reused = UnixSocket.#pool.pop();
    reused?.reset();
    this.#scratch = reused ?? new Scratch(8192);
    this.#msg = this.#scratch.alloc(56, 8);
    this.#iov = this.#scratch.alloc(16, 8);
    this.#ctl = this.#scratch.alloc(16 + 4 * MAX_FDS_PER_MESSAGE, 8);
    this.buf = this.#scratch.alloc(SOCKET_BUFFER_SIZE, 8);
  }

  /**
   * Connects to `path`, retrying ECONNREFUSED/ENOENT for up to `retryMs` (a back-end's socket
   * file appears at bind(), before listen(): VHOST_USER.md).
   * @throws VhostUserError `CONNECT_FAILED` (message names the path and errno), `BAD_ARGUMENT`
   * for a path of 108 bytes or more.
   */
  static connect(path: string, retryMs = 0): UnixSocket {
    const p = new TextEncoder().encode(path);
    if (p.length >= 108) {
      throw new VhostUserError("BAD_ARGUMENT", `socket path ${path} is ${p.length} bytes (< 108)`);
    }
    const sa = new Scratch(4096);
    try {
      const b = sa.alloc(110, 8);
      b.view.setUint16(0, AF_UNIX, true);
      b.bytes.set(p, 2);
      const deadline = Date.now() + retryMs;
      for (;;) {
        const fd = libc().socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) throw new VhostUserError("SYSCALL_FAILED", `socket: ${errnoText()}`);
        if (libc().connect(fd, b.ptr, 2 + p.length + 1) === 0) return new UnixSocket(fd);
        const e = errno();
        closeFd(fd);
        if ((e !== ECONNREFUSED && e !== ENOENT) || Date.now() >= deadline) {
          throw new VhostUserError("CONNECT_FAILED", `connect(${path}): ${errnoText(e)}`);
        }
        sleepMs(20);
      }
    } finally {
      sa.free();
    }
  }

  /** Wraps an already connected fd (one end of a socketpair); the socket owns it. */
  static fromFd(fd: number): UnixSocket {
    return new UnixSocket(fd);
  }

  /** A connected pair: `[ours, theirs]`; `theirs` is a raw fd to hand to the back-end. */
  static pair(): [UnixSocket, number] {
    const [a, b] = socketPair();
    return [new UnixSocket(a), b];
  }

  /**
   * Sends `len` bytes of {@link UnixSocket.buf} with up to 8 fds attached, in one sendmsg.
   * @throws VhostUserError `DISCONNECTED` (EPIPE/ECONNRESET), `SYSCALL_FAILED`, `BAD_ARGUMENT`.
   */
  send(len: number, fds: readonly number[] = [], request?: string): void {
    if (fds.length > MAX_FDS_PER_MESSAGE) {
      throw new VhostUserError("BAD_ARGUMENT", `${fds.length} fds (at most 8)`, request);
    }
    this.#ensureOpen(request);
    const m = this.#msg.view, iov = this.#iov.view, c = this.#ctl.view;
    iov.setBigUint64(0, this.buf.addr, true);
    iov.setBigUint64(8, BigInt(len), true);
    this.#msg.bytes.fill(0);
    m.setBigUint64(16, this.#iov.addr, true);
    m.setBigUint64(24, 1n, true);
    if (fds.length > 0) {
      const dataLen = 4 * fds.length;
      this.#ctl.bytes.fill(0);
      c.setBigUint64(0, BigInt(16 + dataLen), true);
      c.setInt32(8, SOL_SOCKET, true);
      c.setInt32(12, SCM_RIGHTS, true);
      for (let i = 0; i < fds.length; i++) c.setInt32(16 + 4 * i, fds[i], true);
      m.setBigUint64(32, this.#ctl.addr, true);
      m.setBigUint64(40, BigInt(16 + ((dataLen + 7) & ~7)), true);
    }
    const n = Number(libc().sendmsg(this.fd, this.#msg.ptr, MSG_NOSIGNAL));
    if (n < 0) {
      const e = errno();
      if (e === EPIPE || e === ECONNRESET) {
        throw new VhostUserError("DISCONNECTED", `send: ${errnoText(e)}`, request);
      }
      throw new VhostUserError("SYSCALL_FAILED", `sendmsg: ${errnoText(e)}`, request);
    }
    if (n !== len) {
      throw new VhostUserError("DISCONNECTED", `short send: ${n} of ${len} bytes`, request);
    }
  }

  /**
   * Receives exactly `len` bytes into {@link UnixSocket.buf} at `offset`, waiting in poll()
   * until `deadline` (a `Date.now()` value). Fds that arrive are appended to `fdsOut` (the
   * caller closes them).
   * @throws VhostUserError `TIMEOUT`, `DISCONNECTED` (EOF or reset), `SYSCALL_FAILED`.
   */
  recvExact(len: number, offset: number, deadline: number, request?: string, fdsOut?: number[]) {
    if (offset + len > SOCKET_BUFFER_SIZE) {
      throw new VhostUserError("BAD_REPLY", `message of ${offset + len} bytes`, request);
    }
    this.#ensureOpen(request);
    let got = 0;
    while (got < len) {
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new VhostUserError(
          "TIMEOUT",
          `no ${got === 0 ? "answer" : `rest of message (${got}/${len} bytes)`} within the timeout`,
          request,
        );
      }
      // 0: this poll timed out or a signal interrupted it (EINTR: a profiler's SIGPROF fires
      // every millisecond): the deadline above decides.
      if (pollIn([this.fd], left, this.#revents) === 0) continue;
      const m = this.#msg.view, iov = this.#iov.view, c = this.#ctl.view;
      iov.setBigUint64(0, this.buf.addr + BigInt(offset + got), true);
      iov.setBigUint64(8, BigInt(len - got), true);
      this.#msg.bytes.fill(0);
      this.#ctl.bytes.fill(0);
      m.setBigUint64(16, this.#iov.addr, true);
      m.setBigUint64(24, 1n, true);
      m.setBigUint64(32, this.#ctl.addr, true);
      m.setBigUint64(40, BigInt(this.#ctl.bytes.length), true);
      const n = Number(libc().recvmsg(this.fd, this.#msg.ptr, MSG_DONTWAIT));
      if (n < 0) {
        const e = errno();
        if (e === 11) continue; // EAGAIN: poll woke for nothing
        if (e === ECONNRESET) {
          throw new VhostUserError("DISCONNECTED", `recv: ${errnoText(e)}`, request);
        }
        throw new VhostUserError("SYSCALL_FAILED", `recvmsg: ${errnoText(e)}`, request);
      }
      if (n === 0) {
        throw new VhostUserError("DISCONNECTED", "the back-end closed the connection", request);
      }
      const controllen = Number(m.getBigUint64(40, true));
      if (controllen >= 16 && c.getInt32(8, true) === SOL_SOCKET && c.getInt32(12, true) === 1) {
        const cl = Number(c.getBigUint64(0, true));
        for (let i = 0; 16 + 4 * i + 4 <= cl && i < MAX_FDS_PER_MESSAGE; i++) {
          const fd = c.getInt32(16 + 4 * i, true);
          if (fdsOut) fdsOut.push(fd);
          else closeFd(fd);
        }
      }
      got += n;
    }
  }

  /** True when the peer has closed or reset the connection (consumes nothing). */
  peerClosed(): boolean {
    if (this.fd < 0) return true;
    if (pollIn([this.fd], 0, this.#revents) === 0) return false;
    if (this.#revents[0] & (POLLHUP | POLLERR)) return true;
    this.#iov.view.setBigUint64(0, this.buf.addr, true);
    this.#iov.view.setBigUint64(8, 1n, true);
    this.#msg.bytes.fill(0);
    this.#msg.view.setBigUint64(16, this.#iov.addr, true);
    this.#msg.view.setBigUint64(24, 1n, true);
    return Number(libc().recvmsg(this.fd, this.#msg.ptr, MSG_PEEK | MSG_DONTWAIT)) === 0;
  }

  /** True once {@link UnixSocket.close} ran. */
  get closed(): boolean {
    return this.fd < 0;
  }

  #ensureOpen(request?: string): void {
    if (this.fd < 0) {
      throw new VhostUserError("DISCONNECTED", "the connection is closed", request);
    }
  }

  /** Closes the fd (idempotent); the buffers go back to a pool for the next socket. */
  close(): void {
    if (this.fd < 0) return;
    closeFd(this.fd);
    this.fd = -1;
    UnixSocket.#pool.push(this.#scratch);
  }
}
