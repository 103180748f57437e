# -*- coding: utf-8 -*-
# Copyright: (c) 2026, carbon254 platform engineering <platform@254carbon.com>
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0.txt)
"""Prometheus' text exposition format, as much as the health check needs: the metric names a /metrics page has."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

_SAMPLE_NAME = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)")


def parse_metric_names(text):
    """(families, samples): names from `# TYPE`/`# HELP` lines, and names of the sample lines."""
    families = set()
    samples = set()
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] in ("TYPE", "HELP"):
                families.add(parts[2])
            continue
        match = _SAMPLE_NAME.match(line)
        if match:
            samples.add(match.group(1))
    return families, samples


def missing_metrics(text, expected):
    """The names in `expected` that are neither a metric family nor a sample name in `text`."""
    families, samples = parse_metric_names(text)
    return [name for name in expected if name not in families and name not in samples]
