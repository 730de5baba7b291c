#!/bin/sh
# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# A CNI plugin for the stock mode's CRI: a pod with a network namespace of
# its own cannot run yet. CRI would make that namespace on the DPU and wire
# it there, while the pod runs on the HOST (network offload does not exist
# yet). ADD fails with the reason, so RunPodSandbox says why; DEL and CHECK
# succeed, because ADD made nothing, so such a pod can still be removed.
# Pods in the HOST's network (hostNetwork) never call CNI.
# The CNI spec's interface: CNI_COMMAND in the environment, the network's
# configuration on stdin, the result or error as JSON on stdout.

version=0.4.0
case "${CNI_COMMAND:-}" in
ADD)
    cat >/dev/null
    printf '{"cniVersion": "%s", "code": 100, "msg": "%s", "details": "%s"}\n' "$version" \
        "dpu.offload: this pod asks for a network namespace of its own, which needs network offload (not in this version): use hostNetwork" \
        "the pod would run on the HOST in a namespace that CRI made and configured on the DPU"
    exit 1
    ;;
DEL | CHECK | GC | STATUS)
    cat >/dev/null
    exit 0
    ;;
VERSION)
    printf '{"cniVersion": "%s", "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0"]}\n' "$version"
    exit 0
    ;;
*)
    printf '{"cniVersion": "%s", "code": 4, "msg": "unknown CNI_COMMAND %s"}\n' "$version" "${CNI_COMMAND:-(unset)}"
    exit 1
    ;;
esac
