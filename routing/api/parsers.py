"""A JSON parser that refuses, with a 4xx naming the place, what would otherwise fail later as a 500.

Django's DATA_UPLOAD_MAX_MEMORY_SIZE guards `request.body`, but DRF's parser reads the stream, so the
size is enforced here: from Content-Length before reading, and while reading. Postgres refuses NUL
characters and lone surrogates in text and JSON; Python's json accepts NaN, Infinity, integers of any
size and nesting up to the recursion limit. None of these reach a service.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from rest_framework.parsers import BaseParser

from routing.api.errors import PayloadTooLarge, Problem, field_problem

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class _Refused(ValueError):
    pass


def _constant(name: str) -> Any:
    raise _Refused(f"{name} is not a JSON number; send a finite number")


def _int(text: str) -> int:
    if len(text) > 20:
        raise _Refused(f"the number {text[:24]}… does not fit in 64 bits")
    value = int(text)
    if not INT64_MIN <= value <= INT64_MAX:
        raise _Refused(f"the number {text} does not fit in a signed 64-bit integer")
    return value


def _float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _Refused(f"the number {text[:24]} is out of range")
    return value


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        duplicate = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise _Refused(f"the key {duplicate!r} appears twice in one object")
    return result


def _path(parts: tuple) -> str | None:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or None


def check_json_value(data: Any, *, max_depth: int) -> None:
    """Walk parsed JSON without recursion: depth, NUL characters and lone surrogates, keys included."""
    stack: list[tuple[Any, tuple, int]] = [(data, (), 1)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, str):
            _check_text(value, path)
        elif isinstance(value, dict | list):
            if depth > max_depth:
                raise field_problem(_path(path), f"JSON is nested more than {max_depth} levels deep", code="too_deep")
            if isinstance(value, dict):
                for key, item in value.items():
                    _check_text(key, (*path, key), is_key=True)
                    stack.append((item, (*path, key), depth + 1))
            else:
                stack.extend((item, (*path, index), depth + 1) for index, item in enumerate(value))


def _check_text(text: str, path: tuple, *, is_key: bool = False) -> None:
    what = "a key" if is_key else "a string"
    if "\x00" in text:
        raise field_problem(
            _path(path), f"{what} contains a NUL character (\\u0000), which is not allowed", code="nul_character"
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise field_problem(
            _path(path), f"{what} contains a lone UTF-16 surrogate (an invalid \\uD8xx escape)", code="invalid_unicode"
        ) from None


def read_limited(stream: Any, meta: dict[str, Any]) -> bytes:
    limit = settings.ARBITER_API_MAX_BODY_BYTES
    try:
        declared = int(meta.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise Problem("the Content-Length header is not a number", code="bad_content_length") from None
    if declared > limit:
        raise PayloadTooLarge(limit)
    raw = stream.read(limit + 1)
    if len(raw) > limit:
        raise PayloadTooLarge(limit)
    return raw


def parse_json_bytes(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise Problem(f"the body is not valid UTF-8 (byte {error.start})", code="invalid_utf8") from None
    try:
        data = json.loads(text, parse_constant=_constant, parse_int=_int, parse_float=_float, object_pairs_hook=_pairs)
    except _Refused as refused:
        raise Problem(str(refused), code="invalid_number" if "number" in str(refused) else "malformed_json") from None
    except RecursionError:
        raise Problem("JSON is nested too deeply", code="too_deep") from None
    except ValueError as error:
        raise Problem(f"malformed JSON: {error}", code="malformed_json") from None
    check_json_value(data, max_depth=settings.ARBITER_API_MAX_JSON_DEPTH)
    return data


class StrictJSONParser(BaseParser):
    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        request = (parser_context or {}).get("request")
        meta = request.META if request is not None else {}
        charset = (media_type or "").partition("charset=")[2].strip().lower()
        if charset and charset not in ("utf-8", "utf8"):
            raise Problem(f"only UTF-8 JSON is accepted, not {charset}", status_code=415, code="unsupported_charset")
        return parse_json_bytes(read_limited(stream, meta))
