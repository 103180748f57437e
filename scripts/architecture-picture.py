"""Draw docs/images/architecture.png: how site.yml, the roles, the modules, the services and the test environment fit.

    .venv/bin/python scripts/architecture-picture.py [OUT.png]

matplotlib only (no Graphviz on these machines); the boxes and arrows are the data below.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "docs/images/architecture.png"
COLLECTION, SERVICE, TEST = "#dbe9f6", "#e8f3e0", "#f6e9d6"
# name: (x, y, width, height, colour, label)
BOXES = {
    "launch": (0.2, 8.6, 3.9, 1.0, "#ffffff", "ansible-playbook playbooks/site.yml\n-i inventories/<env>, "
               "or an AWX job template\n(in the execution environment)"),
    "inventory": (4.6, 8.6, 3.0, 1.0, "#ffffff",
                  "inventories/<env>: the values;\nsecrets from ansible-vault\nor AWX credentials"),
    "preflight": (0.2, 7.0, 3.0, 0.9, COLLECTION,
                  "preflight.yml: inputs checked,\nevery service reached,\nnothing written"),
    "postgres_init": (0.2, 5.4, 2.0, 0.9, COLLECTION, "postgres_init\nlogin, database(s), grants"),
    "minio_bucket": (2.4, 5.4, 2.0, 0.9, COLLECTION, "minio_bucket\nbucket, versioning, policy"),
    "mlflow_k8s": (4.6, 5.4, 2.2, 0.9, COLLECTION, "mlflow_k8s\nSecret, Deployment, Jobs, ..."),
    "monitoring": (7.0, 5.4, 2.0, 0.9, COLLECTION, "monitoring\nServiceMonitor, rules"),
    "cloudflare_dns": (9.2, 5.4, 2.2, 0.9, COLLECTION, "cloudflare_dns\nCNAME, tunnel, Access"),
    "verify": (4.6, 7.0, 3.6, 0.9, COLLECTION,
               "verify.yml: mlflow_health,\nmlflow_roundtrip (the path\nMLflow clients take)"),
    "postgres": (0.2, 3.2, 2.0, 0.9, SERVICE, "PostgreSQL\n(backend + auth store)"),
    "s3": (2.4, 3.2, 2.0, 0.9, SERVICE, "MinIO / S3\n(artifacts)"),
    "k8s": (4.6, 3.2, 2.2, 0.9, SERVICE, "Kubernetes: MLflow pods\n(image: images/mlflow)"),
    "prom": (7.0, 3.2, 2.0, 0.9, SERVICE, "Prometheus Operator,\nGrafana"),
    "cloudflare": (9.2, 3.2, 2.2, 0.9, SERVICE, "Cloudflare API"),
    "sandbox": (0.2, 0.9, 6.6, 1.3, TEST, "sandbox/ (python -m sandbox up): real PostgreSQL 15, SeaweedFS S3,\n"
               "upstream Kubernetes v1.37.2 built from its Go modules (containerd, runc),\n"
               "Prometheus, its Operator, kube-state-metrics as pods"),
    "doubles": (7.0, 0.9, 4.4, 1.3, TEST, "tests/cloudflare_double: Cloudflare's API\n(checked with its SDK's types)\n"
                "tests/awx_double: AWX's API and job runs"),
}  # fmt: skip
ARROWS = [
    ("launch", "preflight"), ("inventory", "launch"), ("preflight", "verify"), ("preflight", "postgres_init"),
    ("preflight", "minio_bucket"), ("preflight", "mlflow_k8s"), ("preflight", "monitoring"),
    ("preflight", "cloudflare_dns"), ("postgres_init", "postgres"), ("minio_bucket", "s3"), ("mlflow_k8s", "k8s"),
    ("monitoring", "prom"), ("cloudflare_dns", "cloudflare"), ("verify", "k8s"),
    ("sandbox", "postgres"), ("sandbox", "s3"), ("sandbox", "k8s"), ("sandbox", "prom"), ("doubles", "cloudflare"),
]  # fmt: skip


def centre(name: str, edge: str) -> tuple[float, float]:
    x, y, w, h, *_ = BOXES[name]
    points = {"top": (x + w / 2, y + h), "bottom": (x + w / 2, y), "left": (x, y + h / 2), "right": (x + w, y + h / 2)}
    return points[edge]


def main() -> int:
    fig, ax = plt.subplots(figsize=(12, 9.6), dpi=110)
    ax.set_xlim(0, 11.6)
    ax.set_ylim(0.5, 9.9)
    ax.axis("off")
    for x, y, w, h, colour, label in BOXES.values():
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.04", fc=colour, ec="#555555", lw=1))
        ax.text(x + w / 2, y + h / 2, label, ha="center", va="center", fontsize=8.2)
    for source, target in ARROWS:
        sx, sy = centre(source, "bottom" if BOXES[source][1] > BOXES[target][1] else "top")
        tx, ty = centre(target, "top" if BOXES[source][1] > BOXES[target][1] else "bottom")
        if BOXES[source][1] == BOXES[target][1]:  # side by side: from the facing edges
            leftwards = BOXES[source][0] > BOXES[target][0]
            (sx, sy), (tx, ty) = (
                centre(source, "left" if leftwards else "right"),
                centre(target, "right" if leftwards else "left"),
            )
        ax.add_patch(FancyArrowPatch((sx, sy), (tx, ty), arrowstyle="-|>", mutation_scale=9, color="#666666", lw=0.8))
    legend = [("the collection (roles, playbooks, modules)", COLLECTION), ("what it manages", SERVICE),
              ("the test environment (make test, make demo)", TEST)]  # fmt: skip
    for i, (label, colour) in enumerate(legend):
        box = FancyBboxPatch((7.9, 9.45 - i * 0.32), 0.25, 0.2, boxstyle="round,pad=0.02", fc=colour, ec="#555555")
        ax.add_patch(box)
        ax.text(8.25, 9.55 - i * 0.32, label, va="center", fontsize=8)
    title = "carbon254.mlflow: site.yml, its roles and modules, what they manage, and how it is tested"
    ax.set_title(title, fontsize=10)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, bbox_inches="tight")
    print(OUT)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
