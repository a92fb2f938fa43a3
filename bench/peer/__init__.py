"""Arbiter side by side with LiteLLM: per-request overhead, CPU per request, saturation throughput, the
escalation penalty and the logging tax, all against the local model server (synthetic, zero latency); and
streamed calls, time to first byte and to the last byte, with the model server paced at STREAM_TOKEN_MS per
token for that phase.

Systems, each reached with the same prompts:
- direct: the `openai` SDK straight to the model server (the baseline every "added" figure subtracts);
- arbiter: `/v1/chat/completions` on gunicorn with Celery workers, full ledger; the request becomes a job,
  the default policy's `cheap-extraction` rule answers at nano (marker `[confidence:nano=0.95]`): one hop;
- arbiter-noledger: the same processes with `audit.ledger.append` and `audit.payloads.store` replaced by
  no-ops (a bench-only stub: Arbiter has no switch to turn its ledger off) — for the logging tax only;
- litellm-proxy: `litellm --config` (one uvicorn worker, no database), LiteLLM pinned in
  bench/peer-requirements.txt and installed into its own virtualenv bench/.peer-venv (never Arbiter's);
- litellm-router: LiteLLM's in-process `Router`, in a process of the peer virtualenv driven over a pipe.

Placement: the load generator (this process) and the model server on one core, the system under test
on the other (sched_setaffinity; skipped on a one-core machine). Postgres and Redis are the machine's
shared servers and are not pinned. Systems are measured in rounds, A/B/A/B, the order rotating each
round; figures are medians over rounds with their spread (min-max). Every loop is bounded in count and
in time and targets loopback only; the peer's outbound fetches are disabled and any other HTTP(S) is
sent to a dead loopback proxy.

    python -m bench.peer [--quick] [--json]

Modules: `load` (the closed- and open-loop generators, saturation search), `processes` (pinning,
stopping, CPU metering), `litellm_env` (the peer's virtualenv, configuration and in-process Router
driver), `arbiter` (Arbiter's processes and its ledger stub), `report` (medians, ratios, logging tax)
and `runner` (one round, the whole run).

Every module of this package imports only the standard library at the top: the peer virtualenv runs
`bench.peer.litellm_env` as the in-process Router's driver.
"""
