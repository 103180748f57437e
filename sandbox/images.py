"""The container images the sandbox's Kubernetes runs, all built here (no registry is reachable), with podman.

- `localhost/carbon254/pause:1`: the pod sandbox image, our static pause binary `FROM scratch`;
- `localhost/carbon254/testtool:1`: a static test binary for the sandbox's own tests;
- `ghcr.io/carbon254/mlflow:<version>`: the image users deploy, built from images/mlflow/Containerfile unchanged, on a
  base made here with debootstrap (images/python-base/build.sh) given as its PYTHON_IMAGE build argument; the older
  releases the upgrade tests start from (images/mlflow/releases/<version>/) from the same Containerfile, with that
  directory as the build context and their own pinned requirements;
- `localhost/carbon254/prometheus:<release>`: Prometheus built from its Go module, `FROM scratch` at /bin/prometheus,
  for the monitoring tests (Prometheus as a pod, discovering MLflow's pods through the API server as in a real
  cluster);
- `localhost/carbon254/prometheus-operator:<version>` and `localhost/carbon254/prometheus-config-reloader:<version>`:
  the Prometheus Operator and its reloader sidecar, each `FROM scratch` at /bin/<name> as upstream's images have them
  (the operator gives the reloader container that command);
- `localhost/carbon254/kube-state-metrics:<version>`, `FROM scratch`.

Each is saved as an OCI archive under SANDBOX_OPT_PREFIX/images, named by a hash of its inputs, and `up` imports it
into the node's containerd (the monitoring tests' images, ON_DEMAND, only when those tests ask), again whenever the
archive's manifest digest differs from the node's image of that name; a second build finds the archives and does
nothing.

How podman (Debian's 4.3) is run here, and why:
- a store of its own under SANDBOX_OPT_PREFIX/podman (graph root, temporary files), never the machine's shared
  /var/lib/containers, where other users' images of the same names would collide;
- runc (crun cannot handle this VM's hybrid cgroups), ulimits given explicitly (its defaults are refused: no
  CAP_SYS_RESOURCE), the host network for RUN steps (no CNI bridge or iptables rules on the host), RUN containers
  under a cgroup parent of ours that is removed afterwards;
- every podman command as PID 1's child in new PID and mount namespaces (`unshare --pid --fork --kill-child`) with
  its run root and runc's state on a tmpfs there: whatever it starts dies with it, and its overlay mounts vanish,
  even when the build is killed;
- this machine's CA bundle bind-mounted over the image's during RUN steps only: the egress proxy here re-signs TLS,
  so pip in the build needs it; the image keeps Debian's bundle.
"""

from __future__ import annotations

import hashlib
import json
import resource
import shutil
import ssl
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from .build import Artifacts
from .node import remove_cgroup_tree
from .pins import (
    BASE_IMAGE,
    BASE_SCRIPT,
    CONFIG_RELOADER_IMAGE,
    IMAGES,
    KUBE_STATE_METRICS_IMAGE,
    MLFLOW_CONTEXT,
    PAUSE_IMAGE,
    PODMAN_ROOT,
    PROMETHEUS_IMAGE,
    PROMETHEUS_OPERATOR_IMAGE,
    TESTTOOL_IMAGE,
    mlflow_image,
    older_mlflow_images,
)
from .procs import SandboxError

CGROUP_PARENT = "carbon254-image-build"
RECIPE = "1"


def _key(*parts: bytes | str) -> str:
    sha = hashlib.sha256(RECIPE.encode())
    for part in parts:
        sha.update(part.encode() if isinstance(part, str) else part)
        sha.update(b"\0")
    return sha.hexdigest()[:12]


def podman_command() -> list[str]:
    """podman on the sandbox's private store (run it inside podman_namespace(), whose tmpfs is its runroot)."""
    if shutil.which("podman") is None:
        raise SandboxError("podman is missing: `make setup` installs it (Debian package podman)")
    for sub in ("storage", "run", "tmp"):
        (PODMAN_ROOT / sub).mkdir(parents=True, exist_ok=True)
    run, tmp = PODMAN_ROOT / "run", PODMAN_ROOT / "tmp"
    store = ["--root", str(PODMAN_ROOT / "storage"), "--runroot", str(run), "--tmpdir", str(tmp)]
    return ["env", f"TMPDIR={tmp}", "podman", *store, "--storage-driver", "overlay"]


