# -*- coding: utf-8 -*-
# Copyright: dpu.offload contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters: how the sshfs transport's mounting side reaches its peer's SFTP endpoint."""

from __future__ import annotations

import posixpath

from ansible.errors import AnsibleFilterError

from ansible_collections.dpu.offload.plugins.filter.offload_pair import url_host

# The options the filter adds itself, from the key directory and the port:
# given again in the user's list, sshfs would take one and drop the other.
MANAGED = ('identityfile', 'userknownhostsfile', 'port')
SSH_DEFAULT_PORT = 22


def _port(port):
    try:
        number = int(str(port))
    except ValueError:
        number = 0
    if not 0 < number < 65536:
        raise AnsibleFilterError('the SFTP port must be a TCP port (1-65535), got %r' % (port,))
    return number


def _address(address):
    address = '' if address is None else str(address).strip()
    if not address or any(c in address for c in ' ,@/[]'):
        raise AnsibleFilterError('the peer address must be a plain host name or IP address, got %r' % (address,))
    return address


def sshfs_mount(peer_address, key_dir, port, options=None, user='root'):
    """Return the source (user@host) and the option string of every sshfs mount of the peer's
    endpoint, with the paths of this side's key and of the peer's pinned host key."""
    address = _address(peer_address)
    key_dir = str(key_dir or '')
    if not key_dir.startswith('/'):
        raise AnsibleFilterError('the sshfs key directory must be an absolute path, got %r' % (key_dir,))
    key_dir = posixpath.normpath(key_dir)
    user = str(user or '')
    if not user or any(c in user for c in ' ,@:/'):
        raise AnsibleFilterError('the sshfs user must be a plain user name, got %r' % (user,))
    if options is None:
        options = []
    if isinstance(options, str) or not isinstance(options, (list, tuple)):
        raise AnsibleFilterError('the sshfs options must be a list of strings, got %r' % (options,))
    for option in options:
        if not isinstance(option, str) or not option or ',' in option:
            raise AnsibleFilterError('each sshfs option must be one non-empty option without commas, got %r' % (option,))
        if option.split('=', 1)[0].strip().lower() in MANAGED:
            raise AnsibleFilterError('%r is set from the key directory and the port; leave it out of the options' % (option,))
    identity = posixpath.join(key_dir, 'id_ed25519')
    known_hosts = posixpath.join(key_dir, 'known_hosts')
    managed = ['IdentityFile=' + identity, 'UserKnownHostsFile=' + known_hosts, 'port=%d' % _port(port)]
    return {
        'source': '%s@%s' % (user, url_host(address)),
        'opts': ','.join(list(options) + managed),
        'identity': identity,
        'known_hosts': known_hosts,
    }


def sshfs_known_host(public_key, peer_address, port):
    """Return the known_hosts line that pins public_key (the text of the endpoint's .pub file)
    for the peer's endpoint, or '' when there is no key yet."""
    address = _address(peer_address)
    number = _port(port)
    fields = str(public_key or '').split()
    if not fields:
        # Only check mode on a pair whose endpoint is still to be made gets here.
        return ''
    if len(fields) < 2 or not fields[0].startswith(('ssh-', 'ecdsa-', 'sk-')):
        raise AnsibleFilterError('not an OpenSSH public key: %r' % (public_key,))
    # ssh looks a host up by its bare name on port 22, as [name]:port on any other.
    pattern = address if number == SSH_DEFAULT_PORT else '[%s]:%d' % (address, number)
    return '%s %s %s\n' % (pattern, fields[0], fields[1])


class FilterModule:
    """The sshfs transport's mount source, options and host key pin."""

    def filters(self):
        return {'sshfs_mount': sshfs_mount, 'sshfs_known_host': sshfs_known_host}
