# -*- coding: utf-8 -*-
# Copyright: dpu.offload contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Write a one-layer OCI image archive of a static busybox, without a registry.

    python3 oci_image.py OUTPUT.tar [REFERENCE] [BUSYBOX] [ENTRYPOINT-JSON]

The layer holds bin/busybox and one symlink per applet; the archive
(oci-layout, index.json, blobs) is what `ctr image import` reads. The same
inputs give the same bytes (no timestamps), so an image's digest is stable.
The role builds CRI's sandbox (pause) image with it; the lab its test image.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import platform
import sys
import tarfile

# OCI's names of the machine's architecture (uname -m).
ARCHITECTURES = {'x86_64': 'amd64', 'aarch64': 'arm64', 'riscv64': 'riscv64', 'ppc64le': 'ppc64le', 's390x': 's390x'}
APPLETS = ('sh', 'sleep', 'cat', 'echo', 'true', 'false', 'ls', 'ps', 'id', 'hostname', 'wc', 'tr', 'head')


def _blob(tar, data):
    digest = hashlib.sha256(data).hexdigest()
    info = tarfile.TarInfo('blobs/sha256/' + digest)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))
    return 'sha256:' + digest


def _layer(busybox):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode='w', format=tarfile.PAX_FORMAT) as layer:
        for name in ('bin', 'tmp', 'proc', 'sys', 'dev', 'etc'):
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if name == 'tmp' else 0o755
            layer.addfile(info)
        with open(busybox, 'rb') as handle:
            data = handle.read()
        info = tarfile.TarInfo('bin/busybox')
        info.size = len(data)
        info.mode = 0o755
        layer.addfile(info, io.BytesIO(data))
        for applet in APPLETS:
            info = tarfile.TarInfo('bin/' + applet)
            info.type = tarfile.SYMTYPE
            info.linkname = 'busybox'
            layer.addfile(info)
    diff = raw.getvalue()
    return gzip.compress(diff, mtime=0), 'sha256:' + hashlib.sha256(diff).hexdigest()


def main(argv):
    output = argv[1]
    reference = argv[2] if len(argv) > 2 else 'localhost/dpu-offload/busybox:latest'
    busybox = argv[3] if len(argv) > 3 else '/bin/busybox'
    entrypoint = json.loads(argv[4]) if len(argv) > 4 else None
    layer, diff_id = _layer(busybox)
    image_config = {'Env': ['PATH=/bin'], 'Cmd': ['/bin/sh'], 'WorkingDir': '/'}
    if entrypoint:
        image_config = {'Env': ['PATH=/bin'], 'Entrypoint': entrypoint, 'WorkingDir': '/'}
    config = json.dumps({
        'architecture': ARCHITECTURES.get(platform.machine(), platform.machine()), 'os': 'linux',
        'config': image_config,
        'rootfs': {'type': 'layers', 'diff_ids': [diff_id]},
    }, sort_keys=True).encode()
    with tarfile.open(output, 'w') as tar:
        layer_digest = _blob(tar, layer)
        config_digest = _blob(tar, config)
        manifest = json.dumps({
            'schemaVersion': 2,
            'mediaType': 'application/vnd.oci.image.manifest.v1+json',
            'config': {'mediaType': 'application/vnd.oci.image.config.v1+json',
                       'digest': config_digest, 'size': len(config)},
            'layers': [{'mediaType': 'application/vnd.oci.image.layer.v1.tar+gzip',
                        'digest': layer_digest, 'size': len(layer)}],
        }, sort_keys=True).encode()
        manifest_digest = _blob(tar, manifest)
        index = json.dumps({
            'schemaVersion': 2,
            'manifests': [{'mediaType': 'application/vnd.oci.image.manifest.v1+json',
                           'digest': manifest_digest, 'size': len(manifest),
                           'annotations': {'org.opencontainers.image.ref.name': reference}}],
        }, sort_keys=True).encode()
        for name, data in (('oci-layout', b'{"imageLayoutVersion": "1.0.0"}'), ('index.json', index)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
