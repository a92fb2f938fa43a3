"""The fault suite (issue 16): faults on whole `make run` stacks under client load, and what they cost.

    stack.py      the launcher in a temporary directory; its processes by role (from /proc); its services
    load.py       clients: jobs with Idempotency-Keys, the openai SDK on /v1/chat/completions
    observe.py    the stack's database: job timelines (recovery times) and the final accounting
    scenarios.py  the faults and the checks every scenario makes
    __main__.py   `make chaos`: every scenario, Redis then RabbitMQ, report in results/latest.md
    test_quick.py the short run in `make test`; test_chaos.py the long one (`pytest -m chaos tests/faults`)
"""
