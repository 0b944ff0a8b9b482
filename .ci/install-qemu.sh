#!/usr/bin/env bash
# Installs what `deno task test:qemu` needs from Debian: QEMU 7.2 (qemu-system-x86, TCG) and cpio
# (to write the guest's initramfs). The guest's kernel and busybox are NOT installed: the test
# fetches them with `apt-get download` into ~/.cache/virtq-lab/guest (see README, "Live QEMU").
set -euo pipefail
if command -v qemu-system-x86_64 >/dev/null 2>&1 && command -v cpio >/dev/null 2>&1 &&
  apt-cache show linux-image-cloud-amd64 >/dev/null 2>&1; then
  echo "install-qemu: $(qemu-system-x86_64 --version | head -1); cpio present"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
# Another apt/dpkg may hold the lock for a while on a shared machine: wait up to 10 minutes.
apt-get -o DPkg::Lock::Timeout=600 update -qq
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends qemu-system-x86 cpio
echo "install-qemu: $(qemu-system-x86_64 --version | head -1)"
