"""The peer bench's streamed phase: what counts as the first byte, and how added figures are computed.
No timing is asserted: only which chunk is taken and the arithmetic over rounds."""

from __future__ import annotations

import openai

from bench.peer.load import STREAM_OPTIONS, closed_loop, consume_stream
from bench.peer.report import aggregate
from modelserver import ModelServer

PROMPT = "[task:classification] [confidence:nano=0.95] my card was charged twice"


def test_the_first_byte_is_the_role_chunk_and_the_stream_is_read_to_its_end() -> None:
    with ModelServer(latency_scale=0) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        whole = client.chat.completions.create(model="sim-nano", messages=[{"role": "user", "content": PROMPT}])

        def call(number: int) -> dict:
            return consume_stream(client.chat.completions.create(
                model="sim-nano", messages=[{"role": "user", "content": PROMPT}], stream=True,
                stream_options=STREAM_OPTIONS))

        outcome = call(0)
        result = closed_loop(call, requests=3, concurrency=1, time_limit=30)

    # role chunk, one chunk per content token, the finish_reason chunk, the usage chunk
    assert outcome["chunks"] == 1 + whole.usage.completion_tokens + 1 + 1
    assert outcome["usage"] is True
    assert outcome["first_byte_s"] <= outcome["first_content_s"] <= outcome["last_byte_s"]
    assert result["ok"] == 3
    assert result["stream"]["chunks"] == [outcome["chunks"]] * 3
    assert len(result["stream"]["ttfb_ms"]) == 3


def test_a_stream_with_no_role_or_content_is_a_failed_request() -> None:
    result = closed_loop(lambda number: consume_stream(iter([])), requests=2, concurrency=1, time_limit=5)

    assert (result["ok"], result["errors"]) == (0, 2)
    assert "without a role or content" in result["first_error"]


def _round(direct: float, arbiter: float, peer: float) -> dict:
    def system(ttfb: float, total: float) -> dict:
        level = {"p50_ms": total, "p99_ms": total + 10, "ttfb_p50_ms": ttfb, "ttfb_p99_ms": ttfb + 5,
                 "first_content_p50_ms": ttfb, "per_s": 1.0, "errors": 0, "chunks_min": 7, "without_usage": 0}
        plain = {"p50_ms": total, "p99_ms": total, "per_s": 1.0, "errors": 0}
        return {"cpu_ms_per_request": 1.0, "c1": plain, "c16": plain, "stream": {"c1": level, "c16": level}}

    return {"direct": system(direct, direct + 80), "arbiter": system(arbiter + 80, arbiter + 80),
            "litellm-proxy": system(peer, peer + 80)}


def test_added_figures_are_system_minus_direct_per_round_then_the_median() -> None:
    summary = aggregate([_round(4, 170, 30), _round(10, 150, 20), _round(6, 200, 40)], {})

    arbiter = summary["systems"]["arbiter"]
    # per round: first byte 250-4, 230-10, 280-6; last byte 250-84, 230-90, 280-86 (not 250-6 and 250-86)
    assert arbiter["stream_c1_added_ttfb_p50_ms"] == {"median": 246, "min": 220, "max": 274, "n": 3}
    assert arbiter["stream_c16_added_p50_ms"]["median"] == 166
    assert arbiter["stream_c1_added_ttfb_p99_ms"]["median"] == 246
    assert summary["systems"]["litellm-proxy"]["stream_c1_added_ttfb_p50_ms"]["median"] == 26
    assert summary["ratios"]["litellm-proxy"]["stream_c1_added_ttfb_p50_ms"]["ratio"] == round(246 / 26, 2)
    assert "stream_c1_added_ttfb_p50_ms" not in summary["systems"]["direct"]


def test_no_ratio_over_a_peer_figure_at_or_below_zero() -> None:
    rounds = [_round(4, 170, 30)]
    rounds[0]["litellm-proxy"]["stream"]["c1"] = rounds[0]["direct"]["stream"]["c1"]  # the peer adds 0

    summary = aggregate(rounds, {})

    assert summary["ratios"]["litellm-proxy"]["stream_c1_added_ttfb_p50_ms"]["ratio"] is None
