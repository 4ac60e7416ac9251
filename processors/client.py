"""A small client for the latest-label endpoint of the processor workers."""

from __future__ import annotations

import json
from typing import Any
from urllib.error import HTTPError
from urllib.parse import quote
from urllib.request import urlopen

from labelstore.errors import LabelstoreError


class ProcessorNotReadyError(LabelstoreError):
    """The workers are starting or rebalancing; asking again shortly will work."""


class LatestLabelsClient:
    """Ask any worker; the request is forwarded to the one that owns the entity."""

    def __init__(self, base_url: str = "http://127.0.0.1:6066", *, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def labels(self, entity_type: str, entity_id: str) -> dict[str, Any] | None:
        """``{label: {value, rule_version, event_time, recorded_at, caused_by, version_id}}``;
        None when the processor has seen no event of the entity."""
        entity = self.entity(entity_type, entity_id)
        return None if entity is None else entity["labels"]

    def entity(self, entity_type: str, entity_id: str) -> dict[str, Any] | None:
        """The whole answer: labels and ``last_offset``, the log offset of the last event folded."""
        url = f"{self.base_url}/labels/{quote(entity_type, safe='')}/{quote(entity_id, safe='')}/"
        try:
            with urlopen(url, timeout=self.timeout) as response:
                return json.load(response)
        except HTTPError as exc:
            if exc.code == 404:
                return None
            if exc.code == 503:
                raise ProcessorNotReadyError(f"GET {url}: the processor is not ready yet") from exc
            raise LabelstoreError(f"GET {url} answered {exc.code}: {exc.read()[:200]!r}") from exc

    def value(self, entity_type: str, entity_id: str, label: str) -> Any:
        labels = self.labels(entity_type, entity_id) or {}
        return labels.get(label, {}).get("value")
