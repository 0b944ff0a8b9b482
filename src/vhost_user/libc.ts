/**
 * libc through Deno FFI, for the vhost-user front-end (x86-64 Linux, glibc): memfd_create,
 * ftruncate, mmap, unix sockets, sendmsg/recvmsg, eventfd, poll, close.
 *
 * The library is opened lazily on first use ({@link libc}), so importing this layer needs no
 * permission; calling into it needs `--allow-ffi` (which lifts Deno's sandbox for the process).
 *
 * Structures handed to the kernel live in anonymous mmaps ({@link Scratch}), never in small JS
 * typed arrays: V8 keeps typed arrays under 64 bytes on its own heap, where the GC may move them,
 * so a raw address taken from one could dangle (VHOST_USER.md).
 *
 * @module
 */

import { VhostUserError } from "./errors.ts";

/** The libc functions the front-end binds, with their FFI signatures. */
export const LIBC_SYMBOLS = {
  memfd_create: { parameters: ["buffer", "u32"], result: "i32" },
  ftruncate: { parameters: ["i32", "i64"], result: "i32" },
  mmap: { parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"], result: "pointer" },
  munmap: { parameters: ["pointer", "usize"], result: "i32" },
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  connect: { parameters: ["i32", "pointer", "u32"], result: "i32" },
  bind: { parameters: ["i32", "pointer", "u32"], result: "i32" },
  listen: { parameters: ["i32", "i32"], result: "i32" },
  socketpair: { parameters: ["i32", "i32", "i32", "pointer"], result: "i32" },
  sendmsg: { parameters: ["i32", "pointer", "i32"], result: "isize" },
  recvmsg: { parameters: ["i32", "pointer", "i32"], result: "isize" },
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  read: { parameters: ["i32", "pointer", "usize"], result: "isize" },
  write: { parameters: ["i32", "pointer", "usize"], result: "isize" },
  close: { parameters: ["i32"], result: "i32" },
  poll: { parameters: ["pointer", "u64", "i32"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
  strerror: { parameters: ["i32"], result: "pointer" },
  clock_gettime: { parameters: ["i32", "pointer"], result: "i32" },
} as const;

/** The bound libc symbols. */
export type LibcSymbols = Deno.DynamicLibrary<typeof LIBC_SYMBOLS>["symbols"];

let lib: Deno.DynamicLibrary<typeof LIBC_SYMBOLS> | null = null;

/**
 * The libc symbols, opening `libc.so.6` on first call.
 * @throws VhostUserError `FFI_UNAVAILABLE` without `--allow-ffi` or when libc cannot be opened.
 */
export function libc(): LibcSymbols {
  if (lib === null) {
    try {
      lib = Deno.dlopen("libc.so.6", LIBC_SYMBOLS);
    } catch (e) {
      throw new VhostUserError(
        "FFI_UNAVAILABLE",
        `cannot open libc.so.6 (run with --allow-ffi): ${(e as Error).message}`,
      );
    }
  }
  return lib.symbols;
}

/** `AF_UNIX`. */
export const AF_UNIX = 1;
/** `SOCK_STREAM`. */
export const SOCK_STREAM = 1;
/** `SOCK_CLOEXEC`. */
export const SOCK_CLOEXEC = 0o2000000;
/** `SOL_SOCKET`. */
export const SOL_SOCKET = 1;
/** `SCM_RIGHTS`: ancillary data carrying file descriptors. */
export const SCM_RIGHTS = 1;
/** `MSG_NOSIGNAL`: EPIPE instead of SIGPIPE when the peer is gone. */
export const MSG_NOSIGNAL = 0x4000;
/** `MSG_DONTWAIT`. */
export const MSG_DONTWAIT = 0x40;
/** `MSG_PEEK`. */
export const MSG_PEEK = 0x2;
/** `MSG_CTRUNC`: ancillary data was truncated. */
export const MSG_CTRUNC = 0x8;
/** `POLLIN`. */
export const POLLIN = 1;
/** `POLLERR`. */
export const POLLERR = 0x8;
/** `POLLHUP`. */
export const POLLHUP = 0x10;
/** `POLLNVAL`. */
export const POLLNVAL = 0x20;
/** `EAGAIN`. */
export const EAGAIN = 11;
/** `EINTR`. */
export const EINTR = 4;
/** `ENOENT`. */
export const ENOENT = 2;
/** `ECONNREFUSED`. */
export const ECONNREFUSED = 111;
/** `EPIPE`. */
export const EPIPE = 32;
/** `ECONNRESET`. */
export const ECONNRESET = 104;
/** `EFD_NONBLOCK`. */
export const EFD_NONBLOCK = 0o4000;
/** `EFD_CLOEXEC`. */
export const EFD_CLOEXEC = 0o2000000;

const PROT_READ = 1, PROT_WRITE = 2, MAP_SHARED = 1, MAP_PRIVATE = 2, MAP_ANONYMOUS = 0x20;
const MFD_CLOEXEC = 1, CLOCK_MONOTONIC = 1;

/** The calling thread's `errno`. */
export function errno(): number {
  return new Deno.UnsafePointerView(libc().__errno_location()!).getInt32(0);
}

/** `strerror(e)` with the number, e.g. `"Connection refused (errno 111)"`. */
export function errnoText(e: number = errno()): string {
  const p = libc().strerror(e);
  return `${p ? Deno.UnsafePointerView.getCString(p) : "?"} (errno ${e})`;
}

/**
 * Throws `SYSCALL_FAILED` naming the call when `rc` is negative.
 * @returns `rc` as a number.
 */
export function checkRc(what: string, rc: number | bigint): number {
  const n = Number(rc);
  if (n < 0) throw new VhostUserError("SYSCALL_FAILED", `${what} failed: ${errnoText()}`);
  return n;
}

/** One mmap'd range: its address and an `ArrayBuffer` over its bytes. */
export interface Mapping {
  /** The mapping's address as an FFI pointer. */
  readonly ptr: Deno.PointerObject;
  /** The same address as a bigint (the front-end's user address). */
  readonly addr: bigint;
  /** Length in bytes. */
  readonly size: number;
  /** The bytes (no copy: writes land in the mapping). */
  readonly buffer: ArrayBuffer;
}

function mapFd(fd: number, size: number, flags: number): Mapping {
  const p = libc().mmap(null, BigInt(size), PROT_READ | PROT_WRITE, flags, fd, 0n);
  const addr = BigInt(Deno.UnsafePointer.value(p));
  if (p === null || BigInt.asIntN(64, addr) === -1n) {
    throw new VhostUserError("SYSCALL_FAILED", `mmap of ${size} bytes failed: ${errnoText()}`);
  }
  return { ptr: p, addr, size, buffer: Deno.UnsafePointerView.getArrayBuffer(p, size) };
}

/** Unmaps a {@link Mapping}; its `buffer` must not be touched afterwards. */
export function unmap(m: Mapping): void {
  libc().munmap(m.ptr, BigInt(m.size));
}

/**
 * A memfd of `size` bytes, mapped shared: the front-end's guest RAM, whose fd goes to the
 * back-end in SET_MEM_TABLE.
 * @throws VhostUserError `SYSCALL_FAILED`.
 */
export function createMemfdMapping(size: number, name: string): Mapping & { fd: number } {
  const fd = checkRc("memfd_create", libc().memfd_create(cString(name), MFD_CLOEXEC));
  try {
    checkRc("ftruncate", libc().ftruncate(fd, BigInt(size)));
    return { ...mapFd(fd, size, MAP_SHARED), fd };
  } catch (e) {
    libc().close(fd);
    throw e;
  }
}

/** A private anonymous mapping with a stable address (for FFI structures). */
export function anonymousMapping(size: number): Mapping {
  return mapFd(-1, size, MAP_PRIVATE | MAP_ANONYMOUS);
}

/** UTF-8 bytes of `s` with a terminating NUL. */
export function cString(s: string): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(s + "\0") as Uint8Array<ArrayBuffer>;
}

/** One allocation inside a {@link Scratch}: pointer, address, and views over its bytes. */
export interface ScratchBlock {
  /** Address as an FFI pointer. */
  readonly ptr: Deno.PointerObject;
  /** Address as a bigint. */
  readonly addr: bigint;
  /** The bytes. */
  readonly bytes: Uint8Array;
  /** Little-endian accessor over the bytes. */
  readonly view: DataView;
}

/** A bump allocator over one anonymous mapping, for structures passed to the kernel. */
export class Scratch {
  /** The mapping. */
  readonly map: Mapping;
  #off = 0;
  /** Maps `size` bytes (default 64 KiB). @throws VhostUserError `SYSCALL_FAILED`. */
  constructor(size = 1 << 16) {
    this.map = anonymousMapping(size);
  }
  /**
   * Allocates `size` bytes aligned to `align`.
   * @throws RangeError when the scratch is exhausted.
   */
  alloc(size: number, align = 16): ScratchBlock {
    const off = (this.#off + align - 1) & ~(align - 1);
    if (off + size > this.map.size) throw new RangeError("scratch mapping exhausted");
    this.#off = off + size;
    const addr = this.map.addr + BigInt(off);
    return {
      ptr: Deno.UnsafePointer.create(addr)!,
      addr,
      bytes: new Uint8Array(this.map.buffer, off, size),
      view: new DataView(this.map.buffer, off, size),
    };
  }
  /** Forgets every allocation (the memory stays mapped; old blocks alias new ones). */
  reset(): void {
    this.#off = 0;
  }
  /** Unmaps everything allocated from it. */
  free(): void {
    unmap(this.map);
  }
}

let shared: {
  ev: ScratchBlock;
  pfd: ScratchBlock;
  ts: ScratchBlock;
  pair: ScratchBlock;
} | null = null;

function sharedBlocks() {
  if (shared === null) {
    const s = new Scratch(4096);
    shared = {
      ev: s.alloc(8, 8),
      pfd: s.alloc(8 * 16, 8),
      ts: s.alloc(16, 8),
      pair: s.alloc(8, 8),
    };
  }
  return shared;
}

/** Creates an eventfd (counter 0). @throws VhostUserError `SYSCALL_FAILED`. */
export function eventfdCreate(nonBlocking: boolean): number {
  return checkRc(
    "eventfd",
    libc().eventfd(0, EFD_CLOEXEC | (nonBlocking ? EFD_NONBLOCK : 0)),
  );
}

/** Adds `value` to an eventfd counter (a kick). @throws VhostUserError `SYSCALL_FAILED`. */
export function eventfdWrite(fd: number, value = 1n): void {
  const ev = sharedBlocks().ev;
  ev.view.setBigUint64(0, value, true);
  checkRc("eventfd write", libc().write(fd, ev.ptr, 8n));
}

/**
 * Reads and resets an eventfd counter; `0n` when a non-blocking fd has nothing.
 * @throws VhostUserError `SYSCALL_FAILED`.
 */
export function eventfdRead(fd: number): bigint {
  const ev = sharedBlocks().ev;
  const n = Number(libc().read(fd, ev.ptr, 8n));
  if (n < 0) {
    if (errno() === EAGAIN) return 0n;
    throw new VhostUserError("SYSCALL_FAILED", `eventfd read failed: ${errnoText()}`);
  }
  return ev.view.getBigUint64(0, true);
}

/**
 * `poll(2)` up to 16 fds for POLLIN (blocking the thread, never the back-end: VHOST_USER.md).
 * Writes each fd's `revents` into `revents` (0 = nothing) and returns how many are ready.
 * EINTR counts as a timeout of this call. `timeoutMs` < 0 waits forever (never used here).
 * @throws RangeError for more than 16 fds; VhostUserError `SYSCALL_FAILED`.
 */
export function pollIn(fds: readonly number[], timeoutMs: number, revents: number[]): number {
  if (fds.length > 16) throw new RangeError("pollIn takes at most 16 fds");
  const pfd = sharedBlocks().pfd;
  for (let i = 0; i < fds.length; i++) {
    pfd.view.setInt32(8 * i, fds[i], true);
    pfd.view.setInt16(8 * i + 4, POLLIN, true);
    pfd.view.setInt16(8 * i + 6, 0, true);
  }
  let rc = libc().poll(pfd.ptr, BigInt(fds.length), Math.max(0, Math.floor(timeoutMs)));
  if (rc < 0) {
    if (errno() !== EINTR) {
      throw new VhostUserError("SYSCALL_FAILED", `poll failed: ${errnoText()}`);
    }
    rc = 0;
  }
  for (let i = 0; i < fds.length; i++) revents[i] = rc > 0 ? pfd.view.getInt16(8 * i + 6, true) : 0;
  return Math.max(0, rc);
}

/** Sleeps the thread for `ms` (poll on no fd). */
export function sleepMs(ms: number): void {
  libc().poll(sharedBlocks().pfd.ptr, 0n, Math.max(0, Math.floor(ms)));
}

/** CLOCK_MONOTONIC in nanoseconds (vDSO, no syscall), for latency figures. */
export function monotonicNs(): bigint {
  const ts = sharedBlocks().ts;
  libc().clock_gettime(CLOCK_MONOTONIC, ts.ptr);
  return ts.view.getBigInt64(0, true) * 1_000_000_000n + ts.view.getBigInt64(8, true);
}

/** Closes a file descriptor, ignoring errors (it is ours and we are done with it). */
export function closeFd(fd: number): void {
  if (fd >= 0) libc().close(fd);
}

/** `socketpair(AF_UNIX, SOCK_STREAM)`: two connected fds. @throws VhostUserError. */
export function socketPair(): [number, number] {
  const p = sharedBlocks().pair;
  checkRc("socketpair", libc().socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p.ptr));
  return [p.view.getInt32(0, true), p.view.getInt32(4, true)];
}
