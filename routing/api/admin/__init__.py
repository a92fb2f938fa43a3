"""The admin API, one module per resource (policies, catalog, applications, budgets, keys, erasures), at
two levels, each a permission class (routing/api/permissions.py):

- `app:admin` — an application administers itself: its own keys (never wider than the key minting them)
  and its own budget and usage, read-only. It never reaches another application.
- `platform:admin` — the installation: policies and versions, the model catalog, every application, key
  and budget. Only a person with the policy-admin role (or a superuser) holds such a key.

A key acts for the person who minted it (`ApiKey.created_by`): what it creates is authored by that
person, the ledger names the person as actor and the key's prefix as `via_key`, and its powers end
when the person loses the policy-admin role or is deactivated. A legacy key without an owner cannot
administer anything. Four-eyes holds here as in the UI: a version is activated only once submitted, by a
person who neither wrote nor submitted it — so one admin's key can never activate what that admin wrote.
"""
