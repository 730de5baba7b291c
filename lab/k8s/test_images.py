# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The images critest pulls, built offline as OCI archives for the lab's registry.

The lab reaches no registry on the internet: critest runs with
--registry-prefix REGISTRY, which turns registry.k8s.io/e2e-test-images/X
into REGISTRY/e2e-test-images/X and gcr.io/k8s-staging-cri-tools/X into
REGISTRY/k8s-staging-cri-tools/X. Each image here has what critest's specs
ask of it (cri-tools' images/ Dockerfiles and pkg/validate): a static
busybox with every applet, a user database with www-data (33), default-user
(1000) and group-defined-in-image (50000), the image's USER, and for the web
servers busybox's httpd on the port critest dials, writing the pid file it
reads. One image cannot be made: test-image-digest names a fixed digest.

  test_images.py BUSYBOX NNP OUTDIR REGISTRY

writes OUTDIR/NAME.tar (an OCI layout, with every reference of that image)
and prints one line per image: the archive and its references. NNP is a
static program, set-uid root in the image, that prints its effective uid
(nonewprivs). Python 3.9+ standard library; the same bytes every time.
"""

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile

E2E = 'e2e-test-images/'
CRI = 'k8s-staging-cri-tools/'
PASSWD = ('root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www-data:/var/www:/bin/sh\n'
          'default-user:x:1000:1000::/home/default-user:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n')
GROUP = ('root:x:0:\nwww-data:x:33:\nusers:x:100:\ndefault-user:x:1000:\n'
         'group-defined-in-image:x:50000:default-user\nnogroup:x:65534:\n')


def web(port, pid_file=None, banner=None):
    """busybox's httpd in the foreground on port; its pid in pid_file (the shell execs it)."""
    steps = []
    if banner:
        steps.append('echo %s' % banner)
    if pid_file:
        steps.append('echo $$ > %s' % pid_file)
    steps.append('exec httpd -f -v -p %d -h /www' % port)
    return {'Cmd': ['sh', '-c', '; '.join(steps)], 'ExposedPorts': {'%d/tcp' % port: {}}}


# name -> (references, image config, extra files {path: (mode, bytes)}); a marker file makes each image its own.
IMAGES = {
    'busybox': ([E2E + 'busybox:1.29-2'], {'Cmd': ['sh']}, {}),
    'nginx': ([E2E + 'nginx:1.14-2'], web(80, '/var/run/nginx.pid'), {}),
    'httpd': ([E2E + 'httpd:2.4.39-4'], web(80, banner='httpd: serving /www'), {}),
    'nonewprivs': ([E2E + 'nonewprivs:1.3'], {'Entrypoint': ['/usr/local/bin/nnp']}, {'usr/local/bin/nnp': 'NNP'}),
    'hostnet-nginx': ([CRI + 'hostnet-nginx-amd64:latest'], web(12003, '/var/run/nginx.pid'), {}),
    'user-uid': ([CRI + 'test-image-user-uid:latest'], {'Cmd': ['sh'], 'User': '1002'}, {}),
    'user-username': ([CRI + 'test-image-user-username:latest'], {'Cmd': ['sh'], 'User': 'www-data'}, {}),
    'user-uid-group': ([CRI + 'test-image-user-uid-group:latest'], {'Cmd': ['sh'], 'User': '1003:users'}, {}),
    'user-username-group': ([CRI + 'test-image-user-username-group:latest'], {'Cmd': ['sh'], 'User': 'www-data:users'}, {}),
    'predefined-group': ([CRI + 'test-image-predefined-group:latest'], {'Cmd': ['sh'], 'User': '1000'}, {}),
    'latest': ([CRI + 'test-image-latest:latest'], {'Cmd': ['sh']}, {}),
    'tag-test': ([CRI + 'test-image-tag:test'], {'Cmd': ['sh']}, {}),
    'tag-all': ([CRI + 'test-image-tag:all'], {'Cmd': ['sh']}, {}),
    'image-1': ([CRI + 'test-image-1:latest'], {'Cmd': ['sh']}, {}),
    'image-2': ([CRI + 'test-image-2:latest'], {'Cmd': ['sh']}, {}),
    'image-3': ([CRI + 'test-image-3:latest'], {'Cmd': ['sh']}, {}),
    'tags': ([CRI + 'test-image-tags:1', CRI + 'test-image-tags:2', CRI + 'test-image-tags:3'], {'Cmd': ['sh']}, {}),
}


def applets(busybox):
    out = subprocess.run([busybox, '--list'], capture_output=True, text=True, check=True).stdout
    return sorted(set(name for name in out.split() if name and '/' not in name))


def _add(tar, path, data=None, mode=0o644, kind=tarfile.REGTYPE, link=''):
    info = tarfile.TarInfo(path)
    info.mode, info.type, info.linkname, info.mtime = mode, kind, link, 0
    if data is not None:
        info.size = len(data)
    tar.addfile(info, io.BytesIO(data) if data is not None else None)


def layer(busybox_bytes, names, name, extra, nnp_bytes):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode='w', format=tarfile.PAX_FORMAT) as tar:
        for directory, mode in (('bin', 0o755), ('etc', 0o755), ('tmp', 0o1777), ('var', 0o755), ('var/run', 0o755),
                                ('www', 0o755), ('proc', 0o755), ('sys', 0o755), ('dev', 0o755),
                                ('usr', 0o755), ('usr/local', 0o755), ('usr/local/bin', 0o755)):
            _add(tar, directory, mode=mode, kind=tarfile.DIRTYPE)
        _add(tar, 'bin/busybox', busybox_bytes, 0o755)
        for applet in names:
            if applet != 'busybox':
                _add(tar, 'bin/' + applet, kind=tarfile.SYMTYPE, link='busybox')
        _add(tar, 'etc/passwd', PASSWD.encode())
        _add(tar, 'etc/group', GROUP.encode())
        _add(tar, 'www/index.html', b'<html><body>dpu.offload lab test image</body></html>\n')
        _add(tar, 'etc/dpu-offload-test-image', ('%s\n' % name).encode())
        for path, what in sorted(extra.items()):
            if what == 'NNP':
                _add(tar, path, nnp_bytes, 0o4755)
    diff = raw.getvalue()
    return gzip.compress(diff, mtime=0), 'sha256:' + hashlib.sha256(diff).hexdigest()


