#!/usr/bin/env bash
# ansible-test sanity on exactly what ships: build the collection tarball (galaxy.yml build_ignore applies),
# unpack it as ansible_collections/carbon254/mlflow in a temporary tree and run the tests there.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/.venv/bin"
# ansible-test runs from a virtualenv of its own holding only ansible-core (same version as .venv), because
# --requirements installs the sanity tools' pins into the environment it runs from.
tbin="$root/.cache/ansible-test-venv/bin"
if [ ! -x "$tbin/ansible-test" ]; then
  python3.11 -m venv "$root/.cache/ansible-test-venv"
  core=$(grep -E '^ansible-core==' "$root/constraints.txt")
  "$tbin/pip" install --quiet --disable-pip-version-check "$core"
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$bin/ansible-galaxy" collection build "$root" --output-path "$work" >/dev/null
dest="$work/ansible_collections/carbon254/mlflow"
mkdir -p "$dest"
tar -xzf "$work"/carbon254-mlflow-*.tar.gz -C "$dest"
# The ignore file is not shipped (tests/ is in build_ignore) but ansible-test reads it from the tree.
mkdir -p "$dest/tests/sanity"
cp "$root"/tests/sanity/ignore-*.txt "$dest/tests/sanity/"
cd "$dest"
# ansible-test wants the tree to be a git repository or nothing at all; a fresh one keeps file listing exact.
git init -q . && git add -A >/dev/null
# ansible-test keeps each test's pinned tools (pylint, yamllint, …) in its own virtualenvs under ~/.ansible/test,
# installed from PyPI once and cached. It bootstraps pip there with a script from a host we cannot reach;
# put our offline equivalent where it looks first (see the script's docstring).
pip_version=$("$tbin/python" -c 'from ansible_test._internal.python_requirements import get_venv_packages as g; import types; print(g(types.SimpleNamespace(version="3.11"))["pip"])')
mkdir -p ~/.ansible/test/cache
install -m 0644 "$root/scripts/ansible-test-get-pip.py" ~/.ansible/test/cache/"get_pip_${pip_version//./_}.py"
"$tbin/ansible-test" sanity --requirements --python 3.11 --color no "$@"
