"""A local OpenAI-compatible model server (Chat Completions) for machines without internet.

Standalone: it imports nothing from Django or the rest of Arbiter but the task types, from the pure
``routing.decide.tiers`` (one vocabulary for the server and the router). Two modes:

- **synthetic** (default): models ``sim-nano``, ``sim-mini``, ``sim-flagship``, and any
  ``sim-<tier>-<suffix>`` (``sim-nano-b``) that behaves like its tier but has its own fault knobs.
  Outcomes are deterministic for (server seed [+ request ``seed``], tier, messages); see ``synthetic``.
- **recorded**: answers replayed from a JSON Lines outcomes file; see ``recorded``.

Control markers in message text (synthetic mode; ``[item:...]`` in recorded mode):

- ``[task:classification]`` task type (else inferred from keywords, else ``general``);
- ``[difficulty:0.9]`` item difficulty in [0, 1] (else from a content hash, mildly raised by length);
- ``[confidence:nano=0.95,mini=0.6,flagship=0.4]`` forces a tier's confidence; correct = confidence >= 0.5;
- ``[call:issue_refund {"amount": 150}]`` answers with that tool call when the request has ``tools``,
  offered or not, unless ``tool_choice`` is ``"none"`` or the last message is a tool result;
- ``[invalid_json]`` makes a ``json_object``/``json_schema`` answer, or a tool call's arguments, invalid
  JSON; ``[invalid_json:nano,mini]`` does so only for those tiers;
- ``[item:<id>]`` picks a recorded item.

Confidence convention: with ``logprobs: true`` the FIRST content token carries ``log(confidence)`` and
every other token ``0.0``, so ``exp(sum(token logprobs))`` returns the confidence to ~1e-12. A
``json_schema`` answer fills a numeric ``confidence`` property with the same value (``self_report``).
A tool-call answer carries a short content ("Calling <name>.") so its confidence is readable too.
A recorded response without a confidence is served with ``logprobs: null``.

``stream: true`` answers the same completion as server-sent events, one content chunk per token (with
``stream_options.include_usage`` a usage chunk); the ``token_ms`` fault knob paces generation, streamed or
not. See ``streaming``.

Usage::

    from modelserver import ModelServer
    with ModelServer(latency_scale=0) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        server.set_faults("sim-nano", error_rate=1.0)

Command line: ``python -m modelserver --help`` and ``python -m modelserver generate --help``.
"""

from modelserver.recorded import OutcomesFileError, load_outcomes
from modelserver.server import ModelServer
from modelserver.synthetic import TIER_ORDER, TIERS

__all__ = ["TIERS", "TIER_ORDER", "ModelServer", "OutcomesFileError", "load_outcomes"]
