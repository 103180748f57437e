"""The execution environment AWX runs the collection's jobs in (execution-environment.yml), built here.

`build_ee()` makes the collection's tarball (`ansible-galaxy collection build`), the build context (`ansible-builder
create`, which writes the Containerfile and introspects the collections' requirements), then the image with podman as
every sandbox image is built (sandbox.images: private store, runc, explicit ulimits, the host's CA bundle for pip),
on the debootstrap base given as EE_BASE_IMAGE. The image is saved as an OCI archive under SANDBOX_OPT_PREFIX/images,
named by a hash of its inputs, and stays in the private store under its release name and an input-keyed tag: a second
build with the same inputs does nothing. `execution_node_podman()` writes the podman an AWX execution node would run
it with (ansible-runner's process isolation executable).
"""

from __future__ import annotations

import fcntl
import hashlib
import shlex
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from .config import REPO_ROOT
from .images import (
    base_image,
    container_flags,
    podman,
    podman_argv,
    podman_build,
    podman_command,
    podman_namespace,
    save_archive,
)
from .pins import BASE_SCRIPT, IMAGES, OPT, PODMAN_ROOT
from .procs import SandboxError

DEFINITION = REPO_ROOT / "execution-environment.yml"
EE_FILES = REPO_ROOT / "images" / "ee"
TARBALL = EE_FILES / "collections" / "carbon254-mlflow.tar.gz"
KEYED_REPO = "localhost/carbon254/mlflow-ee"
# The cgroup subtree the jobs' containers run under (removed after each job by the AWX tests).
JOB_CGROUP_PARENT = "carbon254-ee-jobs"
RECIPE = "1"
# Images of other inputs kept (archive and store): each change of the collection makes a new one (about 230 MiB
# saved, more in the store), and a day of work left 16 of them; the newest few serve other checkouts (CI's clone).
KEEP = 4


@dataclass(frozen=True)
class ExecutionEnvironment:
    image: str  # the release name AWX's execution environment object points at
    keyed: str  # the same image under a tag naming its inputs
    archive: Path


