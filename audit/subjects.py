"""Names for the subjects the ledger records by id only.

The ledger knows an event's subject application as an id; the app that owns applications (routing)
registers, when Django starts, how to list them, so the ledger's pages offer names without audit
importing routing. Until something registers, there is nothing to offer and the filters show only "any".
"""

from __future__ import annotations

from collections.abc import Callable

ApplicationLister = Callable[[], list[tuple[str, str]]]

_listers: list[ApplicationLister] = []


def register_applications(lister: ApplicationLister) -> None:
    """`lister()` returns (id, name) pairs, in the order to show them."""
    if lister not in _listers:
        _listers.append(lister)


def applications() -> list[tuple[str, str]]:
    return [pair for lister in _listers for pair in lister()]


def application_choices(blank: str) -> list[tuple[str, str]]:
    return [("", blank), *applications()]


def application_name(application_id: str) -> str:
    return dict(applications()).get(str(application_id), f"application {application_id}")
