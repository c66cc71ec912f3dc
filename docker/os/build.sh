#!/usr/bin/env bash
# The OS task's sandbox image: a Debian root filesystem made by debootstrap with the tools of
# AgentBench's `local-os/default` image (python3, pip, git, vim, curl, wget, unzip, zip, tree),
# used as a folder by the bwrap backend (root=...) and imported as a Docker image (nothing is
# pulled from Docker Hub). Needs root and the Debian mirror; about 2-4 minutes.
#
#   docker/os/build.sh [ROOTFS_DIR]        # default: $AGENT_GYM_OS_ROOTFS or ~/.cache/agent-gym/os-rootfs
#   IMAGE=agent-gym/os:latest DOCKER_HOST=unix:///path/docker.sock docker/os/build.sh
#
# The Docker step runs only when a daemon answers (skip it with NO_DOCKER=1).
set -euo pipefail
ROOTFS=${1:-${AGENT_GYM_OS_ROOTFS:-$HOME/.cache/agent-gym/os-rootfs}}
IMAGE=${IMAGE:-agent-gym/os:latest}
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
PACKAGES=python3,python3-pip,git,vim,curl,wget,unzip,zip,tree,procps,ca-certificates

if [ ! -x "$ROOTFS/bin/bash" ]; then
  command -v debootstrap >/dev/null || { echo "install debootstrap (apt-get install debootstrap)" >&2; exit 1; }
  rm -rf "$ROOTFS.part"
  mkdir -p "$(dirname "$ROOTFS")"
  debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOTFS.part" "$MIRROR"
  # like the ubuntu image: root's shell prints AgentBench's prompt (xterm title, user@host:dir#)
  cp "$ROOTFS.part/etc/skel/.bashrc" "$ROOTFS.part/root/.bashrc"
  chroot "$ROOTFS.part" apt-get clean
  rm -rf "$ROOTFS.part"/var/lib/apt/lists/* "$ROOTFS.part"/var/cache/apt/*.bin
  mv "$ROOTFS.part" "$ROOTFS"
fi
echo "rootfs: $ROOTFS ($(du -sh "$ROOTFS" | cut -f1))"

if [ -z "${NO_DOCKER:-}" ] && docker version >/dev/null 2>&1; then
  tar -C "$ROOTFS" --numeric-owner -c . | docker import -c 'CMD ["bash"]' -c 'WORKDIR /' \
    -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' - "$IMAGE" >/dev/null
  echo "docker image: $IMAGE"
fi
