#!/usr/bin/env bash
# ansible-test bootstraps pip in its sanity virtualenvs with a get-pip script it
# downloads from a host that is unreachable offline. Seed its cache with a
# small stand-in that uses the interpreter's own ensurepip, then installs the
# pinned packages from the configured package index.
set -euo pipefail
py=${1:?usage: $0 PYTHON}
src=$("$py" -c 'import ansible_test, os; print(os.path.dirname(ansible_test.__file__))') ||
  { echo "$py has no ansible_test (ansible-core): nothing to seed" >&2; exit 1; }
ver=$(sed -n "s/^ *pip='\([0-9.]*\)',.*/\1/p" "$src/_internal/python_requirements.py" | head -n1)
[ -n "$ver" ] || { echo "cannot find ansible-test's pip version in $src" >&2; exit 1; }
cache="$HOME/.ansible/test/cache/get_pip_${ver//./_}.py"
mkdir -p "$(dirname "$cache")"
cat > "$cache" <<'PY'
"""Offline stand-in for get-pip.py, written by dpu.offload's tools/ansible-test-pip-seed.sh."""
import subprocess
import sys

GET_PIP_ONLY = {'--no-setuptools', '--no-wheel'}
subprocess.check_call([sys.executable, '-m', 'ensurepip', '--default-pip'], stdout=subprocess.DEVNULL)
args = [a for a in sys.argv[1:] if a not in GET_PIP_ONLY]
sys.exit(subprocess.call([sys.executable, '-m', 'pip', 'install'] + args))
PY
echo "seeded $cache"
