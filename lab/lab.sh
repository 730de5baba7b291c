#!/usr/bin/env bash
# The lab's engine and base image: makes sure a Docker engine answers and the
# offline-built base image exists, then prints the image reference.
#   lab/lab.sh engine   install (Debian docker.io) and start dockerd if needed
#   lab/lab.sh image    engine + build the base image once, print its name
#   lab/lab.sh rmi      remove the lab's base images (only those it built)
# For tests (tests/lab/test_lab_sh.py) and unusual machines:
#   LAB_TMPDIR        where the rootfs tree is built (default /var/tmp)
#   LAB_DOCKERD_LOG   dockerd's log when it is started here (default /var/log/dpu-offload-dockerd.log)
#   LAB_ENGINE_WAIT   seconds to wait for a started engine to answer (default 60)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
settings="$here/settings.yml"
setting() { sed -n "s/^$1: *//p" "$settings"; }
repo=$(setting lab_image_repo)
label=$(setting lab_label)
log() { printf 'lab: %s\n' "$*" >&2; }
dockerd_log=${LAB_DOCKERD_LOG:-/var/log/dpu-offload-dockerd.log}
engine_wait=${LAB_ENGINE_WAIT:-60}

apt_install() {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2 || {
    apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2
  }
}

engine() {
  docker info >/dev/null 2>&1 && return 0
  if ! command -v dockerd >/dev/null 2>&1; then
    log "no Docker engine: installing Debian's docker.io"
    apt-get update -q >&2
    apt_install docker.io
  fi
  if [ -d /run/systemd/system ]; then
    systemctl start docker >&2
  else
    log "starting dockerd (log: $dockerd_log)"
    setsid nohup dockerd >"$dockerd_log" 2>&1 < /dev/null &
  fi
  for _ in $(seq "$engine_wait"); do
    docker info >/dev/null 2>&1 && return 0
    sleep 1
  done
  if [ -d /run/systemd/system ]; then
    log "the Docker engine did not answer within $engine_wait s; see journalctl -u docker"
  else
    log "dockerd did not answer within $engine_wait s; see $dockerd_log"
  fi
  exit 1
}

packages() { grep -v -e '^#' -e '^$' "$here/image-packages.txt" | paste -sd, -; }

mirror() {
  local m
  m=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | sed -n 's/^URIs: *\([^ ]*debian\/\{0,1\}\)$/\1/p' | head -n1)
  [ -n "$m" ] || m=$(sed -n 's/^deb \(\[[^]]*\] \)\{0,1\}\(http[^ ]*\) bookworm .*/\2/p' /etc/apt/sources.list 2>/dev/null | head -n1)
  echo "${m:-http://deb.debian.org/debian}"
}

# debootstrap mounts proc and sys inside the tree; a failed run can leave
# them there, so unmount before deleting and never cross into them.
cleanup_rootfs() {
  awk -v d="$1/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r | xargs -r umount -l
  rm -rf --one-file-system "$1"
}

image_ref() { echo "$repo:$(sha256sum "$here/image-packages.txt" | cut -c1-12)"; }

image() {
  engine
  local ref
  ref=$(image_ref)
  if docker image inspect "$ref" >/dev/null 2>&1; then
    echo "$ref"
    return 0
  fi
  command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
  # A global, not a local: the EXIT trap runs after image() has returned,
  # when its locals are gone (and set -u makes an unset name fatal).
  rootfs_dir=$(mktemp -d "${LAB_TMPDIR:-/var/tmp}/dpu-offload-rootfs.XXXXXX")
  trap 'cleanup_rootfs "$rootfs_dir"' EXIT
  local dir=$rootfs_dir
  log "building $ref with debootstrap from $(mirror) (a few minutes, once)"
  debootstrap --variant=minbase --include="$(packages)" bookworm "$dir" "$(mirror)" >&2
  # Services the roles manage are off until a role turns them on.
  rm -f "$dir"/etc/systemd/system/multi-user.target.wants/ssh.service "$dir"/etc/systemd/system/sshd.service
  rm -f "$dir"/etc/ssh/ssh_host_*
  tar -C "$dir" -c . | docker import -c 'CMD ["/lib/systemd/systemd"]' \
    -c "LABEL $label=base" - "$ref" >&2
  echo "$ref"
}

rmi() {
  docker image ls -q --filter "label=$label=base" | sort -u | xargs -r docker image rm >&2
}

case "${1:-}" in
  engine) engine ;;
  image) image ;;
  image-ref) image_ref ;;
  rmi) engine; rmi ;;
  *) echo "usage: $0 engine|image|image-ref|rmi" >&2; exit 2 ;;
esac
