"""Counts of chat completion requests per model and per status, so a test can assert
"the provider was called twice" from outside the process under test."""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from typing import Any

# Not an HTTP status the server sends: the client went away while the request was held (nginx's 499).
CLIENT_CLOSED = 499


class RequestStats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_model: defaultdict[str, Counter[int]] = defaultdict(Counter)
        self._by_status: Counter[int] = Counter()

    def record(self, model: str | None, status: int) -> None:
        with self._lock:
            self._by_status[status] += 1
            if model is not None:
                self._by_model[model][status] += 1

    def reset(self) -> None:
        with self._lock:
            self._by_model.clear()
            self._by_status.clear()

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready: status codes become string keys, as they would after a round trip anyway."""
        with self._lock:
            return {
                "total": sum(self._by_status.values()),
                "by_status": {str(status): count for status, count in sorted(self._by_status.items())},
                "by_model": {
                    model: {str(status): count for status, count in sorted(counts.items())}
                    for model, counts in sorted(self._by_model.items())
                },
            }
