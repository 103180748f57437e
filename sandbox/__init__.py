"""carbon254.mlflow's sandbox: real PostgreSQL, S3 (SeaweedFS) and an upstream Kubernetes on 127.0.0.1, for the tests
and `make demo`.

Not part of the built collection (galaxy.yml build_ignore). See sandbox/README.md.
"""

from .config import SandboxConfig
from .core import Sandbox, load_facts
from .procs import SandboxError

__all__ = ["Sandbox", "SandboxConfig", "SandboxError", "load_facts"]
