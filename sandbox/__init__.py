"""carbon254.mlflow sandbox: local stand-ins for the services the collection talks to (a test double).

Not part of the built collection (galaxy.yml build_ignore). See sandbox/README.md.
"""

from .config import SandboxConfig
from .core import Sandbox, load_facts
from .procs import SandboxError

__all__ = ["Sandbox", "SandboxConfig", "SandboxError", "load_facts"]
