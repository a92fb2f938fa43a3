"""Detectors that find personal data in text before it is stored, and `redact` that blanks it.

A detector is a callable `(text) -> iterable of (start, end, label)`. The built-in ones find e-mail
addresses, phone numbers, IBANs (mod-97 check) and payment card numbers (Luhn check); the setting
ARBITER_REDACTORS adds more by dotted path (e.g. "myorg.detectors.employee_ids"). Each finding is
replaced by "[REDACTED:<LABEL>]"; overlapping findings are merged.

The checksums keep false positives down: a 16-digit order number that fails Luhn is left alone.

`redact_value` applies the same to every string of a JSON value (labels, metadata, a stored payload);
`redact_free_text` is what the ledger applies to the free-text fields of an event body (FREE_TEXT_KEYS):
reviewers' reasons and error messages are written by people and providers, and may quote anyone.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator

from django.conf import settings
from django.utils.module_loading import import_string

Span = tuple[int, int, str]
Detector = Callable[[str], Iterable[Span]]

_EMAIL = re.compile(r"(?<![\w.%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![\w-])")
_CARD = re.compile(r"(?<![\d-])(?:\d{13,19}|\d{4}(?:[ -]\d{4}){3}|\d{4}[ -]\d{6}[ -]\d{5})(?![\d])")
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]{4}){2,7}(?: ?[A-Za-z0-9]{1,4})?(?![A-Za-z0-9])")
_PHONE = re.compile(
    r"(?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,6}(?!\w)"  # international: +44 20 7946 0958
    r"|(?<!\w)(?:\(\d{3}\) ?|\d{3}[.-])\d{3}[.-]\d{4}(?!\w)"  # North American: (415) 555-2671
    r"|(?<!\w)0\d{1,4}(?:[ -]\d{2,4}){2,4}(?!\w)"  # national with trunk 0: 020 7946 0958, 01 23 45 67 89
)


def detect_email(text: str) -> Iterator[Span]:
    for match in _EMAIL.finditer(text):
        yield match.start(), match.end(), "EMAIL"


def detect_card(text: str) -> Iterator[Span]:
    for match in _CARD.finditer(text):
        digits = re.sub(r"\D", "", match.group())
        if 13 <= len(digits) <= 19 and luhn_valid(digits):
            yield match.start(), match.end(), "CARD"


def detect_iban(text: str) -> Iterator[Span]:
    for match in _IBAN.finditer(text):
        compact = match.group().replace(" ", "").upper()
        if 15 <= len(compact) <= 34 and iban_valid(compact):
            yield match.start(), match.end(), "IBAN"


def detect_phone(text: str) -> Iterator[Span]:
    for match in _PHONE.finditer(text):
        digits = sum(character.isdigit() for character in match.group())
        if 8 <= digits <= 15:
            yield match.start(), match.end(), "PHONE"


BUILT_IN: tuple[Detector, ...] = (detect_email, detect_card, detect_iban, detect_phone)


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, character in enumerate(reversed(digits)):
        value = int(character)
        if index % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def iban_valid(compact: str) -> bool:
    rearranged = compact[4:] + compact[:4]
    try:
        number = int("".join(str(int(character, 36)) for character in rearranged))
    except ValueError:
        return False
    return number % 97 == 1


def detectors() -> tuple[Detector, ...]:
    return _detectors(tuple(settings.ARBITER_REDACTORS))


@functools.lru_cache(maxsize=8)
def _detectors(extra: tuple[str, ...]) -> tuple[Detector, ...]:
    return (*BUILT_IN, *(import_string(path) for path in extra))


# Text that was redacted already (by its sender, or a copy kept redacted) still says what it held.
_MARKER = re.compile(r"\[REDACTED:([A-Za-z0-9_]+)\]")


def detected(value: object) -> frozenset[str]:
    """The labels (EMAIL, PHONE, IBAN, CARD, and those of ARBITER_REDACTORS) of the personal data found
    in a text or in any string of a JSON value, redaction markers included — what a policy condition on
    detected data reads."""
    if isinstance(value, str):
        found = {label for detector in detectors() for _, _, label in detector(value)}
        return frozenset(found.union(_MARKER.findall(value)))
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list | tuple):
        return frozenset().union(*(detected(item) for item in value))
    return frozenset()


def redact(text: str) -> tuple[str, int]:
    """The text with every finding replaced, and how many findings there were."""
    spans = sorted((span for detector in detectors() for span in detector(text)), key=lambda span: (span[0], -span[1]))
    pieces, cursor, count = [], 0, 0
    for start, end, label in spans:
        if start < cursor:  # overlaps the previous finding: extend it
            if end > cursor:
                cursor = end
            continue
        pieces.append(text[cursor:start])
        pieces.append(f"[REDACTED:{label}]")
        cursor, count = end, count + 1
    pieces.append(text[cursor:])
    return "".join(pieces), count


def redact_value(value: object) -> tuple[object, int]:
    """A JSON value with every string redacted, and how many findings there were.

    Keys are names the caller chose and are kept, unless a detector finds personal data in one: the API
    refuses such label names, but a service called directly must not store one raw either. Two keys
    that redact to the same text are numbered so that neither value is lost."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list | tuple):
        items = [redact_value(item) for item in value]
        return [item for item, _ in items], sum(count for _, count in items)
    if isinstance(value, dict):
        redacted: dict[object, object] = {}
        total = 0
        for key, item in value.items():
            if isinstance(key, str):
                key, found = redact(key)
                total += found
                base, number = key, 1
                while found and key in redacted:
                    number += 1
                    key = f"{base}#{number}"
            redacted[key], found = redact_value(item)
            total += found
        return redacted, total
    return value, 0


# Keys under which an event body carries text that people or providers wrote. Only these are redacted
# wholesale: other strings are digests, ids and names, and a hex digest can look like a card number.
# `invalid_tool_calls` are schema-violation messages: written from the schema, but redacted all the same.
FREE_TEXT_KEYS = frozenset(
    {"reason", "reasons", "error", "comment", "reference", "status_reason", "invalid_tool_calls"}
)


def redact_free_text(value: object, *, free: bool = False) -> object:
    """`value` with the strings under FREE_TEXT_KEYS (at any depth) redacted; everything else as given."""
    if isinstance(value, dict):
        return {key: redact_free_text(item, free=free or key in FREE_TEXT_KEYS) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact_free_text(item, free=free) for item in value]
    if free and isinstance(value, str):
        return redact(value)[0]
    return value
