"""Offline stand-in for the get-pip bootstrap script that ansible-test downloads for its sanity virtualenvs.

ansible-test creates each sanity venv without pip and fetches `get-pip-<version>.py` from a host these machines
cannot reach. This script takes its place in ansible-test's cache: it installs the pip bundled with Python
(ensurepip), then lets that pip install the exact packages ansible-test asked for (e.g. pip==24.2) from PyPI.
Only get-pip's own flags are dropped; everything else is passed to `pip install` unchanged.
"""

import ensurepip
import os
import subprocess
import sys

GET_PIP_ONLY_FLAGS = {"--no-setuptools", "--no-wheel", "--no-pip"}

# ensurepip points PIP_CONFIG_FILE at /dev/null for its own run; the install that follows must see the
# machine's pip configuration (index, CA bundle) again.
env = os.environ.copy()
ensurepip.bootstrap(upgrade=False)
args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY_FLAGS]
raise SystemExit(subprocess.call([sys.executable, "-m", "pip", "install", *args], env=env))
