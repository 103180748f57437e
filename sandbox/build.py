"""Build the binaries the sandbox runs, from sources, once: `python -m sandbox build` (run by `make setup`).

- `cluster`: our multi-call binary (sandbox/cluster: the pinned k8s.io/kubernetes release's kube-apiserver,
  kube-controller-manager, kube-scheduler, kubelet, kube-proxy, kubectl and an embedded etcd), CGO_ENABLED=0 with
  the release's version ldflags, so `/version` reports the real release; beside it the pause and test-tool binaries
  of the same module;
- the CNI plugins (bridge, host-local, loopback, portmap) and containerd 2.x with its runc shim, each `go install`ed
  at a pinned version from the Go module proxy (their `package main`s cannot be imported into ours).

The pins are sandbox/pins.py's. Everything lands under SANDBOX_OPT_PREFIX (default /opt/carbon254-sandbox), outside
the checkout, in a directory keyed by the pinned versions and a hash of the inputs: any clone on the machine finds it
and a second build takes well under a second; Go's own module and build caches stay at their defaults under $HOME. A
build goes to a temporary directory first and is renamed into place, so an interrupted one leaves nothing half-made.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .pins import (
    CNI_PACKAGES,
    CNI_PLUGINS,
    CNI_VERSION,
    COMPONENTS,
    CONTAINERD,
    CONTAINERD_VERSION,
    KUBE_STATE_METRICS,
    KUBE_STATE_METRICS_VERSION,
    MODULE,
    OPT,
    PROMETHEUS,
    PROMETHEUS_OPERATOR,
    PROMETHEUS_OPERATOR_NESTED,
    PROMETHEUS_OPERATOR_VERSION,
    PROMETHEUS_RELEASE,
    PROMETHEUS_VERSION,
)
from .procs import SandboxError

# Bump when the recipe below changes in a way the hashed inputs do not show.
RECIPE = "1"
# Built into the binaries that run FROM scratch: Go's copy of the time zone database. Upstream's images carry the
# system's (distroless/static has /usr/share/zoneinfo); without one, kube-state-metrics panics on the first CronJob
# whose spec.timeZone it cannot load (the backup CronJob's Etc/UTC did, crash-looping it).
SCRATCH_TAGS = "timetzdata"


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise SandboxError(
            "the sandbox's Kubernetes is built from Go sources and no `go` is on PATH: install Go 1.26 or newer "
            "(https://go.dev/doc/install; the machines this project runs on have it)"
        )
    return go


def _run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(argv, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          check=False)  # fmt: skip
    if proc.returncode != 0:
        raise SandboxError(f"{' '.join(argv[:4])} ... failed in {cwd}:\n{proc.stdout[-3000:]}{proc.stderr[-6000:]}")
    return proc.stdout


def k8s_version() -> str:
    """The k8s.io/kubernetes release sandbox/cluster/go.mod pins."""
    match = re.search(r"^\s*k8s\.io/kubernetes\s+(v\S+)", (MODULE / "go.mod").read_text(), re.MULTILINE)
    if not match:
        raise SandboxError(f"{MODULE / 'go.mod'} requires no k8s.io/kubernetes")
    return match.group(1)


def _digest(*parts: bytes | str) -> str:
    sha = hashlib.sha256()
    for part in parts:
        sha.update(part.encode() if isinstance(part, str) else part)
        sha.update(b"\0")
    return sha.hexdigest()[:12]


@dataclass(frozen=True)
class Artifacts:
    """Where the built binaries are (all directories exist after `build()`)."""

    cluster_dir: Path  # cluster + component symlinks, pause, testtool
    cni_dir: Path
    containerd_dir: Path  # containerd, ctr, containerd-shim-runc-v2
    prometheus_dir: Path  # prometheus, promtool
    prometheus_operator_dir: Path  # operator, prometheus-config-reloader
    kube_state_metrics_dir: Path  # kube-state-metrics
    version: str

    def component(self, name: str) -> Path:
        return self.cluster_dir / name

    @property
    def kubectl(self) -> Path:
        return self.cluster_dir / "kubectl"


def artifacts() -> Artifacts:
    """The paths for the current inputs, whether built yet or not (nothing is run but hashing)."""
    version = k8s_version()
    sources = sorted(p for p in MODULE.rglob("*") if p.is_file() and p.suffix in (".go", ".mod", ".sum"))
    toolchain = _run([_go(), "env", "GOVERSION"], MODULE).strip()
    inputs = (str(p.relative_to(MODULE)).encode() + b"\0" + p.read_bytes() for p in sources)
    key = _digest(RECIPE, toolchain, *inputs)
    tagged = _digest(RECIPE, SCRATCH_TAGS)
    return Artifacts(
        cluster_dir=OPT / "cluster" / f"{version}-{key}",
        cni_dir=OPT / "cni" / f"{CNI_VERSION}-{_digest(RECIPE, *CNI_PACKAGES)}",
        containerd_dir=OPT / "containerd" / f"{CONTAINERD_VERSION}-{_digest(RECIPE)}",
        prometheus_dir=OPT / "prometheus" / f"{PROMETHEUS_VERSION}-{_digest(RECIPE)}",
        prometheus_operator_dir=OPT / "prometheus-operator" / f"{PROMETHEUS_OPERATOR_VERSION}-{tagged}",
        kube_state_metrics_dir=OPT / "kube-state-metrics" / f"{KUBE_STATE_METRICS_VERSION}-{tagged}",
        version=version,
    )


def _into_place(final: Path, fill: Callable[[Path], None]) -> bool:
    """Build into a temporary directory beside `final`, then rename it there; False when it already existed."""
    if (final / ".complete").exists():
        return False
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        fill(tmp)
        (tmp / ".complete").write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ\n", time.gmtime()))
        tmp.chmod(0o755)
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return True


def _version_ldflags(version: str) -> str:
    """-X flags that make the binaries report the release (as the release's own build does)."""
    match = re.fullmatch(r"v(\d+)\.(\d+)\.\d+.*", version)
    if not match:
        raise SandboxError(f"unexpected Kubernetes version {version}")
    # The module proxy carries the release's commit time, not its commit hash.
    info = json.loads(_run([_go(), "list", "-m", "-json", "k8s.io/kubernetes"], MODULE))
    flags = ["-s", "-w"]
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [f"-X {package}.gitVersion={version}", f"-X {package}.gitMajor={match.group(1)}",
                  f"-X {package}.gitMinor={match.group(2)}", f"-X {package}.gitTreeState=clean",
                  f"-X {package}.gitCommit={'0' * 40}", f"-X {package}.buildDate={info.get('Time', '')}"]  # fmt: skip
    return " ".join(flags)


def _build_cluster(out: Path, version: str) -> None:
    env = {"CGO_ENABLED": "0", "GOFLAGS": "-mod=readonly"}
    go = _go()
    ldflags = _version_ldflags(version)
    _run([go, "build", "-trimpath", "-ldflags", ldflags, "-o", str(out / "cluster"), "."], MODULE, env)
    for name in ("pause", "testtool"):
        _run([go, "build", "-trimpath", "-ldflags", "-s -w", "-o", str(out / name), f"./{name}"], MODULE, env)
    for name in COMPONENTS:
        (out / name).symlink_to("cluster")


def _go_install(out: Path, packages: list[str], tags: str, ldflags: str) -> None:
    # From / (outside any module): each package builds with its own module's go.mod at the pinned version.
    _run([_go(), "install", "-trimpath", "-tags", tags, "-ldflags", ldflags, *packages], Path("/"),
         {"CGO_ENABLED": "0", "GOBIN": str(out)})  # fmt: skip


def _module_dir(module: str, version: str) -> Path:
    """A module's directory in Go's module cache (read-only; downloaded through the module proxy the first time)."""
    out = _run([_go(), "mod", "download", "-json", f"{module}@{version}"], Path(tempfile.gettempdir()),
               env={"GOFLAGS": "-mod=mod", "GO111MODULE": "on"})  # fmt: skip
    return Path(json.loads(out)["Dir"])


def prometheus_operator_module() -> Path:
    """The pinned Prometheus Operator release's module: its CRDs, and its RBAC and Deployment manifests (example/)."""
    return _module_dir(PROMETHEUS_OPERATOR, PROMETHEUS_OPERATOR_VERSION)


def kube_state_metrics_module() -> Path:
    """The pinned kube-state-metrics release's module: its manifests (examples/standard)."""
    return _module_dir(KUBE_STATE_METRICS, KUBE_STATE_METRICS_VERSION)


def prometheus_operator_crds() -> Path:
    """The directory of the pinned Prometheus Operator release's CRD manifests."""
    crds = prometheus_operator_module() / "example" / "prometheus-operator-crd"
    if not (crds / "monitoring.coreos.com_servicemonitors.yaml").is_file():
        raise SandboxError(f"{PROMETHEUS_OPERATOR}@{PROMETHEUS_OPERATOR_VERSION} has no CRDs in {crds}")
    return crds


def _build_in_module(module_dir: Path, out: Path, packages: dict[str, str], ldflags: str,
                     dropreplace: tuple[str, ...] = ()) -> None:  # fmt: skip
    """`go build` of a module's `package main`s ({binary name: package directory}) in a writable copy of its
    directory from the module cache, with its own go.mod and go.sum. For modules that `go install ...@version` does
    not take: a go.mod with replace directives, or a registry that refuses the version list (`go install` reads it
    for deprecation notices) while serving the version itself."""
    with tempfile.TemporaryDirectory(prefix="sandbox-module-") as tmp:
        src = Path(tmp) / "src"
        shutil.copytree(module_dir, src)
        for path in [src, *src.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        go = _go()
        if dropreplace:
            _run([go, "mod", "edit", *(f"-dropreplace={path}" for path in dropreplace)], src)
        env = {"CGO_ENABLED": "0", "GOFLAGS": "-mod=mod"}
        for name, package in packages.items():
            command = [go, "build", "-trimpath", "-tags", SCRATCH_TAGS, "-ldflags", ldflags, "-o", str(out / name)]
            _run([*command, package], src, env)


def _build_prometheus_operator(out: Path) -> None:
    """cmd/operator and cmd/prometheus-config-reloader of the pinned release. Its go.mod points the two nested
    modules at subdirectories the module's zip does not carry: the build takes them from the module proxy at the
    release's version instead (go.sum then gains their checksums, verified against sum.golang.org)."""
    version = PROMETHEUS_OPERATOR_VERSION.removeprefix("v")
    _build_in_module(prometheus_operator_module(), out,
                     {name: f"./cmd/{name}" for name in ("operator", "prometheus-config-reloader")},
                     f"-s -w -X github.com/prometheus/common/version.Version={version}",
                     tuple(f"{PROMETHEUS_OPERATOR}/{nested}" for nested in PROMETHEUS_OPERATOR_NESTED))  # fmt: skip


def _build_kube_state_metrics(out: Path) -> None:
    """kube-state-metrics at the pinned release (its main package is the module's root). The module proxy serves
    the version but refuses the module's version list, which `go install ...@version` reads."""
    _build_in_module(kube_state_metrics_module(), out, {"kube-state-metrics": "."},
                     f"-s -w -X github.com/prometheus/common/version.Version={KUBE_STATE_METRICS_VERSION}")  # fmt: skip


def build(say: Callable[[str], None] = print) -> Artifacts:
    """Build whatever is missing for the current inputs; return where everything is."""
    found = artifacts()
    started = time.monotonic()
    if _into_place(found.cluster_dir, lambda tmp: _build_cluster(tmp, found.version)):
        say(f"built Kubernetes {found.version} (sandbox/cluster) into {found.cluster_dir} "
            f"in {time.monotonic() - started:.0f} s")  # fmt: skip
    started = time.monotonic()
    cni = [f"{CNI_PLUGINS}/{package}@{CNI_VERSION}" for package in CNI_PACKAGES]
    cni_ld = f"-s -w -X {CNI_PLUGINS}/pkg/utils/buildversion.BuildVersion={CNI_VERSION}"
    if _into_place(found.cni_dir, lambda tmp: _go_install(tmp, cni, "", cni_ld)):
        say(f"built the CNI plugins {CNI_VERSION} into {found.cni_dir} in {time.monotonic() - started:.0f} s")
    started = time.monotonic()
    ld = f"-s -w -X {CONTAINERD}/version.Version={CONTAINERD_VERSION} -X {CONTAINERD}/version.Package={CONTAINERD}"
    tags = "urfave_cli_no_docs no_btrfs osusergo netgo"  # no btrfs: it needs cgo; pure-Go DNS and user lookups

    def containerd(tmp: Path) -> None:
        daemon = [f"{CONTAINERD}/cmd/{name}@{CONTAINERD_VERSION}" for name in ("containerd", "ctr")]
        _go_install(tmp, daemon, tags, ld)
        # The shim without gRPC, as containerd's own Makefile builds it.
        _go_install(tmp, [f"{CONTAINERD}/cmd/containerd-shim-runc-v2@{CONTAINERD_VERSION}"], tags + " no_grpc", ld)

    if _into_place(found.containerd_dir, containerd):
        say(f"built containerd {CONTAINERD_VERSION} into {found.containerd_dir} in {time.monotonic() - started:.0f} s")
    started = time.monotonic()
    prom = [f"{PROMETHEUS}/cmd/{name}@{PROMETHEUS_VERSION}" for name in ("prometheus", "promtool")]
    prom_ld = f"-s -w -X github.com/prometheus/common/version.Version={PROMETHEUS_RELEASE}"
    # netgo: pure-Go DNS; no builtinassets: the web UI's assets are not in the module, the HTTP API needs none.
    if _into_place(found.prometheus_dir, lambda tmp: _go_install(tmp, prom, "netgo", prom_ld)):
        say(f"built Prometheus {PROMETHEUS_RELEASE} into {found.prometheus_dir} in {time.monotonic() - started:.0f} s")
    started = time.monotonic()
    if _into_place(found.prometheus_operator_dir, _build_prometheus_operator):
        say(f"built the Prometheus Operator {PROMETHEUS_OPERATOR_VERSION} into {found.prometheus_operator_dir} "
            f"in {time.monotonic() - started:.0f} s")  # fmt: skip
    started = time.monotonic()
    if _into_place(found.kube_state_metrics_dir, _build_kube_state_metrics):
        say(f"built kube-state-metrics {KUBE_STATE_METRICS_VERSION} into {found.kube_state_metrics_dir} "
            f"in {time.monotonic() - started:.0f} s")  # fmt: skip
    # The two modules' manifests (CRDs, RBAC, Deployments) the monitoring tests apply: into Go's module cache now
    # (a no-op when there), also when the binaries were built before, so that no test waits for a download.
    prometheus_operator_crds()
    kube_state_metrics_module()
    return found
