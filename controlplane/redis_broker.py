"""Kombu's Redis transport with one defect of kombu 5.7 / celery 5.7 worked around: a worker's main
process must survive the loss of its broker.

The defect: when the broker connection breaks, the worker's consumer calls `Connection.collect()`,
which detaches the transport (`transport.client = None`), and then `Connection.close()`, which closes
the default channel a second time. If the first close failed half-way (the channel was polling with
BRPOP, so reading the dead socket raised before it reached the restore) and the channel still holds
an unacknowledged message (acks_late: a task was running while another pool slot polled), the second
close tries to restore that message through a new connection pool built from `transport.client`,
which is now None: `AttributeError: 'NoneType' object has no attribute 'hostname'` in `_connparams`.
An AttributeError is not a connection error, so it escapes kombu's and celery's `ignore_errors` and
ends the worker. It does not depend on the URL form (`redis://` and `redis+socket://` fail alike).

The workaround raises the transport's own connection error instead, which both callers already
ignore. The message is not lost: it stays in Redis's unacked hash (the broker's append-only file keeps
it over a restart) and kombu restores it when its visibility timeout passes, as for any worker that
died holding it; the job row in Postgres stays the truth either way.
"""

from __future__ import annotations

from typing import Any

import kombu.transport
import redis
from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        if self.connection is None or self.connection.client is None:
            raise redis.exceptions.ConnectionError("the broker connection was already closed")
        return super()._connparams(asynchronous=asynchronous)


class Transport(kombu_redis.Transport):
    Channel = Channel


def install() -> None:
    """Make `redis://`, `rediss://` and `redis+socket://` broker URLs use this transport.

    A URL's `+` prefix overrides Celery's `broker_transport` setting, so the alias is the one place
    that reaches every URL form. Called before the Celery app opens any connection.
    """
    for scheme in ("redis", "rediss"):
        kombu.transport.TRANSPORT_ALIASES[scheme] = f"{__name__}:Transport"
        kombu.transport._transport_cache.pop(scheme, None)
