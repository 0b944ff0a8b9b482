/**
 * A small Linux guest for the live QEMU test (`deno task test:qemu`): a Debian cloud kernel and a
 * busybox initramfs that loads the virtio modules and does block, net, rng and console I/O, then
 * prints `READY-FOR-DUMP` on the serial console and idles so its rings can be captured.
 *
 * Nothing is installed into the machine: the kernel (`linux-image-*-cloud-amd64`) and
 * `busybox-static` are fetched with `apt-get download` and unpacked with `dpkg-deb -x` into the
 * cache directory ({@link guestCacheDir}); the initramfs is a newc archive written by the Debian
 * `cpio` tool. A second run reuses the cache.
 *
 * @module
 */

/** The three scenarios the live test captures. */
export type Scenario = "split" | "packed" | "vtd";

/** Marker the guest prints on its serial console when its I/O is done. */
export const READY_MARKER = "READY-FOR-DUMP";

/** Cache directory: `$VIRTQ_GUEST_CACHE`, else `$XDG_CACHE_HOME/virtq-lab/guest`, else `~/.cache/...`. */
export function guestCacheDir(): string {
  const env = (k: string) => {
    try {
      return Deno.env.get(k);
    } catch {
      return undefined;
    }
  };
  const own = env("VIRTQ_GUEST_CACHE");
  if (own) return own;
  const xdg = env("XDG_CACHE_HOME") || `${env("HOME") ?? "/root"}/.cache`;
  return `${xdg}/virtq-lab/guest`;
}

/** The built guest: kernel, initramfs, disk image template. */
export interface Guest {
  /** Kernel image. */
  kernel: string;
  /** newc initramfs. */
  initrd: string;
  /** Kernel release, e.g. `6.1.0-57-cloud-amd64`. */
  release: string;
  /** Seconds spent downloading and building (0 when cached). */
  buildSeconds: number;
}

async function run(cmd: string[], cwd?: string, timeoutMs = 300_000): Promise<string> {
  const c = new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    cwd,
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(timeoutMs),
  });
  const r = await c.output();
  const out = new TextDecoder().decode(r.stdout);
  if (!r.success) {
    throw new Error(
      `${cmd.join(" ")} failed (${r.code}): ${new TextDecoder().decode(r.stderr).trim()}`,
    );
  }
  return out;
}

async function exists(p: string): Promise<boolean> {
  try {
    await Deno.stat(p);
    return true;
  } catch {
    return false;
  }
}

/** Virtio modules in load order (dependencies first), as `.ko` paths under `kernel/`. */
const MODULES = [
  "drivers/virtio/virtio_ring",
  "drivers/virtio/virtio",
  "drivers/virtio/virtio_pci_modern_dev",
  "drivers/virtio/virtio_pci_legacy_dev",
  "drivers/virtio/virtio_pci",
  "drivers/block/virtio_blk",
  "net/core/failover",
  "drivers/net/net_failover",
  "drivers/net/virtio_net",
  "drivers/char/hw_random/virtio-rng",
  "drivers/char/virtio_console",
];

const INIT = `#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
echo "=== guest: kernel $(uname -r) cmdline: $(cat /proc/cmdline)"
for m in $(cat /modules.list); do insmod /lib/modules/$m.ko || echo "insmod $m failed"; done
for i in 1 2 3 4 5 6 7 8 9 10; do [ -e /dev/vda ] && [ -e /dev/hvc0 ] && break; sleep 0.5; done
echo "=== drivers"
for d in /sys/bus/virtio/devices/*; do echo "$d: device=$(cat $d/device) driver=$(basename $(readlink $d/driver))"; done
[ -d /sys/class/iommu ] && echo "iommu: $(ls /sys/class/iommu)"
echo "=== blk reads"
dd if=/dev/vda of=/dev/null bs=4096 count=256
dd if=/dev/vda bs=512 skip=256 count=1 2>/dev/null | head -c 16; echo
echo "=== blk write sector 2000"
echo "SECTOR 00003000" | dd of=/dev/vda bs=512 seek=2000 conv=notrunc,fsync
sync
echo "=== net"
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ping -c 4 -W 2 10.0.2.2
echo "=== hwrng"
cat /sys/class/misc/hw_random/rng_available
dd if=/dev/hwrng bs=64 count=2 2>/dev/null | hexdump -C
echo "=== hvc"
echo "hello-from-guest-over-virtconsole hvc0" > /dev/hvc0
echo "=== final blk read sector 5000"
dd if=/dev/vda bs=512 skip=5000 count=1 2>/dev/null | head -c 16; echo
echo ${READY_MARKER}
while true; do sleep 3600; done
`;

