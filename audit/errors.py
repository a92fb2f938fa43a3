"""The ledger's errors, apart so that the sealer and the writer share them without importing each other."""


class LedgerError(Exception):
    """An event cannot be written as given; the message says what to change."""