def _blob(tar, data):
    digest = hashlib.sha256(data).hexdigest()
    _add(tar, 'blobs/sha256/' + digest, data)
    return 'sha256:' + digest


def archive(path, references, config, layer_data, diff_id):
    image_config = dict({'Env': ['PATH=/usr/local/bin:/bin'], 'WorkingDir': '/'}, **config)
    config_bytes = json.dumps({'architecture': 'amd64', 'os': 'linux', 'config': image_config,
                               'rootfs': {'type': 'layers', 'diff_ids': [diff_id]}}, sort_keys=True).encode()
    with tarfile.open(path, 'w') as tar:
        layer_digest = _blob(tar, layer_data)
        config_digest = _blob(tar, config_bytes)
        manifest = json.dumps({
            'schemaVersion': 2, 'mediaType': 'application/vnd.oci.image.manifest.v1+json',
            'config': {'mediaType': 'application/vnd.oci.image.config.v1+json', 'digest': config_digest,
                       'size': len(config_bytes)},
            'layers': [{'mediaType': 'application/vnd.oci.image.layer.v1.tar+gzip', 'digest': layer_digest,
                        'size': len(layer_data)}]}, sort_keys=True).encode()
        manifest_digest = _blob(tar, manifest)
        index = json.dumps({'schemaVersion': 2, 'manifests': [
            {'mediaType': 'application/vnd.oci.image.manifest.v1+json', 'digest': manifest_digest,
             'size': len(manifest), 'annotations': {'org.opencontainers.image.ref.name': reference}}
            for reference in references]}, sort_keys=True).encode()
        _add(tar, 'oci-layout', b'{"imageLayoutVersion": "1.0.0"}')
        _add(tar, 'index.json', index)


def main(argv):
    if len(argv) != 5:
        sys.stderr.write('usage: test_images.py BUSYBOX NNP OUTDIR REGISTRY\n')
        return 2
    busybox, nnp, outdir, registry = argv[1:]
    with open(busybox, 'rb') as handle:
        busybox_bytes = handle.read()
    with open(nnp, 'rb') as handle:
        nnp_bytes = handle.read()
    names = applets(busybox)
    os.makedirs(outdir, exist_ok=True)
    for name, (references, config, extra) in IMAGES.items():
        full = ['%s/%s' % (registry.rstrip('/'), reference) for reference in references]
        data, diff_id = layer(busybox_bytes, names, name, extra, nnp_bytes)
        path = os.path.join(outdir, name + '.tar')
        archive(path, full, config, data, diff_id)
        print('%s %s' % (path, ' '.join(full)))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