def podman_namespace(script: str = 'exec "$@"') -> list[str]:
    """Own PID and mount namespaces with a fresh tmpfs as podman's runroot, then the shell `script` (arguments
    appended to this list are its "$@")."""
    run = PODMAN_ROOT / "run"
    mount = f"set -e; mount -t tmpfs -o mode=0700 carbon254-podman {run}; mkdir -p {run}/runc; set +e\n"
    return ["unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--kill-child", "--mount-proc",
            "bash", "-c", mount + script, "bash"]  # fmt: skip


def podman_argv(*args: str) -> list[str]:
    """The command line of one podman command in its own PID and mount namespaces, on the sandbox's private store."""
    return [*podman_namespace(), *podman_command(), *args]


def podman(*args: str, timeout: float = 3600) -> str:
    """One podman command (podman_argv), its output; an error with its output when it fails."""
    try:
        proc = subprocess.run(podman_argv(*args), capture_output=True, text=True, timeout=timeout, check=False)
    finally:
        remove_cgroups(CGROUP_PARENT)
    if proc.returncode != 0:
        raise SandboxError(f"podman {' '.join(args[:3])} ... failed:\n{proc.stdout[-3000:]}{proc.stderr[-5000:]}")
    return proc.stdout


def remove_cgroups(parent: str) -> None:
    """Remove the (empty) cgroup subtree `parent` that podman's containers ran under, in every hierarchy."""
    remove_cgroup_tree(parent)


def container_flags(cgroup_parent: str) -> list[str]:
    """What every container podman starts here needs: runc (crun fails on this VM's hybrid cgroups) with its state
    on the command's tmpfs, explicit ulimits (podman's defaults are refused), and a cgroup parent of ours."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return ["--runtime", "runc", "--runtime-flag", f"root={PODMAN_ROOT / 'run' / 'runc'}",
            "--ulimit", f"nofile={hard}:{hard}", "--ulimit", "nproc=32768:32768",
            "--cgroup-parent", f"/{cgroup_parent}"]  # fmt: skip


def podman_build(*args: str) -> None:
    flags = ["--pull=never", *container_flags(CGROUP_PARENT), "--network", "host", "--layers", "--rm", "--force-rm"]
    bundle = ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt"
    if Path(bundle).is_file():
        flags += ["-v", f"{bundle}:/etc/ssl/certs/ca-certificates.crt:ro"]
    podman("build", *flags, *args)


def save_archive(image: str, archive: Path) -> None:
    archive.parent.mkdir(parents=True, exist_ok=True)
    tmp = archive.with_name(archive.name + ".tmp")
    tmp.unlink(missing_ok=True)
    podman("save", "--format", "oci-archive", "-o", str(tmp), image)
    tmp.rename(archive)


def _scratch_image(name: str, binary: Path, archive: Path, directory: str = "/") -> None:
    with tempfile.TemporaryDirectory(prefix="sandbox-image-") as context:
        shutil.copy2(binary, Path(context) / binary.name)
        target = f"{directory.rstrip('/')}/{binary.name}"
        (Path(context) / "Containerfile").write_text(
            f'FROM scratch\nCOPY {binary.name} {target}\nENTRYPOINT ["{target}"]\n'
        )
        podman_build("-t", name, context)
    save_archive(name, archive)


def base_image() -> str:
    """The MLflow image's base (PYTHON_IMAGE), made with debootstrap once and imported into podman's store."""
    key = _key(BASE_SCRIPT.read_bytes())
    tag = f"{BASE_IMAGE}-{key}"
    exists = podman("images", "--format", "{{.Repository}}:{{.Tag}}")
    if tag in exists.split():
        return tag
    archive = IMAGES / f"python-base-{key}.tar"
    if not archive.exists():
        IMAGES.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(["bash", str(BASE_SCRIPT), str(archive)], capture_output=True, text=True, timeout=1800,
                              check=False)  # fmt: skip
        if proc.returncode != 0:
            raise SandboxError(f"building the base image failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    podman("import", "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--change", "ENV LANG=C.UTF-8", "--change", 'CMD ["python3"]', str(archive), tag)  # fmt: skip
    return tag


def archives(bins: Artifacts) -> dict[str, Path]:
    """Image name -> its OCI archive for the current inputs (whether built yet or not)."""
    # What the build reads (its README is not built in: a change of documentation rebuilds nothing).
    mlflow_inputs = [
        p.name.encode() + b"\0" + p.read_bytes()
        for p in sorted(MLFLOW_CONTEXT.iterdir())
        if p.is_file() and p.suffix != ".md"
    ]
    return {
        PAUSE_IMAGE: IMAGES / f"pause-{_key((bins.cluster_dir / 'pause').read_bytes())}.tar",
        TESTTOOL_IMAGE: IMAGES / f"testtool-{_key((bins.cluster_dir / 'testtool').read_bytes())}.tar",
        mlflow_image(): IMAGES / f"mlflow-{_key(BASE_SCRIPT.read_bytes(), *mlflow_inputs)}.tar",
        **{
            image: IMAGES / f"mlflow-{context.name}-{_key(BASE_SCRIPT.read_bytes(), *_release_inputs(context))}.tar"
            for image, context in older_mlflow_images().items()
        },
        **{
            image: IMAGES / f"{name}-{_key(inside, (directory / name).read_bytes())}.tar"
            for image, (directory, name, inside) in _scratch_images(bins).items()
        },
    }


def _release_inputs(context: Path) -> list[bytes]:
    """What an older release's image is built from: the Containerfile and that release's requirements."""
    return [(MLFLOW_CONTEXT / "Containerfile").read_bytes(), (context / "requirements.txt").read_bytes()]


def _scratch_images(bins: Artifacts) -> dict[str, tuple[Path, str, str]]:
    """Image -> (directory, binary, the directory it has in the image) for the monitoring components. Prometheus at
    /bin/prometheus as in upstream's image: the operator mounts the data volume at /prometheus."""
    return {
        PROMETHEUS_IMAGE: (bins.prometheus_dir, "prometheus", "/bin"),
        PROMETHEUS_OPERATOR_IMAGE: (bins.prometheus_operator_dir, "operator", "/bin"),
        CONFIG_RELOADER_IMAGE: (bins.prometheus_operator_dir, "prometheus-config-reloader", "/bin"),
        KUBE_STATE_METRICS_IMAGE: (bins.kube_state_metrics_dir, "kube-state-metrics", "/"),
    }


