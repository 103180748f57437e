#!/usr/bin/env bash
# Install the MLflow server that the sandbox kubelet runs for the collection's MLflow image
# (sandbox/images.json maps the image to it). Pods run as non-root users, so it lives outside the checkout
# (which may sit in a private home) under /opt, built on Debian's python3.11, readable by every user.
# Idempotent: reinstalls only when images/mlflow/requirements.txt changes.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
req="$root/images/mlflow/requirements.txt"
prefix=${SANDBOX_MLFLOW_PREFIX:-/opt/carbon254-sandbox/mlflow}
stamp="$prefix/.installed-$(sha256sum "$req" | cut -c1-16)"
[ -f "$stamp" ] && exit 0
if [ "$(id -u)" -ne 0 ] && [ ! -w "$(dirname "$prefix")" ]; then
  echo "need root to install the sandbox MLflow under $prefix (or set SANDBOX_MLFLOW_PREFIX)" >&2
  exit 1
fi
echo "installing the sandbox MLflow server into $prefix"
mkdir -p "$(dirname "$prefix")"
/usr/bin/python3.11 -m venv --clear "$prefix"
"$prefix/bin/pip" install --quiet --disable-pip-version-check -r "$req"
chmod -R a+rX "$prefix"
touch "$stamp"
