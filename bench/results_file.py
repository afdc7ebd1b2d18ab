"""The JSON file a training benchmark writes to bench/results/: the machine, the settings and the results."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any


def write_bench_json(out: str, threads: int, settings: dict[str, Any], results: Any) -> None:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps({
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "threads": threads,
                    "python": platform.python_version()},
        "settings": settings,
        "results": results,
    }, indent=1) + "\n")
    print(f"JSON: {out}")