/**
 * Downloads (once) the kernel and busybox into the cache and builds the initramfs.
 * @param progress progress lines.
 * @throws Error when apt-get, dpkg-deb or cpio fail (their stderr in the message).
 */
export async function ensureGuest(progress: (l: string) => void = () => {}): Promise<Guest> {
  const dir = guestCacheDir();
  const stamp = `${dir}/guest.json`;
  if (await exists(stamp)) {
    const g = JSON.parse(await Deno.readTextFile(stamp)) as Guest;
    if (await exists(g.kernel) && await exists(g.initrd)) return { ...g, buildSeconds: 0 };
  }
  const t0 = performance.now();
  await Deno.mkdir(`${dir}/deb`, { recursive: true });
  // The metapackage names the current kernel package; download that and busybox-static.
  const deps = await run(["apt-cache", "depends", "linux-image-cloud-amd64"]);
  const m = /Depends: (linux-image-[0-9][^\s]*-cloud-amd64)/.exec(deps);
  if (!m) {
    throw new Error(`apt-cache depends linux-image-cloud-amd64: no kernel package in:\n${deps}`);
  }
  progress(`guest: apt-get download ${m[1]} busybox-static into ${dir}/deb`);
  await run(["apt-get", "download", m[1], "busybox-static"], `${dir}/deb`);
  const root = `${dir}/root`;
  await Deno.remove(root, { recursive: true }).catch(() => {});
  await Deno.mkdir(root, { recursive: true });
  for await (const e of Deno.readDir(`${dir}/deb`)) {
    if (
      e.name.endsWith(".deb") &&
      (e.name.startsWith(m[1] + "_") || e.name.startsWith("busybox-static_"))
    ) {
      await run(["dpkg-deb", "-x", `${dir}/deb/${e.name}`, root]);
    }
  }
  const release = m[1].replace(/^linux-image-/, "");
  const kernel = `${root}/boot/vmlinuz-${release}`;
  if (!await exists(kernel)) throw new Error(`${kernel} missing after dpkg-deb -x`);

  // initramfs staging tree
  const st = `${dir}/initramfs`;
  await Deno.remove(st, { recursive: true }).catch(() => {});
  for (const d of ["bin", "proc", "sys", "dev", "lib/modules"]) {
    await Deno.mkdir(`${st}/${d}`, { recursive: true });
  }
  await Deno.copyFile(`${root}/bin/busybox`, `${st}/bin/busybox`);
  await Deno.chmod(`${st}/bin/busybox`, 0o755);
  const list: string[] = [];
  for (const mod of MODULES) {
    const src = `${root}/lib/modules/${release}/kernel/${mod}.ko`;
    if (!await exists(src)) continue; // built into this kernel
    const name = mod.split("/").pop()!;
    await Deno.copyFile(src, `${st}/lib/modules/${name}.ko`);
    list.push(name);
  }
  await Deno.writeTextFile(`${st}/modules.list`, list.join("\n") + "\n");
  await Deno.writeTextFile(`${st}/init`, INIT);
  await Deno.chmod(`${st}/init`, 0o755);
  const initrd = `${dir}/initramfs.cpio`;
  await run([
    "bash",
    "-c",
    `set -o pipefail; cd '${st}' && find . | LC_ALL=C sort | cpio -o -H newc --quiet > '${initrd}'`,
  ]);
  const g: Guest = {
    kernel,
    initrd,
    release,
    buildSeconds: Math.round((performance.now() - t0) / 100) / 10,
  };
  await Deno.writeTextFile(stamp, JSON.stringify(g, null, 1));
  progress(`guest: kernel ${release}, initramfs ${initrd} built in ${g.buildSeconds} s`);
  return g;
}

