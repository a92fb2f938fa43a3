"""The GSM8K conversion and the reading of recorded-outcomes files."""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from evaluation.recorded.outcomes import EvaluationError, parse_tier_map, read_outcomes
from tests.support.evaluations import BASE_DIR, GPT4, GSM8K, MIXTRAL, read_jsonl, synthetic, write_jsonl

SOURCE_CSV = BASE_DIR.parent / "shared" / "data" / "routellm-gsm8k" / "gsm8k_responses.csv"
needs_source = pytest.mark.skipif(not SOURCE_CSV.exists(), reason="the RouteLLM CSV is not on this machine")


@needs_source
def test_it_reproduces_the_committed_gsm8k_file_byte_for_byte(tmp_path: Path) -> None:
    out = tmp_path / "gsm8k.jsonl"
    call_command("import_gsm8k", "--csv", str(SOURCE_CSV), "--out", str(out), stdout=io.StringIO())
    assert out.read_bytes() == GSM8K.read_bytes()


@needs_source
def test_it_keeps_every_answer_and_verdict_and_invents_nothing() -> None:
    with SOURCE_CSV.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    items = read_jsonl(GSM8K)
    assert len(items) == len(rows) == 1319
    for row, item in zip(rows, items, strict=True):
        assert item["task_type"] == "reasoning"
        assert item["messages"] == [{"role": "user", "content": row["prompt"]}]
        assert "reference" not in item
        for model in (MIXTRAL, GPT4):
            assert item["responses"][model] == {
                "content": row[f"{model}_response"],
                "correct": row[model] == "True",
            }
    accuracy = {m: sum(i["responses"][m]["correct"] for i in items) / len(items) for m in (MIXTRAL, GPT4)}
    assert round(accuracy[MIXTRAL], 3) == 0.638
    assert round(accuracy[GPT4], 3) == 0.857


def test_the_licence_notice_sits_beside_the_data() -> None:
    notice = (GSM8K.parent / "NOTICE.md").read_text()
    assert "Apache License 2.0" in notice
    assert "lm-sys/RouteLLM" in notice
    assert "Apache License" in (GSM8K.parent / "LICENSE").read_text()


def test_it_refuses_a_csv_that_is_not_the_routellm_layout(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("question,answer\nwhat?,42\n")
    with pytest.raises(CommandError, match="expected columns prompt"):
        call_command("import_gsm8k", "--csv", str(bad), "--out", str(tmp_path / "out.jsonl"))


def test_it_refuses_a_verdict_that_is_not_true_or_false(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("prompt,m,m_response\nwhat?,maybe,42\n")
    with pytest.raises(CommandError, match="row 1, column m: 'maybe' is not True/False"):
        call_command("import_gsm8k", "--csv", str(bad), "--out", str(tmp_path / "out.jsonl"))


def test_a_gzipped_file_reads_the_same_as_the_plain_one(tmp_path: Path) -> None:
    items = synthetic(20, seed=1)
    plain = write_jsonl(tmp_path / "plain.jsonl", items)
    packed = tmp_path / "packed.jsonl.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert read_outcomes(packed).items == read_outcomes(plain).items
    assert read_outcomes(packed).sha256 == read_outcomes(plain).sha256


def test_a_broken_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps(synthetic(1, seed=1)[0]) + "\n{not json\n")
    with pytest.raises(EvaluationError, match=r"broken.jsonl:2: not valid JSON"):
        read_outcomes(path)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("mini=sim-mini,mini=sim-flagship", "tier mini is given twice"),
        ("huge=sim-mini", "unknown tier 'huge'"),
        ("mini=gpt-9", "model 'gpt-9' has no recorded responses"),
        ("mini", "'mini' is not TIER=MODEL"),
        ("", "give at least one"),
    ],
)
def test_a_bad_tier_mapping_says_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(EvaluationError, match=message):
        parse_tier_map(spec, ["sim-nano", "sim-mini", "sim-flagship"])


def test_the_tier_mapping_is_put_in_tier_order() -> None:
    assert list(parse_tier_map("flagship=b,nano=a", ["a", "b"])) == ["nano", "flagship"]
