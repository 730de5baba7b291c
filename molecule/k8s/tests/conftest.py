"""The lab's nodes (molecule/default's conftest, loaded under another name) and kubectl on the controller."""
import importlib.util
import json
import os
import subprocess
import sys
import time

import pytest

_DEFAULT = os.path.join(os.path.dirname(__file__), '..', '..', 'default', 'tests')
sys.path.insert(0, _DEFAULT)
_SPEC = importlib.util.spec_from_file_location('lab_conftest', os.path.join(_DEFAULT, 'conftest.py'))
lab = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(lab)
hostnode = lab.hostnode
dpu = lab.dpu
pytest_runtest_makereport = lab.pytest_runtest_makereport
processes = lab.processes

BUILD = os.environ.get('DPU_OFFLOAD_BUILD') or os.path.join(os.path.dirname(__file__), '..', '..', '..', '.build')
KUBECTL = [os.path.join(BUILD, 'k8s', 'kubectl'), '--kubeconfig', os.path.join(BUILD, 'k8s-lab', 'admin.kubeconfig')]
NODE = os.environ.get('LAB_HOST', 'lab-host')


def kubectl(*args, check=True, stdin=None, timeout=120):
    done = subprocess.run(KUBECTL + list(args), input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise AssertionError('kubectl %s: %s' % (' '.join(args), done.stderr))
    return done


def pod(name, namespace='default'):
    return json.loads(kubectl('get', 'pod', name, '-n', namespace, '-o', 'json').stdout)


def wait(predicate, timeout=120.0, interval=1.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if predicate():
                return True
        except (AssertionError, KeyError, IndexError, ValueError):
            pass
        time.sleep(interval)
    return predicate()


@pytest.fixture(scope='session')
def k8s():
    assert wait(lambda: 'True' in kubectl('get', 'node', NODE, '-o',
                                          'jsonpath={.status.conditions[?(@.type=="Ready")].status}').stdout, 180)
    return kubectl
