"""Container images mapped to local programs: the sandbox pulls nothing.

An image reference resolves to an entry of the image table: the directories put first on the container's PATH
(so `mlflow` or `python` in a command resolves to the local installation), the image's default ENTRYPOINT and
CMD, and the version the local program really is. An image tag that names another version than the local
program does not resolve: the pod fails to pull, as it would with a missing image.

The table is the built-in Python image (for tests), `sandbox/images.json` (the collection's MLflow image, mapped
to the MLflow that `make setup` installs under `SANDBOX_MLFLOW_PREFIX`, default /opt/carbon254-sandbox/mlflow),
and `<state>/kubernetes/images.json` when present. Entries are repositories; the tag must be one of `tags`.
Programs live outside the checkout and use Debian's /usr/bin/python3 where they can, because containers run as
non-root users who may not enter a checkout under a private home directory.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO_TABLE = Path(__file__).resolve().parent.parent / "images.json"
MLFLOW_PREFIX = os.environ.get("SANDBOX_MLFLOW_PREFIX", "/opt/carbon254-sandbox/mlflow")


@dataclass
class Image:
    repository: str
    tags: list[str]
    path: list[str]
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    user: int = 0  # the image's USER (0: root), what runAsNonRoot checks when no runAsUser is set


def default_table() -> list[Image]:
    """Images every sandbox knows: Python (for tests), from Debian's python3 when it is this version."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    system = Path(f"/usr/bin/python{version}")
    python_bin = "/usr/bin" if system.exists() else str(Path(sys.executable).parent)
    return [
        Image("python", [version, f"{version}-slim", "3", "latest"], [python_bin], cmd=["python3"]),
        Image("docker.io/library/python", [version, f"{version}-slim"], [python_bin], cmd=["python3"]),
    ]


class ImageError(LookupError):
    """The image cannot be provided: reported as ErrImagePull / ImagePullBackOff."""


class ImageTable:
    def __init__(self, images: list[Image], extra: Path | None = None) -> None:
        self.images = images
        self.extra = extra
        self._stamp = self._mtime()

    def _mtime(self) -> float | None:
        return self.extra.stat().st_mtime if self.extra is not None and self.extra.exists() else None

    @classmethod
    def load(cls, path: Path | None) -> ImageTable:
        images = default_table()
        for table in (REPO_TABLE, path):
            if table is not None and table.exists():
                text = table.read_text().replace("{mlflow_prefix}", MLFLOW_PREFIX)
                images += [Image(**entry) for entry in json.loads(text)]
        return cls(images, path)

    def _refresh(self) -> None:
        """Re-read `<state>/kubernetes/images.json` when it changed, as a node would see a newly pushed tag."""
        stamp = self._mtime()
        if stamp != self._stamp:
            self.images = ImageTable.load(self.extra).images
            self._stamp = stamp

    def resolve(self, reference: str) -> Image:
        self._refresh()
        repository, tag = split_reference(reference)
        for image in self.images:
            if image.repository == repository and tag in image.tags:
                missing = [p for p in image.path if not Path(p).is_dir()]
                if missing:
                    raise ImageError(
                        f'failed to pull image "{reference}": the sandbox maps it to {missing[0]}, which is not '
                        "installed (run `make setup`)"
                    )
                return image
        known = sorted({f"{i.repository}:{t}" for i in self.images for t in i.tags})
        raise ImageError(
            f'failed to pull image "{reference}": not in the sandbox image table (it pulls nothing); known: '
            + ", ".join(known)
        )


def split_reference(reference: str) -> tuple[str, str]:
    """`repo[:tag][@digest]` → (repo, tag); the tag defaults to `latest`."""
    name = reference.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        repository, tag = name.rsplit(":", 1)
    else:
        repository, tag = name, "latest"
    return repository, tag
