"""A customer's personal data, unique per test (the test database is shared and never flushed), and a
held refund whose prompt, labels, metadata and tool-call arguments carry all of it."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

from audit.models import LedgerEvent, Payload, PayloadReference
from routing.models import Job
from tests.support.governed import REFUND_TOOL
from tests.support.workers import finished


@dataclass(frozen=True)
class Customer:
    email: str
    phone: str = "+44 20 7946 0958"
    iban: str = "GB82WEST12345698765432"
    card: str = "4111 1111 1111 1111"

    @classmethod
    def new(cls) -> Customer:
        return cls(email=f"jane.{uuid.uuid4().hex[:10]}@example.com")

    @property
    def raw_values(self) -> tuple[str, ...]:
        return (self.email, self.phone, self.iban, self.card, self.card.replace(" ", ""))

    def arguments(self, amount: int = 150) -> dict:
        return {"amount": amount, "email": self.email, "phone": self.phone, "iban": self.iban, "card": self.card}

    def prompt(self) -> str:
        call = json.dumps(self.arguments())
        return (
            f"[task:general] [confidence:mini=0.9,flagship=0.9] [call:issue_refund {call}] refund for {self.email}, "
            f"call {self.phone}, pay to {self.iban}, charged on card {self.card}"
        )


def held_refund(setup, customer: Customer, **fields) -> Job:
    return finished(
        setup.submit(
            customer.prompt(),
            task_type="general",
            tools=REFUND_TOOL,
            labels={"region": "eu", "customer": customer.email, "phone": customer.phone},
            metadata={"iban": customer.iban, "card": customer.card, "note": f"contact {customer.email}"},
            **fields,
        )
    )


def ledger_texts(job: Job) -> list[str]:
    """The canonical (hashed) text of every event about the job."""
    return list(LedgerEvent.objects.filter(subject_job=str(job.pk)).values_list("canonical", flat=True))


def payload_texts(job: Job) -> list[str]:
    digests = PayloadReference.objects.filter(subject_job=str(job.pk)).values_list("payload_id", flat=True)
    return list(Payload.objects.filter(digest__in=digests).values_list("content", flat=True))
