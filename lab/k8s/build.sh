#!/usr/bin/env bash
# Kubernetes' own programs for the lab, built from their released Go modules
# at the versions pinned in lab/k8s/*/go.mod and go.sum:
#   kubelet, kube-apiserver, kube-controller-manager, kubectl (k8s.io/kubernetes), etcd (its server
#   module), crictl and critest (sigs.k8s.io/cri-tools).
# The binaries are kept in a cache outside the checkout, named after a hash
# of everything that decides them (the pins, this script, the Go version),
# so a second run, a fresh clone on the same machine or CI costs nothing;
# .build/k8s links to it. A build that fails leaves nothing that looks done.
#   lab/k8s/build.sh            build what is missing, print the directory
#   lab/k8s/build.sh key        print the cache key only
# Settings: DPU_OFFLOAD_CACHE (default ~/.cache/dpu-offload), GO (default go).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
go=${GO:-go}
cache_root=${DPU_OFFLOAD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dpu-offload}/k8s
log() { printf 'k8s-build: %s\n' "$*" >&2; }

command -v "$go" >/dev/null 2>&1 || { log "no Go toolchain ($go): install Go 1.24 or newer"; exit 1; }

key() {
  {
    "$go" version
    cd "$here" && cat build.sh kubernetes/go.mod kubernetes/go.sum cri-tools/go.mod cri-tools/go.sum \
      cri-tools/deps.go etcd/go.mod etcd/go.sum etcd/main.go
  } | sha256sum | cut -c1-16
}

if [ "${1:-}" = key ]; then key; exit 0; fi

dir="$cache_root/$(key)"
if [ ! -f "$dir/.complete" ]; then
  tmp="$dir.tmp.$$"
  trap 'rm -rf "$tmp"' EXIT
  rm -rf "$tmp" && mkdir -p "$tmp"
  # go.sum pins every module; nothing is resolved anew.
  export GOFLAGS="-mod=readonly -trimpath" CGO_ENABLED=0
  started=$SECONDS
  log "building into $dir (once for these pins; about 10 minutes cold on 2 cores)"
  cd "$here/kubernetes"
  version=$("$go" list -m -f '{{.Version}}' k8s.io/kubernetes)
  minor=$(echo "$version" | cut -d. -f2)
  # What kubelet and kube-apiserver report (kubectl version, the node's kubeletVersion).
  ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags="$ldflags -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  done
  for program in kubelet kube-apiserver kube-controller-manager kubectl; do
    "$go" build -ldflags "$ldflags" -o "$tmp/$program" "k8s.io/kubernetes/cmd/$program"
    log "$program $version built ($((SECONDS - started)) s)"
  done
  cd "$here/cri-tools"
  version=$("$go" list -m -f '{{.Version}}' sigs.k8s.io/cri-tools)
  ldflags="-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$version"
  "$go" build -ldflags "$ldflags" -o "$tmp/crictl" sigs.k8s.io/cri-tools/cmd/crictl
  # critest is cri-tools' test binary.
  "$go" test -c -ldflags "$ldflags" -o "$tmp/critest" sigs.k8s.io/cri-tools/cmd/critest
  log "crictl and critest $version built ($((SECONDS - started)) s)"
  cd "$here/etcd"
  "$go" build -ldflags "-s -w" -o "$tmp/etcd" .
  log "etcd $("$go" list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3) built ($((SECONDS - started)) s)"
  touch "$tmp/.complete"
  rm -rf "$dir" && mv "$tmp" "$dir"
  trap - EXIT
fi
mkdir -p "$repo/.build"
ln -sfn "$dir" "$repo/.build/k8s"
echo "$dir"
