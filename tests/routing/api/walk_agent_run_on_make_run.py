"""Walk #18's "done when" against a running `make run`: one agent run, end to end, with the real clients.

    make run                                                            # in one terminal
    .venv/bin/python tests/routing/api/walk_agent_run_on_make_run.py    # in another, from the same checkout

An OpenAI Agents SDK planner (on its default Responses API) runs twice under one run id; its tool is a
subagent that itself calls Arbiter (the openai SDK, role `subagent`). The demo policy's `runs:` section
allows three flagship calls, so the planner's fourth flagship call is downgraded. Then a refund agent in the
same run asks for a refund of 150: the policy holds it, the agent's request waits
(`x-arbiter-wait-for-approval`), the two demo reviewers mint personal tokens on the Tokens page and approve
it from the REST review API, the agent resumes, and its tool verifies the grant offline with the verifier as
GRANTS.md prints it and redeems it before it refunds. Redeeming again and a tampered argument are refused.
The run page shows the run's calls with their tiers and costs.

Not a test module (pytest does not collect it): it adds a run, with a held call, to the demo. Prints
PASS/FAIL per check and exits 1 on any failure.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import openai
from agents import Agent, RunConfig, Runner, function_tool
from agents.models.openai_provider import OpenAIProvider

ROOT = Path(__file__).resolve().parents[3]
creds = json.loads((ROOT / ".data" / "demo-credentials.json").read_text())
BASE, KEY = creds["base_url"], creds["api_key"]
PASSWORDS = {user["username"]: user["password"] for user in creds["users"]}
RUN_ID = str(uuid.uuid4())
REFUND = {"amount": 150, "order": "A-17"}
results: list[tuple[str, bool]] = []


def check(name: str, ok: bool, detail: object = "") -> None:
    results.append((name, ok))
    print(("PASS " if ok else "FAIL ") + name + (f"  [{detail}]" if detail and not ok else ""), flush=True)


def verifier():
    """`verify_grant` exactly as routing/api/GRANTS.md prints it."""
    text = (ROOT / "routing" / "api" / "GRANTS.md").read_text()
    code = re.search(r"```python verify_grant\.py\n(.*?)```", text, re.DOTALL).group(1)
    scope: dict = {}
    exec(compile(code, "verify_grant.py", "exec"), scope)  # noqa: S102 - the documented code, as printed
    return scope["verify_grant"]


PUBLIC_KEY = subprocess.run(
    [sys.executable, "manage.py", "ledger_checkpoint", "--public-key"], cwd=ROOT, capture_output=True, text=True,
    check=True,
).stdout.strip()
verify_grant = verifier()
api = httpx.Client(base_url=BASE, headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
grants: list[str] = []


async def keep_grants(response: httpx.Response) -> None:
    if response.headers.get("x-arbiter-grants"):
        grants.append(response.headers["x-arbiter-grants"])


def agents_client(role: str, task_type: str, **headers: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=f"{BASE}/v1", api_key=KEY, timeout=180,
        default_headers={"x-arbiter-run-id": RUN_ID, "x-arbiter-run-role": role, "x-arbiter-task-type": task_type,
                         **headers},
        http_client=httpx.AsyncClient(event_hooks={"response": [keep_grants]}, timeout=180),
    )


def run_config(client: openai.AsyncOpenAI) -> RunConfig:
    return RunConfig(model_provider=OpenAIProvider(openai_client=client), tracing_disabled=True)


# --- the planner and its subagent ------------------------------------------------------------------------

subagent_calls: list[str] = []


@function_tool
def research(topic: str) -> str:
    """A subagent: one cheap call of its own to Arbiter, in the same run."""
    sdk = openai.OpenAI(base_url=f"{BASE}/v1", api_key=KEY)
    raw = sdk.chat.completions.with_raw_response.create(
        model="auto",
        messages=[{"role": "user", "content": f"[task:classification] [confidence:nano=0.95] which queue: {topic}"}],
        extra_headers={"x-arbiter-run-id": RUN_ID, "x-arbiter-run-role": "subagent",
                       "x-arbiter-task-type": "classification"},
    )
    subagent_calls.append(raw.headers["x-arbiter-job-id"])
    return raw.parse().choices[0].message.content or ""


planner = Agent(name="planner", instructions="Plan the support case; research first.", model="auto", tools=[research])
for attempt in (1, 2):
    result = Runner.run_sync(
        planner,
        f'[confidence:flagship=0.9,mini=0.9] [call:research {{"topic": "order A-17, attempt {attempt}"}}] plan case',
        run_config=run_config(agents_client("planner", "planning")),
    )
    check(f"planner run {attempt} finished", bool(result.final_output))
check("the subagent tool called Arbiter in the run twice", len(subagent_calls) == 2, subagent_calls)

run = api.get(f"/api/v1/runs/{RUN_ID}").raise_for_status().json()
calls = run["jobs"]
check("one run holds the planner's and the subagent's calls", len(calls) == 6, [c["run_role"] for c in calls])
check("the subagent's calls are in the run as subagent",
      sorted(c["id"] for c in calls if c["run_role"] == "subagent") == sorted(subagent_calls))
# A flagship call is a call that used the flagship, or one in flight whose cascade can reach it (RUNS.md): the
# subagent's calls, answered by nano, are not flagship calls; the planner's fourth flagship call is downgraded.
planners = [c for c in calls if c["run_role"] == "planner"]
check("the planner's first three calls are answered by the flagship, the fourth is downgraded to mini",
      [c["final_tier"] for c in planners] == ["flagship", "flagship", "flagship", "mini"],
      [c["final_tier"] for c in planners])
check("the run says which limit downgraded it",
      [r.get("limit") for r in planners[3]["limits_reached"]] == ["max_flagship_calls"], planners[3]["limits_reached"])
check("the subagent's nano answers used no flagship quota",
      next(c["final_tier"] for c in calls if c["run_role"] == "subagent") == "nano"
      and not planners[2]["limits_reached"], [(c["run_role"], c["final_tier"], c["limits_reached"]) for c in calls])
check("a downgraded call never reaches the flagship",
      all(c["final_tier"] != "flagship" for c in calls if c["limits_reached"]))

# --- a held refund: the agent waits, reviewers approve from the review API, the agent redeems ---------


def personal_token(username: str) -> str:
    """Sign in as a demo reviewer and mint a `reviews:decide` token on the Tokens page."""
    web = httpx.Client(base_url=BASE, timeout=30, follow_redirects=True)
    web.get("/login/")
    web.post("/login/", data={"username": username, "password": PASSWORDS[username],
                              "csrfmiddlewaretoken": web.cookies["csrftoken"]}, headers={"Referer": f"{BASE}/login/"})
    web.get("/review/tokens/")
    page = web.post("/review/tokens/new", data={"name": "walk", "scopes": "reviews:decide", "days": "1",
                                                "csrfmiddlewaretoken": web.cookies["csrftoken"]},
                    headers={"Referer": f"{BASE}/review/tokens/"})
    return re.search(r'id="new-token">([^<]+)<', page.text).group(1)


decisions: list[int] = []


def reviewers_approve() -> None:
    deadline = time.monotonic() + 90
    held = None
    while held is None and time.monotonic() < deadline:
        held = next((c for c in api.get(f"/api/v1/runs/{RUN_ID}").json()["jobs"]
                     if c["status"] == "awaiting_approval"), None)
        time.sleep(0.5)
    if held is None:
        return
    for username in ("reviewer", "reviewer2"):
        review = httpx.Client(base_url=BASE, headers={"Authorization": f"Bearer {personal_token(username)}"})
        version = review.get(f"/api/v1/review/jobs/{held['id']}").json()["version"]
        decided = review.post(f"/api/v1/review/jobs/{held['id']}/approve",
                              json={"expected_version": version, "reason": "order checked (walk)"})
        decisions.append(decided.status_code)


refunds: list[dict] = []
redemptions: list[int] = []


@function_tool
def issue_refund(amount: int, order: str) -> str:
    """Refund an order: only with a verified, redeemed grant for exactly this call."""
    arguments = {"amount": amount, "order": order}
    token = grants[-1]
    claims = verify_grant(token, PUBLIC_KEY, claims_app(), "issue_refund", arguments)
    redeemed = api.post(f"/api/v1/grants/{claims['id']}/redeem",
                        json={"token": token, "tool": "issue_refund", "arguments": arguments})
    redemptions.append(redeemed.status_code)
    if redeemed.status_code != 200:
        return f"not refunded: {redeemed.json().get('code')}"
    refunds.append(arguments)
    return f"refunded {amount} on {order}"


def claims_app() -> str:
    import base64

    payload = grants[-1].split(".")[0]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["application"]


approver = threading.Thread(target=reviewers_approve)
approver.start()
refund_agent = Agent(name="refunds", instructions="Refund what is owed.", model="auto", tools=[issue_refund])
result = Runner.run_sync(
    refund_agent,
    f"[task:general] [confidence:mini=0.9,flagship=0.9] [call:issue_refund {json.dumps(REFUND)}] Refund A-17.",
    run_config=run_config(agents_client("subagent", "general", **{"x-arbiter-wait-for-approval": "120"})),
)
approver.join(timeout=120)
check("two reviewers approved from the REST review API with personal tokens", decisions == [200, 200], decisions)
check("the agent resumed and the refund ran once, after its grant was verified and redeemed",
      refunds == [REFUND] and redemptions == [200], (refunds, redemptions))
check("the agent finished", bool(result.final_output))
token = grants[-1] if grants else ""
claims = verify_grant(token, PUBLIC_KEY, claims_app(), "issue_refund", REFUND) if token else {}
again = api.post(f"/api/v1/grants/{claims.get('id')}/redeem",
                 json={"token": token, "tool": "issue_refund", "arguments": REFUND})
check("redeeming again fails (409 grant_already_redeemed)",
      again.status_code == 409 and again.json().get("code") == "grant_already_redeemed", again.text[:200])
tampered = api.post(f"/api/v1/grants/{claims.get('id')}/redeem",
                    json={"token": token, "tool": "issue_refund", "arguments": {**REFUND, "amount": 1500}})
check("a tampered argument fails (403 grant_arguments_mismatch)",
      tampered.status_code == 403 and tampered.json().get("code") == "grant_arguments_mismatch", tampered.text[:200])
try:
    verify_grant(token, PUBLIC_KEY, claims_app(), "issue_refund", {**REFUND, "amount": 1500})
    check("the offline verifier refuses a tampered argument", False)
except Exception:
    check("the offline verifier refuses a tampered argument", True)

# --- the run page ------------------------------------------------------------------------------------------

web = httpx.Client(base_url=BASE, timeout=30, follow_redirects=True)
web.get("/login/")
web.post("/login/", data={"username": "reviewer", "password": PASSWORDS["reviewer"],
                          "csrfmiddlewaretoken": web.cookies["csrftoken"]}, headers={"Referer": f"{BASE}/login/"})
page = web.get(f"/runs/{RUN_ID}/").text
run = api.get(f"/api/v1/runs/{RUN_ID}").json()
check("the run page shows every call of the run", all(c["id"][:8] in page for c in run["jobs"]), len(run["jobs"]))
check("the run page shows the tiers and the limit that downgraded",
      all(t in page for t in ("tier-flagship", "tier-mini", "tier-nano")) and "max_flagship_calls" in page)
print(f"run {RUN_ID}: {BASE}/runs/{RUN_ID}/")
failed = [name for name, ok in results if not ok]
print(f"{len(results) - len(failed)}/{len(results)} passed")
sys.exit(1 if failed else 0)
