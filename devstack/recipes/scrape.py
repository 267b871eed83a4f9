"""The stack's Prometheus configuration, derived from the declaration: every service that
declares a metrics endpoint is one scrape job (its name), reached by its name on the stack's
network. Nothing is listed by hand, so nothing is listed twice or forgotten."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace

from devstack.declare.capabilities import MetricsStore
from devstack.declare.spec import File, Service

CONFIG_PATH = "/etc/prometheus/prometheus.yml"


def prometheus_config(store: MetricsStore, services: Sequence[Service]) -> str:
    """prometheus.yml scraping every service of `services` that declares metrics, written as
    JSON (YAML's subset: no YAML library imported to declare a stack; `status` is fast)."""
    interval = store.scrape_interval
    jobs = [
        {
            "job_name": s.name,
            "metrics_path": s.metrics.path,
            "static_configs": [{"targets": [f"{s.name}:{s.metrics.port}"]}],
        }
        for s in services
        if s.metrics is not None
    ]
    config = {
        "global": {
            "scrape_interval": interval,
            "scrape_timeout": interval,
            "evaluation_interval": interval,
        },
        "scrape_configs": jobs,
    }
    header = "# Written by devstack from the stack's declaration (stack.py): do not edit.\n"
    return header + json.dumps(config, indent=2) + "\n"


def with_scrape_configs(services: Sequence[Service]) -> tuple[Service, ...]:
    """`services`, each Prometheus server among them given its derived configuration."""
    return tuple(
        replace(
            s,
            files=(
                *(f for f in s.files if f.path != CONFIG_PATH),
                File(CONFIG_PATH, prometheus_config(s.metrics_store, services)),
            ),
        )
        if s.metrics_store is not None
        else s
        for s in services
    )
