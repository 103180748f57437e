"""The execution environment: ansible-builder makes its build context, podman builds it here, and it holds what the
collection's jobs need (ansible-core, ansible-runner, the collections with carbon254.mlflow, the Python packages at
the tested versions, git for project updates)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from sandbox import ee
from sandbox.ee import DEFINITION, KEEP, KEYED_REPO, build_ee, execution_node_podman
from sandbox.images import podman

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def image() -> str:
    return build_ee().image


def inside(image: str, *argv: str, project: bool = False, user: str | None = None) -> subprocess.CompletedProcess:
    """A command in the image, as podman on an execution node runs it (the host network, nothing pulled)."""
    flags = ["--rm", "--network", "host", "--pull", "never"]
    if project:  # the checkout where AWX puts a job's project, as the working directory
        flags += ["-v", f"{ROOT}:/runner/project:ro", "-w", "/runner/project"]
    if user:
        flags += ["--user", user]
    return subprocess.run([str(execution_node_podman()), "run", *flags, image, *argv], capture_output=True, text=True,
                          timeout=300, check=False)  # fmt: skip


def test_ansible_builder_creates_the_build_context(tmp_path):
    from sandbox.ee import build_collection  # noqa: PLC0415

    build_collection()
    proc = subprocess.run([str(BIN / "ansible-builder"), "create", "-f", str(DEFINITION), "-c", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    containerfile = (tmp_path / "Containerfile").read_text()
    # The base is a build argument (production: AAP's ee-minimal), the package manager too.
    assert 'ARG EE_BASE_IMAGE="localhost/carbon254/python:3.11-bookworm"' in containerfile
    assert 'ARG PKGMGR="/usr/local/sbin/ee-pkgmgr"' in containerfile
    assert "ansible-galaxy collection install $ANSIBLE_GALAXY_CLI_COLLECTION_OPTS -r requirements.yml" in containerfile
    build = tmp_path / "_build"
    assert (build / "collections" / "carbon254-mlflow.tar.gz").is_file()
    assert yaml.safe_load((build / "requirements.yml").read_text())["collections"][0]["type"] == "file"
    # The definition's own Python list stays a file: no self-including requirements (ansible-builder's introspection
    # recursed on `-r requirements.txt` in a list).
    assert "-r " not in (build / "requirements.txt").read_text()


def test_the_image_holds_the_collection_and_what_it_needs(image):
    listing = inside(image, "ansible-galaxy", "collection", "list")
    assert listing.returncode == 0, listing.stderr
    lines = {
        line.split()[0]: line.split()[1]
        for line in listing.stdout.splitlines()
        if line and not line.startswith(("#", "Collection", "-"))
    }
    assert lines["carbon254.mlflow"] == yaml.safe_load((ROOT / "galaxy.yml").read_text())["version"]
    for dependency in (
        "kubernetes.core",
        "community.postgresql",
        "community.general",
        "amazon.aws",
        "community.aws",
        "awx.awx",
    ):
        assert dependency in lines, dependency
    assert "/usr/share/ansible/collections" in listing.stdout

    # The collection's Python requirements, at the versions the tests run (requirements.txt's pins).
    pins = dict(line.split("==") for line in (ROOT / "requirements.txt").read_text().splitlines() if "==" in line)
    freeze = inside(image, "python3", "-m", "pip", "freeze")
    installed = {
        name.lower(): version for name, _, version in (line.partition("==") for line in freeze.stdout.splitlines())
    }
    for name, version in pins.items():
        assert installed.get(name.lower().replace("_", "-")) == version, (
            f"{name}: {installed.get(name.lower())} != {version}"
        )
    imports = inside(
        image, "python3", "-c", "import kubernetes, kubernetes_validate, psycopg2, boto3, hvac, ansible_runner"
    )
    assert imports.returncode == 0, imports.stderr
    versions = inside(image, "sh", "-c", "ansible --version | head -1; ansible-runner --version; git --version")
    assert "core 2.19.14" in versions.stdout and "2.4.3" in versions.stdout and "git version" in versions.stdout


def test_the_collections_modules_run_in_the_image_as_its_default_user(image):
    # Unprivileged (the image's user 1000): the module loads its module_utils and reports a refused connection.
    proc = inside(image, "ansible", "localhost", "-m", "carbon254.mlflow.mlflow_health",
                  "-a", "url=http://127.0.0.1:9 retries=1 timeout=2")  # fmt: skip
    assert "FAILED" in proc.stdout and "127.0.0.1:9" in proc.stdout, proc.stdout + proc.stderr
    assert "ModuleNotFoundError" not in proc.stdout + proc.stderr
    assert inside(image, "id", "-u").stdout.strip() == "1000"


def test_the_projects_ansible_cfg_does_not_hide_the_images_collections(image):
    # A job's working directory is the project checkout, whose ansible.cfg is read: its collections_path must still
    # reach /usr/share/ansible/collections (where it once pointed at an untracked .cache/collections only).
    proc = inside(image, "ansible-doc", "-t", "role", "carbon254.mlflow.mlflow_k8s", project=True)
    assert proc.returncode == 0, proc.stderr
    assert "/usr/share/ansible/collections/ansible_collections/carbon254/mlflow" in proc.stdout


def test_a_build_keeps_the_newest_images_of_other_inputs_and_removes_the_older(image, tmp_path, monkeypatch):
    """Each change of the collection makes a new image; after a build only the newest KEEP others stay, archive and
    store (here: stand-ins, the image under made-up keys with archives a month old, a minute apart, in a directory of
    their own), and the current one is untouched."""
    monkeypatch.setattr(ee, "IMAGES", tmp_path)
    current = tmp_path / "ee-current.tar"
    current.write_bytes(b"current")
    keys = [f"prunetest{i}" for i in range(KEEP + 2)]  # oldest first
    old = time.time() - 30 * 86400  # older than any build stage worth keeping (prune removes those made before)
    for age, key in enumerate(keys):
        archive = tmp_path / f"ee-{key}.tar"
        archive.write_bytes(b"stand-in")
        os.utime(archive, (old + 60 * age, old + 60 * age))
        podman("tag", image, f"{KEYED_REPO}:{key}")
    try:
        ee._prune(current)
        stored = ee._stored()
        assert [key for key in keys if (tmp_path / f"ee-{key}.tar").exists()] == keys[2:]
        assert [key for key in keys if f"{KEYED_REPO}:{key}" in stored] == keys[2:]
        assert current.exists() and image in stored
    finally:
        left = [f"{KEYED_REPO}:{key}" for key in keys if f"{KEYED_REPO}:{key}" in ee._stored()]
        if left:
            podman("rmi", *left)
