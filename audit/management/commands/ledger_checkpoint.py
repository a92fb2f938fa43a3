"""manage.py ledger_checkpoint [--force] | --public-key [--pem] — sign the chain head now."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from audit import checkpoints


class Command(BaseCommand):
    help = "Seal pending events and write a signed checkpoint of the chain head (database and file)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--public-key", action="store_true", help="print the signing key's public key and exit")
        parser.add_argument("--pem", action="store_true", help="with --public-key: PEM instead of base64")
        parser.add_argument("--force", action="store_true", help="sign even if the head is already checkpointed")

    def handle(self, *args, **options) -> None:
        if options["public_key"]:
            self.stdout.write(checkpoints.public_key_pem() if options["pem"] else checkpoints.public_key_b64())
            return
        checkpoint = checkpoints.checkpoint_write(force=options["force"])
        if checkpoint is None:
            self.stdout.write("nothing new to checkpoint (the chain is empty or its head is already signed)")
            return
        self.stdout.write(
            f"checkpoint seq {checkpoint.seq} hash {checkpoint.hash} at {checkpoint.time} "
            f"written to the database and {settings.ARBITER_CHECKPOINT_FILE}"
        )
