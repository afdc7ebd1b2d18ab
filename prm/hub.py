"""The Hugging Face hub as the pipeline sees it: offline mode, a quick reachability probe, hub-id syntax.

A machine without network must fail at once with a line that says so, not after the hub client's minute of
retries; with `HF_HUB_OFFLINE=1` nothing here touches the network.
"""

from __future__ import annotations

import functools
import os
import re
import socket
from urllib.parse import urlparse

MODELS_OFFLINE = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")  # the switches transformers obeys
DATASETS_OFFLINE = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")  # the switches datasets obeys
# `org/name` (or a legacy bare `name`): letters, digits, `-`, `_`, `.`; no part starts with `.` or `-`.
_HUB_ID = re.compile(r"(?:[A-Za-z0-9_][\w.-]*/)?[A-Za-z0-9_][\w.-]*")


def hub_offline(variables: tuple[str, ...] = MODELS_OFFLINE) -> bool:
    """Whether one of the offline switches (`HF_HUB_OFFLINE=1`, ...) is set."""
    return any(os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on") for name in variables)


def hub_host() -> str:
    return urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"


def hub_reachable(timeout: float = 3.0, offline_variables: tuple[str, ...] = MODELS_OFFLINE) -> bool:
    """A quick TCP connect to the hub, once per process and host (False at once in offline mode, never
    touching the network)."""
    return not hub_offline(offline_variables) and _can_connect(hub_host(), timeout)


@functools.cache
def _can_connect(host: str, timeout: float) -> bool:
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def looks_like_hub_id(name: str) -> bool:
    """`org/name` with exactly one slash (or a legacy bare name such as `gpt2`), nothing that reads as a
    path: no leading `.`, `/` or `~`, no second slash, no backslash, no `..`."""
    return bool(_HUB_ID.fullmatch(name)) and ".." not in name
