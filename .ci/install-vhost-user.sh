#!/usr/bin/env bash
# Installs the vhost-user back-ends the tests start (CI runs as root on Debian bookworm):
# DPDK testpmd with the vhost PMD (dpdk-dev pulls in dpdk-testpmd's binary /usr/bin/dpdk-testpmd;
# librte-net-vhost23 is the vhost PMD) and qemu-storage-daemon (/usr/bin/qemu-storage-daemon is
# in qemu-system-common on bookworm: `dpkg -S /usr/bin/qemu-storage-daemon`).
set -euo pipefail
if [ -x /usr/bin/dpdk-testpmd ] && [ -x /usr/bin/qemu-storage-daemon ]; then
  echo "install-vhost-user: back-ends already installed"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends qemu-system-common dpdk-dev librte-net-vhost23