/** QEMU command line of a scenario (files under `dir`). */
export function qemuArgs(guest: Guest, scenario: Scenario, dir: string): string[] {
  const extra = scenario === "packed"
    ? ",packed=on"
    : scenario === "vtd"
    ? ",iommu_platform=on,disable-legacy=on"
    : "";
  const append = "console=ttyS0 panic=-1 loglevel=4 quiet" +
    (scenario === "vtd" ? " intel_iommu=on iommu.strict=1 iommu.passthrough=0" : "");
  return [
    "-accel",
    "tcg",
    "-smp",
    "1",
    "-m",
    "256M",
    "-machine",
    scenario === "vtd" ? "q35" : "pc",
    "-nographic",
    "-no-reboot",
    "-nodefaults",
    ...(scenario === "vtd" ? ["-device", "intel-iommu,intremap=off"] : []),
    "-kernel",
    guest.kernel,
    "-initrd",
    guest.initrd,
    "-append",
    append,
    "-serial",
    `file:${dir}/serial.log`,
    "-qmp",
    `unix:${dir}/qmp.sock,server=on,wait=off`,
    "-drive",
    `file=${dir}/disk.raw,format=raw,if=none,id=d0,cache=unsafe`,
    "-device",
    `virtio-blk-pci,drive=d0,id=blk0${extra}`,
    "-netdev",
    "user,id=n0,restrict=on",
    "-device",
    `virtio-net-pci,netdev=n0,id=net0,mac=52:54:00:12:34:56,romfile=${extra}`,
    "-object",
    "rng-random,id=rng,filename=/dev/urandom",
    "-device",
    `virtio-rng-pci,rng=rng,id=rng0${extra}`,
    "-device",
    `virtio-serial-pci,id=vs0,max_ports=2${extra}`,
    "-chardev",
    `file,id=con0,path=${dir}/virtconsole.log`,
    "-device",
    "virtconsole,chardev=con0,id=vcon0,bus=vs0.0",
  ];
}

/** A running scenario. */
export interface RunningGuest {
  /** QEMU process. */
  child: Deno.ChildProcess;
  /** QMP socket. */
  qmp: string;
  /** Serial log file. */
  serial: string;
  /** The command line. */
  cmdline: string[];
  /** Stops QEMU (kill, then wait), idempotent. */
  stop(): Promise<void>;
}

/** Starts QEMU for a scenario in `dir` (a 4 MiB disk with sector marks is created there). */
export async function startGuest(
  guest: Guest,
  scenario: Scenario,
  dir: string,
): Promise<RunningGuest> {
  const disk = new Uint8Array(4 << 20);
  const enc = new TextEncoder();
  for (let s = 0; s < disk.length / 512; s += 256) {
    disk.set(enc.encode(`SECTOR ${s.toString().padStart(8, "0")}\n`), s * 512);
  }
  disk.set(enc.encode("SECTOR 00005000\n"), 5000 * 512);
  await Deno.writeFile(`${dir}/disk.raw`, disk);
  const args = qemuArgs(guest, scenario, dir);
  const child = new Deno.Command("qemu-system-x86_64", {
    args,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let stopped = false;
  const stderr = new Response(child.stderr).text();
  return {
    child,
    qmp: `${dir}/qmp.sock`,
    serial: `${dir}/serial.log`,
    cmdline: ["qemu-system-x86_64", ...args],
    async stop() {
      if (!stopped) {
        stopped = true;
        try {
          child.kill("SIGKILL");
        } catch { /* already exited */ }
      }
      await child.status;
      const err = await stderr;
      if (err.trim()) {
        await Deno.writeTextFile(`${dir}/qemu-stderr.log`, err).catch(() => {});
      }
    },
  };
}

/**
 * Waits until the serial log contains `marker`, polling every 200 ms.
 * @throws Error after `timeoutMs`, or when QEMU exits first (with the log's tail).
 */
export async function waitForSerial(
  g: RunningGuest,
  marker: string,
  timeoutMs: number,
): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let exited = false;
  g.child.status.then(() => exited = true);
  while (true) {
    let text = "";
    try {
      text = await Deno.readTextFile(g.serial);
    } catch { /* not created yet */ }
    if (text.includes(marker)) return text;
    if (exited || Date.now() > deadline) {
      throw new Error(
        `${exited ? "QEMU exited" : `no ${marker} within ${timeoutMs} ms`}; serial tail:\n` +
          text.slice(-1500),
      );
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}
