"""Handing each checkpoint to a witness the database cannot reach (ARBITER_CHECKPOINT_WITNESS).

The witness is the operator's: an `http(s)://` URL that receives each checkpoint as a JSON POST, or a
command (split like a shell would, run without one) that receives the checkpoint's JSON line on its
standard input — `tee -a /mnt/worm/checkpoints.jsonl`, `logger -t arbiter-ledger`, an upload to an
object-lock bucket. A 2xx answer or exit status 0 is a delivery.

A checkpoint signs the hash of the whole chain up to its seq, so the newest one vouches for everything
before it: a witness that missed some checkpoints loses nothing once it has a newer one. That is why
delivery keeps only the newest undelivered checkpoint and retries it (with backoff, up to a minute
apart) until it is delivered or a newer one replaces it. Delivery runs on its own thread: a slow or
failing witness never delays sealing, checkpointing or the file. Failures are logged at ERROR (the
first of a streak, then once a minute) so that log-based alerting sees them, and the recovery is logged.
"""

from __future__ import annotations

import logging
import shlex
import subprocess
import threading
import time
import urllib.error
import urllib.request

logger = logging.getLogger(__name__)

BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 60.0
REPEAT_ALERT_S = 60.0


class WitnessError(Exception):
    """The witness did not take the checkpoint; the message says what happened."""


def is_url(target: str) -> bool:
    return target.startswith(("http://", "https://"))


def deliver(target: str, line: bytes, *, timeout: float) -> None:
    """Hand one checkpoint (its JSON line) to the witness; raises WitnessError when it was not taken."""
    if is_url(target):
        request = urllib.request.Request(  # noqa: S310 (is_url: http(s) only)
            target, data=line, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (http(s) only)
                status = response.status
        except urllib.error.HTTPError as error:
            raise WitnessError(f"{target} answered {error.code}") from None
        except (urllib.error.URLError, OSError) as error:
            raise WitnessError(f"{target}: {error}") from None
        if not 200 <= status < 300:
            raise WitnessError(f"{target} answered {status}")
        return
    argv = shlex.split(target)
    try:
        result = subprocess.run(argv, input=line, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise WitnessError(f"{argv[0]} did not finish within {timeout:g} s") from None
    except OSError as error:
        raise WitnessError(f"{argv[0]}: {error}") from None
    if result.returncode != 0:
        said = result.stderr.decode("utf-8", "replace").strip().splitlines()
        raise WitnessError(f"{argv[0]} exited with {result.returncode}{': ' + said[-1][:200] if said else ''}")


class Witness:
    """The delivery thread: `offer` the newest checkpoint line; it is delivered, or retried until it is."""

    def __init__(self, target: str, *, timeout: float) -> None:
        self.target, self.timeout = target, timeout
        self._pending: bytes | None = None
        self._wake = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="ledger-witness", daemon=True)
        self.delivered = 0
        self.failing_since: float | None = None

    def start(self) -> Witness:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._thread.join(timeout)

    def offer(self, line: bytes) -> None:
        with self._wake:
            self._pending = line  # a newer checkpoint replaces one not yet delivered
            self._wake.notify()

    def _run(self) -> None:
        backoff, last_alert = 0.0, 0.0
        while True:
            with self._wake:
                self._wake.wait_for(lambda: self._stopping or self._pending is not None)
                if self._stopping:
                    return
                line = self._pending
            if line is None:
                continue
            try:
                deliver(self.target, line, timeout=self.timeout)
            except Exception as error:  # any failure of the witness is retried, never raised into sealing
                now = time.monotonic()
                if self.failing_since is None or now - last_alert >= REPEAT_ALERT_S:
                    since = f" (failing for {now - self.failing_since:.0f} s)" if self.failing_since else ""
                    logger.error("ledger witness: checkpoint not delivered%s, retrying: %s", since, error)
                    last_alert = now
                self.failing_since = self.failing_since or now
                backoff = min(max(backoff * 2, BACKOFF_FIRST_S), BACKOFF_MAX_S)
                with self._wake:
                    # Wait out the backoff even if a newer checkpoint arrives meanwhile.
                    self._wake.wait_for(lambda: self._stopping, timeout=backoff)
                continue
            with self._wake:
                if self._pending is line:
                    self._pending = None
            self.delivered += 1
            if self.failing_since is not None:
                logger.warning(
                    "ledger witness: delivering again after %.0f s of failures", time.monotonic() - self.failing_since
                )
            self.failing_since, backoff = None, 0.0
