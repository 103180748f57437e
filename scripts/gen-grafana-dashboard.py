#!/usr/bin/env python3
"""Generate the MLflow Grafana dashboard (roles/monitoring/files/mlflow-dashboard.json) with Grafana's own
dashboards-as-code SDK (grafana-foundation-sdk), so that the JSON is never edited by hand.

    python scripts/gen-grafana-dashboard.py           # (re)write the file
    python scripts/gen-grafana-dashboard.py --check   # fail if the file is not what this script makes (lint)

The panels read three kinds of series: MLflow's own (`--expose-prometheus`: mlflow_http_request_total,
mlflow_http_request_duration_seconds with its mlflow_version label, mlflow_exporter_info), the scrape's `up`, and
kube-state-metrics / cAdvisor series (replicas, restarts, CPU and memory against the limits). Every query is
scoped by the dashboard variables: `datasource` (no data source UID is written), `namespace` and `job` (the
MLflow Service's name, which the role mlflow_k8s also gives the Deployment). PANELS below is the one list the
role's tests read to run every panel's query against a real Prometheus.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders.common import VizLegendOptions
from grafana_foundation_sdk.builders.dashboard import (
    Dashboard,
    DatasourceVariable,
    QueryVariable,
    Row,
    ThresholdsConfig,
)
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.builders.stat import Panel as Stat
from grafana_foundation_sdk.builders.timeseries import Panel as Timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import LegendDisplayMode, LegendPlacement
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DataSourceRef,
    Threshold,
    ThresholdsMode,
    VariableHide,
    VariableRefresh,
)

OUT = Path(__file__).resolve().parent.parent / "roles/monitoring/files/mlflow-dashboard.json"
UID = "carbon254-mlflow"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")

SEL = 'namespace="$namespace", job="$job"'
POD = 'namespace="$namespace", pod=~"$job-[a-z0-9]+-[a-z0-9]+", container="mlflow"'
REQUESTS = f"mlflow_http_request_total{{{SEL}}}"
BUCKETS = f"mlflow_http_request_duration_seconds_bucket{{{SEL}}}"

# (row, kind, title, unit, description, [(legend, expr), ...], source of the series)
PANELS: list[dict] = [
    {
        "row": "Traffic",
        "kind": "timeseries",
        "title": "Requests per second by status",
        "unit": "reqps",
        "description": "Every HTTP request MLflow answered (the /health probes excluded), by status code.",
        "targets": [("{{status}}", f"sum by (status) (rate({REQUESTS}[$__rate_interval]))")],
        "source": "mlflow",
    },
    {
        "row": "Traffic",
        "kind": "timeseries",
        "title": "Error ratio (5xx)",
        "unit": "percentunit",
        "description": "Share of requests answered with a 5xx status; MLflowHighErrorRatio fires above its threshold.",
        "targets": [
            (
                "5xx",
                f'(sum(rate(mlflow_http_request_total{{{SEL}, status=~"5.."}}[$__rate_interval])) or vector(0))'
                f" / sum(rate({REQUESTS}[$__rate_interval]))",
            )
        ],
        "source": "mlflow",
    },
    {
        "row": "Traffic",
        "kind": "timeseries",
        "title": "Latency p50 / p95 / p99",
        "unit": "s",
        "description": "Request duration quantiles from MLflow's histogram, over every replica.",
        "targets": [
            (f"p{q}", f"histogram_quantile(0.{q}, sum by (le) (rate({BUCKETS}[$__rate_interval])))")
            for q in ("50", "95", "99")
        ],
        "source": "mlflow",
    },
    {
        "row": "Replicas",
        "kind": "stat",
        "title": "Targets up",
        "unit": "none",
        "description": "MLflow pods Prometheus scrapes successfully (0: MLflowDown fires).",
        "targets": [("up", f"sum(up{{{SEL}}})")],
        "source": "prometheus",
    },
    {
        "row": "Replicas",
        "kind": "stat",
        "title": "MLflow version",
        "unit": "none",
        "description": "Pods reporting each MLflow version (the mlflow_version label of MLflow's histogram).",
        "targets": [
            (
                "{{mlflow_version}}",
                f"count by (mlflow_version) (group by (mlflow_version, pod) "
                f"(mlflow_http_request_duration_seconds_count{{{SEL}}}))",
            )
        ],
        "source": "mlflow",
    },
    {
        "row": "Replicas",
        "kind": "timeseries",
        "title": "Replicas ready / desired",
        "unit": "none",
        "description": "The Deployment's ready replicas against its spec (kube-state-metrics).",
        "targets": [
            ("ready", 'kube_deployment_status_replicas_ready{namespace="$namespace", deployment="$job"}'),
            ("desired", 'kube_deployment_spec_replicas{namespace="$namespace", deployment="$job"}'),
        ],
        "source": "kube-state-metrics",
    },
    {
        "row": "Replicas",
        "kind": "timeseries",
        "title": "Container restarts (1h)",
        "unit": "none",
        "description": "Restarts of each MLflow container over the last hour (kube-state-metrics).",
        "targets": [("{{pod}}", f"sum by (pod) (increase(kube_pod_container_status_restarts_total{{{POD}}}[1h]))")],
        "source": "kube-state-metrics",
    },
    {
        "row": "Resources",
        "kind": "timeseries",
        "title": "CPU per pod against its limit",
        "unit": "short",
        "description": "CPU cores each MLflow container uses (cAdvisor) beside its limit (kube-state-metrics).",
        "targets": [
            ("{{pod}}", f"sum by (pod) (rate(container_cpu_usage_seconds_total{{{POD}}}[$__rate_interval]))"),
            ("limit {{pod}}", f'sum by (pod) (kube_pod_container_resource_limits{{{POD}, resource="cpu"}})'),
        ],
        "source": "cadvisor",
    },
    {
        "row": "Resources",
        "kind": "timeseries",
        "title": "Memory per pod against its limit",
        "unit": "bytes",
        "description": "Working-set memory of each MLflow container (cAdvisor) beside its limit (kube-state-metrics): "
        "the OOM killer acts on the limit.",
        "targets": [
            ("{{pod}}", f"sum by (pod) (container_memory_working_set_bytes{{{POD}}})"),
            ("limit {{pod}}", f'sum by (pod) (kube_pod_container_resource_limits{{{POD}, resource="memory"}})'),
        ],
        "source": "cadvisor",
    },
]


def panel(spec: dict, ident: int) -> Stat | Timeseries:
    builder = Stat() if spec["kind"] == "stat" else Timeseries()
    builder = (
        builder.id(ident)
        .title(spec["title"])
        .description(spec["description"])
        .datasource(DATASOURCE)
        .unit(spec["unit"])
        .height(4 if spec["kind"] == "stat" else 8)
        .span(6 if spec["kind"] == "stat" else 12)
    )
    if spec["kind"] == "timeseries":
        builder = builder.min(0).legend(
            VizLegendOptions().display_mode(LegendDisplayMode.LIST).placement(LegendPlacement.BOTTOM).show_legend(True)
        )
    if spec["title"] == "Error ratio (5xx)":
        builder = builder.thresholds(
            ThresholdsConfig()
            .mode(ThresholdsMode.ABSOLUTE)
            .steps([Threshold(value=None, color="green"), Threshold(value=0.05, color="red")])
        )
    for n, (legend, expr) in enumerate(spec["targets"]):
        builder = builder.with_target(
            Dataquery().datasource(DATASOURCE).expr(expr).legend_format(legend).ref_id(chr(ord("A") + n))
        )
    return builder


def dashboard() -> dict:
    board = (
        Dashboard("MLflow tracking server")
        .uid(UID)
        .description("carbon254.mlflow: traffic, errors, latency, replicas and resources of an MLflow tracking server")
        .tags(["mlflow", "carbon254"])
        .editable()
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .refresh("1m")
        .time("now-3h", "now")
        .timezone("browser")
        .with_variable(DatasourceVariable("datasource").label("Data source").type("prometheus"))
        .with_variable(
            QueryVariable("namespace")
            .label("Namespace")
            .datasource(DATASOURCE)
            .query("label_values(mlflow_exporter_info, namespace)")
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        )
        .with_variable(
            QueryVariable("job")
            .label("MLflow service")
            .datasource(DATASOURCE)
            .query('label_values(mlflow_exporter_info{namespace="$namespace"}, job)')
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .hide(VariableHide.DONT_HIDE)
        )
    )
    row = None
    for ident, spec in enumerate(PANELS, start=1):
        if spec["row"] != row:
            row = spec["row"]
            board = board.with_row(Row(row))
        board = board.with_panel(panel(spec, ident))
    return json.loads(json.dumps(board.build(), cls=JSONEncoder, sort_keys=True))


def render() -> str:
    return json.dumps(dashboard(), indent=2, sort_keys=True) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed dashboard is out of date")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT} is out of date: run python scripts/gen-grafana-dashboard.py", file=sys.stderr)
            return 1
        return 0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    print(f"wrote {OUT} ({len(PANELS)} panels)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