def image_name() -> str:
    """The image's release name: the first of execution-environment.yml's options.tags."""
    tags = yaml.safe_load(DEFINITION.read_text()).get("options", {}).get("tags") or []
    if not tags:
        raise SandboxError(f"{DEFINITION.name} names no image (options.tags)")
    return str(tags[0])


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def _run(argv: list[str], cwd: Path, timeout: float = 600) -> str:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise SandboxError(f"{' '.join(argv[:4])} ... failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return proc.stdout


def build_collection() -> Path:
    """The collection's tarball at images/ee/collections/carbon254-mlflow.tar.gz (where the definition takes it)."""
    with tempfile.TemporaryDirectory(prefix="ee-collection-") as out:
        _run(
            [_bin("ansible-galaxy"), "collection", "build", "--force", "--output-path", out, str(REPO_ROOT)], REPO_ROOT
        )
        [built] = Path(out).glob("carbon254-mlflow-*.tar.gz")
        TARBALL.parent.mkdir(parents=True, exist_ok=True)
        built.replace(TARBALL)
    return TARBALL


def _collection_content(tarball: Path) -> bytes:
    """What the collection holds (MANIFEST.json and FILES.json: every file's checksum), not when it was packed."""
    with tarfile.open(tarball) as tar:
        parts = []
        for name in ("MANIFEST.json", "FILES.json"):
            member = tar.extractfile(name)
            if member is None:
                raise SandboxError(f"{tarball} has no {name}")
            parts.append(member.read())
    return b"\0".join(parts)


def _inputs_key(tarball: Path) -> str:
    sha = hashlib.sha256(RECIPE.encode())
    builder = _run([_bin("ansible-builder"), "--version"], REPO_ROOT).strip()
    files = [DEFINITION, REPO_ROOT / "constraints.txt", BASE_SCRIPT]
    files += sorted(p for p in EE_FILES.iterdir() if p.is_file())
    for part in [builder.encode(), *(p.name.encode() + b"\0" + p.read_bytes() for p in files)]:
        sha.update(part)
        sha.update(b"\0")
    sha.update(_collection_content(tarball))
    return sha.hexdigest()[:12]


@contextmanager
def _locked() -> Iterator[None]:
    """One EE build at a time on this machine (the test lanes may both ask for it)."""
    IMAGES.mkdir(parents=True, exist_ok=True)
    with open(IMAGES / "ee.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _stored() -> set[str]:
    """The repository:tag names in the private store."""
    return set(podman("images", "--format", "{{.Repository}}:{{.Tag}}").split())


def build_ee(say: Callable[[str], None] = print) -> ExecutionEnvironment:
    """Build the execution environment for the current checkout unless an image of the same inputs exists."""
    with _locked():
        tarball = build_collection()
        key = _inputs_key(tarball)
        name, keyed = image_name(), f"{KEYED_REPO}:{key}"
        archive = IMAGES / f"ee-{key}.tar"
        if keyed not in _stored():
            if archive.exists():
                podman("load", "-q", "-i", str(archive))  # saved under the keyed name
            else:
                started = time.monotonic()
                _build(keyed)
                save_archive(keyed, archive)
                say(f"built image {name} ({archive.stat().st_size / 2**20:.0f} MiB) in "
                    f"{time.monotonic() - started:.0f} s")  # fmt: skip
        podman("tag", keyed, name)
        _prune(archive)
        return ExecutionEnvironment(image=name, keyed=keyed, archive=archive)


def _prune(current: Path) -> None:
    """Remove all but the newest KEEP images of other inputs, archive and store, with the untagged build stages
    made before them (builds run one at a time, under the lock); the current one and its stages stay."""
    others = sorted((a for a in IMAGES.glob("ee-*.tar") if a != current), key=lambda a: a.stat().st_mtime)
    stale = others[: max(len(others) - KEEP, 0)]
    if not stale:
        return
    stored = _stored()
    tags = [f"{KEYED_REPO}:{archive.stem.removeprefix('ee-')}" for archive in stale]
    if present := [tag for tag in tags if tag in stored]:
        podman("rmi", *present)
    podman("image", "prune", "--force", "--filter", f"until={int(stale[-1].stat().st_mtime)}")
    for archive in stale:
        archive.unlink()


def _build(tag: str) -> None:
    """`ansible-builder create` into a fresh context, then podman build on the debootstrap base."""
    with tempfile.TemporaryDirectory(prefix="ee-context-") as context:
        _run([_bin("ansible-builder"), "create", "-f", str(DEFINITION), "-c", context, "-v", "2"], REPO_ROOT)
        podman_build("--build-arg", f"EE_BASE_IMAGE={base_image()}", "-f", f"{context}/Containerfile", "-t", tag,
                     context)  # fmt: skip


def execution_node_podman() -> Path:
    """A `podman` for ansible-runner's process isolation, as an AWX execution node's podman runs job containers:
    the sandbox's private store, and every `run` with container_flags() (runc, ulimits, a cgroup parent of ours).
    ansible-runner 2.4 runs containers only when its executable is exactly `podman`: the AWX tests put a `podman`
    that calls this script first on the worker's PATH (tests/awx_double/execution.py)."""
    path = OPT / "bin" / "podman-execution-node"
    podman = " ".join(shlex.quote(arg) for arg in podman_command())
    flags = " ".join(shlex.quote(arg) for arg in container_flags(JOB_CGROUP_PARENT))
    # podman 4.3 (Debian 12) can lose the race between `run` and the cleanup process that records the exit code
    # ("Waiting for container <id>: getting exit code of container <id> from DB: no such exit code (container in
    # state running)", containers/podman#18860): the job's container then ran to its end but `run` fails. Ask
    # `podman wait` for the exit code instead, as AWX's receptor would see it from a podman without the race.
    run = (
        f"podman=({podman})\n"
        "err=$(mktemp)\n"
        f'"${{podman[@]}}" run {flags} "$@" 2>"$err"\n'
        "rc=$?\n"
        'cat "$err" >&2\n'
        "cid=$(grep -o 'Waiting for container [0-9a-f]\\{64\\}: getting exit code of container [0-9a-f]\\{64\\} "
        "from DB: no such exit code' \"$err\" | grep -o '[0-9a-f]\\{64\\}' | head -n 1)\n"
        'if [ "$rc" -ne 0 ] && [ -n "$cid" ]; then\n'
        '  rc=$("${podman[@]}" wait "$cid") || rc=125\n'
        '  "${podman[@]}" rm --force "$cid" >/dev/null 2>&1\n'
        "fi\n"
        'rm -f "$err"\n'
        'exit "$rc"\n'
    )
    script = (
        "#!/bin/sh\n"
        "# podman as the sandbox's AWX execution node runs job containers (written by sandbox/ee.py)\n"
        f'if [ "${{1:-}}" != run ]; then exec {" ".join(shlex.quote(a) for a in podman_argv())} "$@"; fi\n'
        "shift\n"
        f'exec {" ".join(shlex.quote(a) for a in podman_namespace(run))} "$@"\n'
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != script:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(script)
        tmp.chmod(0o755)
        tmp.replace(path)
    return path


def main() -> int:
    ee = build_ee()
    print(f"{ee.image} ({ee.keyed}): {ee.archive}")
    print(f"podman for ansible-runner: {execution_node_podman()}  (store {PODMAN_ROOT})")
    return 0