def archive_digest(archive: Path) -> str:
    """The manifest digest of an OCI archive's image: what containerd lists for it once imported."""
    with tarfile.open(archive) as tar:
        index = tar.extractfile("index.json")
        if index is None:
            raise SandboxError(f"{archive} has no index.json: not an OCI archive")
        return json.load(index)["manifests"][0]["digest"]


def build_images(bins: Artifacts, say: Callable[[str], None] = print) -> dict[str, Path]:
    """Build and save whatever image is missing for the current inputs."""
    wanted = archives(bins)
    for name, archive in wanted.items():
        if archive.exists():
            continue
        started = time.monotonic()
        if name in (PAUSE_IMAGE, TESTTOOL_IMAGE):
            _scratch_image(name, bins.cluster_dir / name.rsplit("/", 1)[1].split(":")[0], archive)
        elif scratch := _scratch_images(bins).get(name):
            directory, binary, inside = scratch
            _scratch_image(name, directory / binary, archive, inside)
        elif context := older_mlflow_images().get(name):
            podman_build("--build-arg", f"PYTHON_IMAGE={base_image()}", "--build-arg",
                         f"MLFLOW_VERSION={context.name}", "-f", str(MLFLOW_CONTEXT / "Containerfile"), "-t", name,
                         str(context))  # fmt: skip
            save_archive(name, archive)
        else:
            podman_build("--build-arg", f"PYTHON_IMAGE={base_image()}", "-t", name, str(MLFLOW_CONTEXT))
            save_archive(name, archive)
        say(f"built image {name} ({archive.stat().st_size / 2**20:.0f} MiB) in {time.monotonic() - started:.0f} s")
    return wanted


def import_into_node(ctr: Callable[..., subprocess.CompletedProcess], bins: Artifacts, names: list[str]) -> None:
    """Import the images `names` into a node's containerd (`ctr` runs its ctr) unless it has them: the node lists
    each name with the digest it has, and a rebuilt image under the same name replaces the old one."""
    wanted = archives(bins)
    unknown = set(names) - set(wanted)
    if unknown:
        raise SandboxError(f"no such sandbox image: {', '.join(sorted(unknown))}")
    listed = ctr("images", "ls").stdout.splitlines()[1:]
    present = {fields[0]: fields[2] for fields in (line.split() for line in listed) if len(fields) > 2}
    for name in names:
        archive = wanted[name]
        if present.get(name) == archive_digest(archive):
            continue
        proc = ctr("images", "import", "--local", str(archive))
        if proc.returncode != 0:
            raise SandboxError(f"importing {archive} into the node's containerd failed: {proc.stderr.strip()}")


def tag_in_node(ctr: Callable[..., subprocess.CompletedProcess], source: str, target: str) -> None:
    """Another name for an image in a node's containerd, as a registry would hold a rebuilt tag."""
    proc = ctr("images", "tag", "--force", source, target)
    if proc.returncode != 0:
        raise SandboxError(f"tagging {source} as {target} in the node failed: {proc.stderr.strip()}")
