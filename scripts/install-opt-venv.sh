#!/usr/bin/env bash
# Install a pinned Python virtualenv of the sandbox under /opt/carbon254-sandbox/<name>, outside the checkout: the
# MLflow server the sandbox pods run (they run as non-root users, so it must be world-readable and not under a
# private home), the MLflow client the real-client tests use, DataHub's ingestion. Cached across clones: it is
# reinstalled only when the pip arguments or the files they name change.
#   scripts/install-opt-venv.sh NAME PIP-ARGS...     e.g. mlflow -r images/mlflow/requirements.txt
# SANDBOX_OPT_PREFIX moves the parent directory (default /opt/carbon254-sandbox).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
name=$1
shift
prefix="${SANDBOX_OPT_PREFIX:-/opt/carbon254-sandbox}/$name"
# The stamp covers the arguments and the content of every file they name (requirements and constraints).
key=$( { printf '%s\n' "$@"; for arg in "$@"; do [ -f "$root/$arg" ] && cat "$root/$arg"; done; true; } | sha256sum | cut -c1-16)
stamp="$prefix/.installed-$key"
[ -f "$stamp" ] && exit 0
if [ "$(id -u)" -ne 0 ] && [ ! -w "$(dirname "$prefix")" ]; then
  echo "need root to install $prefix (or set SANDBOX_OPT_PREFIX)" >&2
  exit 1
fi
echo "installing $prefix ($*)"
mkdir -p "$(dirname "$prefix")"
/usr/bin/python3.11 -m venv --clear "$prefix"
(cd "$root" && "$prefix/bin/pip" install --quiet --disable-pip-version-check "$@")
chmod -R a+rX "$prefix"
touch "$stamp"
