"""lab/k8s/build.sh's control flow with a stand-in for go: the cold path a fresh machine takes (every
program built into the cache, .build/k8s linked to it), the warm path (nothing built), a change of the
pins (a new cache), a failed build (nothing that looks done) and a machine without Go.

Each test runs a copy of lab/k8s in a temp checkout, so the real cache and .build are never touched.
"""
import os
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROGRAMS = ['crictl', 'critest', 'etcd', 'kube-apiserver', 'kube-controller-manager', 'kubectl', 'kubelet']
# go version | list -m -f {{.Version}} MODULE | build/test -c ... -o OUT PKG: OUT holds PKG and the flags.
GO = r'''#!/bin/sh
echo "go $* GOFLAGS=$GOFLAGS CGO_ENABLED=$CGO_ENABLED" >> "$K8S_TEST_STATE/calls"
case "$1" in
  version) echo "go version go1.99 linux/amd64" ;;
  list) case "$5" in k8s.io/kubernetes) echo v1.34.4 ;; sigs.k8s.io/cri-tools) echo v1.34.0 ;; *) echo v3.6.16 ;; esac ;;
  build|test)
    out=; prev=; for arg; do [ "$prev" = -o ] && out=$arg; prev=$arg; done
    for pkg; do :; done
    [ "$pkg" != "${K8S_TEST_FAIL:-none}" ] || { echo "stand-in go: cannot build $pkg" >&2; exit 1; }
    echo "$pkg $*" > "$out" ;;
  *) echo "stand-in go: unexpected $*" >&2; exit 3 ;;
esac
'''


@pytest.fixture
def checkout(tmp_path):
    repo = tmp_path / 'repo'
    shutil.copytree(ROOT / 'lab' / 'k8s', repo / 'lab' / 'k8s')
    stand_in = tmp_path / 'bin' / 'go'
    stand_in.parent.mkdir()
    stand_in.write_text(GO)
    stand_in.chmod(0o755)
    state = tmp_path / 'state'
    state.mkdir()
    env = dict(os.environ, GO=str(stand_in), K8S_TEST_STATE=str(state), DPU_OFFLOAD_CACHE=str(tmp_path / 'cache'))
    return repo, env, state


def build(repo, env, **extra):
    return subprocess.run(['bash', str(repo / 'lab/k8s/build.sh')], env=dict(env, **extra), capture_output=True,
                          text=True, check=False, timeout=60)


def calls(state):
    path = state / 'calls'
    return path.read_text().splitlines() if path.exists() else []


def test_a_fresh_machine_builds_every_program_pinned_into_the_cache_and_links_it(checkout):
    repo, env, state = checkout
    result = build(repo, env)
    assert result.returncode == 0, result.stderr
    directory = pathlib.Path(result.stdout.strip())
    assert directory.parent == pathlib.Path(env['DPU_OFFLOAD_CACHE']) / 'k8s'
    assert sorted(p.name for p in directory.iterdir() if p.name != '.complete') == PROGRAMS
    assert (directory / '.complete').exists() and os.path.realpath(repo / '.build/k8s') == str(directory)
    builds = [line for line in calls(state) if line.startswith(('go build', 'go test'))]
    assert len(builds) == 7 and all('GOFLAGS=-mod=readonly -trimpath CGO_ENABLED=0' in line for line in builds)
    kubelet = (directory / 'kubelet').read_text()
    assert kubelet.startswith('k8s.io/kubernetes/cmd/kubelet ')
    assert '-X k8s.io/component-base/version.gitVersion=v1.34.4' in kubelet and 'gitMinor=34' in kubelet
    assert (directory / 'critest').read_text().startswith('sigs.k8s.io/cri-tools/cmd/critest test -c ')
    assert 'pkg/version.Version=v1.34.0' in (directory / 'crictl').read_text()


def test_a_second_run_builds_nothing(checkout):
    repo, env, state = checkout
    first = build(repo, env).stdout
    (state / 'calls').unlink()
    (repo / '.build' / 'k8s').unlink()
    again = build(repo, env)
    assert again.returncode == 0 and again.stdout == first
    assert [line for line in calls(state) if ' build ' in line or ' test ' in line] == []
    assert (repo / '.build' / 'k8s').is_symlink()


def test_other_pins_build_into_another_directory(checkout):
    repo, env, dummy = checkout
    first = build(repo, env).stdout
    with open(repo / 'lab/k8s/cri-tools/go.sum', 'a', encoding='utf-8') as handle:
        handle.write('example.com/other v1.0.0 h1:x=\n')
    second = build(repo, env).stdout
    assert second != first and pathlib.Path(first.strip()).exists()


def test_a_failed_build_leaves_nothing_that_looks_done(checkout):
    repo, env, dummy = checkout
    result = build(repo, env, K8S_TEST_FAIL='sigs.k8s.io/cri-tools/cmd/critest')
    assert result.returncode != 0 and 'cannot build sigs.k8s.io/cri-tools/cmd/critest' in result.stderr
    assert list((pathlib.Path(env['DPU_OFFLOAD_CACHE']) / 'k8s').iterdir()) == []
    assert not (repo / '.build' / 'k8s').exists()
    assert build(repo, env).returncode == 0


def test_without_go_it_says_what_to_install(checkout):
    repo, env, dummy = checkout
    result = build(repo, env, GO='/nonexistent/go')
    assert result.returncode != 0 and 'no Go toolchain' in result.stderr and 'install Go' in result.stderr
