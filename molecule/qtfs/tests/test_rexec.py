"""rexec both ways between the guests (molecule/patched covers the rest of
its security: certificates, the allowlist's corners, the audit trail)."""
from conftest import loaded_modules, rexec


def test_the_dpu_loads_a_module_on_the_host_through_rexec(hostnode, dpu):
    # A real kernel here: the module lands in the HOST's kernel, not the DPU's.
    module = 'dummy'
    hostnode.run('rmmod %s' % module)
    dpu.run('rmmod %s' % module)
    try:
        result = rexec(dpu, '/usr/sbin/modprobe %s' % module)
        assert result.rc == 0, result.stderr
        assert module in loaded_modules(hostnode)
        assert module not in loaded_modules(dpu)
    finally:
        hostnode.run('rmmod %s' % module)


def test_the_host_reaches_the_dpus_server_and_is_allowed_no_shell(hostnode):
    # 126 comes from the DPU's server, after TLS and the peer check.
    result = rexec(hostnode, '/bin/sh -c true')
    assert result.rc == 126, result.stderr


def test_a_command_outside_the_allowlist_gets_126(dpu):
    result = rexec(dpu, '/bin/cat /etc/shadow')
    assert result.rc == 126 and 'allowlist' in result.stderr
