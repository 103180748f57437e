"""The MLflow dashboard's panels drawn with matplotlib from a real Prometheus' answers to the panels' own queries
(the JSON scripts/gen-grafana-dashboard.py makes), for docs/images/mlflow-dashboard.png.

Used by tests/integration/test_monitoring_prometheus.py when MLFLOW_DASHBOARD_PICTURE names the output file
(scripts/dashboard-picture.sh); a picture of what Grafana would show, not Grafana itself.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path


def query_range(base: str, expr: str, start: float, end: float, step: int) -> list[dict]:
    params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(f"{base}/api/v1/query_range?{params}", timeout=30) as response:  # noqa: S310
        body = json.loads(response.read())
    return body["data"]["result"]


def legend(template: str, metric: dict) -> str:
    out = template
    for key, value in metric.items():
        out = out.replace("{{" + key + "}}", value)
    return out


def draw(
    base: str, dashboard: dict, substitute: Callable[[str], str], out: Path, *, minutes: int, skipped: dict
) -> None:
    import matplotlib as mpl  # noqa: PLC0415 - only when a picture is asked for

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    end = time.time()
    start = end - minutes * 60
    cols = 3
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(16, 3.6 * rows))
    for ax, panel in zip(axes.flat, panels, strict=False):
        ax.set_title(panel["title"], fontsize=10)
        if panel["title"] in skipped:
            ax.text(0.5, 0.5, "no data in the sandbox:\n" + skipped[panel["title"]], ha="center", va="center",
                    fontsize=8, wrap=True, transform=ax.transAxes)  # fmt: skip
            ax.set_axis_off()
            continue
        for target in panel["targets"]:
            for series in query_range(base, substitute(target["expr"]), start, end, 10):
                times = [dt.datetime.fromtimestamp(float(t), tz=dt.UTC) for t, _ in series["values"]]
                values = [float(v) for _, v in series["values"]]
                ax.plot(times, values, label=legend(target.get("legendFormat", ""), series["metric"]))
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
        ax.set_ylabel(unit, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.xaxis.set_major_formatter(mpl.dates.DateFormatter("%H:%M"))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="upper left")
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_axis_off()
    fig.suptitle(f"{dashboard['title']}: the sandbox's Prometheus, last {minutes} minutes (UTC)", fontsize=12)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
