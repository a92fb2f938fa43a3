"""Walk issue 12's bypasses against a running `make run`, over HTTP, as an application, reviewers,
admins and an auditor would — the same promises tests/security checks in the suite, tried on the demo.

    make run                                                   # in one terminal, on a fresh .data/
    .venv/bin/python tests/security/walk_on_make_run.py        # in another, from the same checkout

Not a test module (pytest does not collect it): it changes the demo's state for good — it gives `admin`
the reviewer role, locks `reviewer2` out for 15 minutes, mints and revokes keys and erases a job — so
run it on a demo you can `make reset-data`. Prints PASS/FAIL per check and exits 1 on any failure.
"""

import json
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx2 as httpx
import openai

creds = json.loads(Path(".data/demo-credentials.json").read_text())
BASE = creds["base_url"]
KEY = creds["api_key"]
PW = {u["username"]: u["password"] for u in creds["users"]}
results = []


def check(name, ok, detail=""):
    results.append((name, ok))
    print(("PASS " if ok else "FAIL ") + name + (f"  [{detail}]" if detail and not ok else ""), flush=True)


def api(key=KEY):
    return httpx.Client(base_url=BASE, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def ui(user):
    client = httpx.Client(base_url=BASE, timeout=30, follow_redirects=False)
    page = client.get("/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    response = client.post(
        "/login/",
        data={"username": user, "password": PW[user], "csrfmiddlewaretoken": token},
        headers={"Referer": f"{BASE}/login/"},
    )
    assert response.status_code in (302, 303), (user, response.status_code, response.text[:300])
    client.headers["X-CSRFToken"] = client.cookies.get("csrftoken")
    client.headers["Referer"] = f"{BASE}/"
    return client


def submit(content, tools=None, key=KEY):
    body = {"task_type": "general", "messages": [{"role": "user", "content": content}]}
    if tools:
        body["tools"] = tools
    response = api(key).post("/api/v1/jobs", json=body)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def settle(job_id, key=KEY):
    for _ in range(120):
        job = api(key).get(f"/api/v1/jobs/{job_id}").json()
        if job["status"] not in ("queued", "running"):
            return job
        time.sleep(0.5)
    raise RuntimeError(f"job {job_id} did not settle")


def version_of(job_id, client):
    page = client.get(f"/jobs/{job_id}/").text
    return re.search(r'name="expected_version" value="(\d+)"', page).group(1)


REFUND = [{"type": "function", "function": {"name": "issue_refund", "parameters": {"type": "object"}}}]
SURE = "[task:general] [confidence:nano=0.95,mini=0.95,flagship=0.95]"

# 1. A held answer is not readable before a decision (API detail, events), nor on the OpenAI endpoint.
held = submit(f'{SURE} [call:issue_refund {{"amount": 5000}}] refund', REFUND)
job = settle(held)
events = api().get(f"/api/v1/jobs/{held}/events").text
check("1 held refund is awaiting approval", job["status"] == "awaiting_approval", job["status"])
check(
    "1 API detail shows no output",
    job["result"] is None and "5000" not in json.dumps(job) and "5,000" not in json.dumps(job),
)
check("1 API events show no argument values", "5000" not in events and "5,000" not in events)
sdk = openai.OpenAI(base_url=f"{BASE}/v1", api_key=KEY, max_retries=0)
try:
    sdk.chat.completions.create(
        model="auto",
        messages=[{"role": "user", "content": f'{SURE} [call:issue_refund {{"amount": 5000}}] refund'}],
        tools=REFUND,
    )
    check("1 OpenAI endpoint refuses a held answer", False, "200")
except openai.APIStatusError as error:
    check(
        "1 OpenAI endpoint refuses a held answer",
        error.status_code == 409 and "5000" not in error.response.text and "5,000" not in error.response.text,
        error.response.text[:200],
    )

# 2. Rules fail closed on type confusion and unparsable arguments.
for label, args in (
    ("string", '{"amount": "5000"}'),
    ("object", '{"amount": {"value": 5000}}'),
    ("list", '{"amount": [5000]}'),
):
    job = settle(submit(f"{SURE} [call:issue_refund {args}] refund", REFUND))
    check(f"2 amount as {label} is held", job["status"] == "awaiting_approval", job["status"])
job = settle(submit(f'{SURE} [invalid_json] [call:issue_refund {{"amount": 5}}] refund', REFUND))
check("2 unparsable arguments are held", job["status"] == "awaiting_approval", job["status"])

# 3. A replay under an unactivated draft without approval rules releases nothing.
admin, reviewer, reviewer2 = ui("admin"), ui("reviewer"), ui("reviewer2")
policy_page = admin.get("/policies/").text
policy_name = re.search(r'href="/policies/([\w-]+)/"', policy_page).group(1)
source = Path("routing/demo/default-policy.yaml").read_text().split("approvals:")[0] + "blocked_tools: []\n"
draft = admin.post(f"/policies/{policy_name}/new", data={"source": source, "comment": "walk: no approvals"})
check("3 admin drafts a version with no approval rules", draft.status_code in (200, 302, 303), str(draft.status_code))
version_page = admin.get(f"/policies/{policy_name}/").text
numbers = sorted({int(n) for n in re.findall(rf"/policies/{policy_name}/v(\d+)/", version_page)})
draft_number = numbers[-1]
draft_pk = (
    subprocess.run(
        [
            ".venv/bin/python",
            "manage.py",
            "shell",
            "-c",
            "from routing.models import PolicyVersion as V; "
            f"print(V.objects.get(policy__name='{policy_name}', number={draft_number}).pk)",
        ],
        capture_output=True,
        text=True,
        env=None,
    )
    .stdout.strip()
    .splitlines()[-1]
)
replay = reviewer.post(f"/jobs/{held}/replay", data={"policy_version": draft_pk})
location = replay.headers.get("location", "")
replay_ids = [i for i in re.findall(r"[0-9a-f-]{36}", location + replay.text) if i != held]
check(
    "3 reviewer replays the held refund under the draft",
    replay.status_code in (200, 302, 303) and replay_ids,
    f"{replay.status_code} {location}",
)
if replay_ids:
    time.sleep(3)
    seen = api().get(f"/api/v1/jobs/{replay_ids[0]}")
    check("3 the application cannot read the replay (404)", seen.status_code == 404, str(seen.status_code))
    listed = api().get("/api/v1/jobs?page_size=200").text
    check("3 the replay is not in the application's list", replay_ids[0] not in listed)
check("3 the original stays held", settle(held)["status"] == "awaiting_approval")

# 4. One override does not complete a two-approver job.
override = reviewer.post(
    f"/jobs/{held}/override",
    data={
        "expected_version": version_of(held, reviewer),
        "reason": "bigger refund",
        "source": "edit",
        "content": "Calling issue_refund.",
        "arguments_0": '{"amount": 5000000}',
    },
)
job = settle(held)
check(
    "4 one override leaves the 2-approver job held",
    job["status"] == "awaiting_approval" and job["result"] is None,
    f"{override.status_code} {job['status']}",
)
second = reviewer2.post(f"/jobs/{held}/approve", data={"expected_version": version_of(held, reviewer2), "reason": "ok"})
job = settle(held)
check(
    "4 a second reviewer's approval releases the edited answer",
    job["status"] == "completed" and "5000000" in json.dumps(job["result"]),
    job["status"],
)

# 5. Four eyes on activation: a policy admin with a platform key cannot activate what they authored.
apps_page = admin.get("/applications/").text
slug = re.search(r'href="/applications/([\w-]+)/"', apps_page).group(1)
new_key = admin.post(
    f"/applications/{slug}/keys", data={"name": "walk-platform", "scopes": ["platform:admin", "jobs:read"]}
)
platform_key = (
    re.search(r"(arb_[0-9a-f]+_[\w-]+)", new_key.text)
    or re.search(r"(arb_[0-9a-f]+_[\w-]+)", admin.get(new_key.headers.get("location", "/")).text or "")
).group(1)
created = api(platform_key).post(
    f"/api/v1/admin/policies/{policy_name}/versions",
    json={"source": Path("routing/demo/default-policy.yaml").read_text(), "comment": "walk"},
)
check(
    "5 a version created over the API is authored by the key's owner",
    created.status_code == 201 and created.json().get("author") == "admin",
    created.text[:200],
)
number = created.json().get("number")
activate = api(platform_key).post(f"/api/v1/admin/policies/{policy_name}/versions/{number}/activate", json={})
check(
    "5 the author cannot activate an unsubmitted draft over the API",
    activate.status_code in (403, 409),
    activate.text[:200],
)
ui_activate = admin.post(f"/policies/{policy_name}/v{number}/activate", data={})
still_draft = "draft" in admin.get(f"/policies/{policy_name}/v{number}/").text.lower()
check("5 nor in the UI", ui_activate.status_code != 500 and still_draft, str(ui_activate.status_code))

# 6. The key's owner cannot approve a job their key submitted.
subprocess.run(
    [
        ".venv/bin/python",
        "manage.py",
        "shell",
        "-c",
        "from django.contrib.auth.models import User, Group; "
        "User.objects.get(username='admin').groups.add(Group.objects.get(name='reviewer'))",
    ],
    check=True,
    capture_output=True,
)
own = submit(f'{SURE} [call:issue_refund {{"amount": 700}}] refund', REFUND)
settle(own)
page = admin.get(f"/jobs/{own}/").text
offered = 'name="expected_version"' in page
version = (
    subprocess.run(
        [
            ".venv/bin/python",
            "manage.py",
            "shell",
            "-c",
            f"from routing.models import Job; print(Job.objects.get(pk='{own}').version)",
        ],
        capture_output=True,
        text=True,
    )
    .stdout.strip()
    .splitlines()[-1]
)
refused = admin.post(
    f"/jobs/{own}/approve", data={"expected_version": version, "reason": "mine"}, follow_redirects=True
)
check(
    "6 the key's owner is offered no decision on their own job, and a forged one is refused",
    not offered and settle(own)["status"] == "awaiting_approval" and "you submitted this job" in refused.text,
    f"offered={offered} {refused.status_code} {refused.text[-300:]}",
)

# 7. A deployment cannot exfiltrate secrets.
for label, body in (
    ("SECRET_KEY as the key variable", {"api_key_env": "SECRET_KEY", "base_url": "https://api.example.com/v1"}),
    ("DATABASE_URL as the key variable", {"api_key_env": "DATABASE_URL", "base_url": "https://api.example.com/v1"}),
    (
        "cloud metadata as the base URL",
        {"api_key_env": "ARBITER_PROVIDER_KEY_X", "base_url": "http://169.254.169.254/v1"},
    ),
    (
        "IPv4-compatible loopback",
        {"api_key_env": "ARBITER_PROVIDER_KEY_X", "base_url": "http://[::169.254.169.254]/v1"},
    ),
):
    deployment = {
        "name": f"walk-{uuid.uuid4().hex[:6]}",
        "tier": "mini",
        "model": "x",
        "price_in_per_mtok": "1",
        "price_out_per_mtok": "1",
        **body,
    }
    response = api(platform_key).post("/api/v1/admin/deployments", json=deployment)
    check(f"7 refused: {label}", response.status_code == 400, f"{response.status_code} {response.text[:200]}")

# 8. An application's key never reaches another application.
other = api(platform_key).post(
    "/api/v1/admin/applications", json={"name": "Walk other", "slug": f"walk-{uuid.uuid4().hex[:6]}"}
)
other_slug = other.json().get("slug")
app_key_page = admin.post(f"/applications/{slug}/keys", data={"name": "walk-app", "scopes": ["app:admin"]})
app_key = re.search(
    r"(arb_[0-9a-f]+_[\w-]+)", app_key_page.text or admin.get(app_key_page.headers.get("location", "/")).text
).group(1)
for label, method, path, body in (
    (
        "mint a key for another application",
        "post",
        f"/api/v1/admin/applications/{other_slug}/keys",
        {"scopes": ["jobs:read"]},
    ),
    ("list another application's keys", "get", f"/api/v1/admin/applications/{other_slug}/keys", None),
    (
        "zero another application's budget",
        "put",
        f"/api/v1/admin/applications/{other_slug}/budget",
        {"hard_limit_usd": "0"},
    ),
    ("zero its own budget", "put", f"/api/v1/admin/applications/{slug}/budget", {"hard_limit_usd": "0"}),
):
    response = getattr(api(app_key), method)(path, **({"json": body} if body is not None else {}))
    check(
        f"8 app:admin cannot {label}",
        response.status_code in (403, 404),
        f"{response.status_code} {response.text[:150]}",
    )

# 9. Erasure by a data subject's identifier leaves the raw e-mail nowhere in the database.
email = f"walk.{uuid.uuid4().hex[:8]}@example.org"
pii_job = settle(submit(f"[task:general] [confidence:mini=0.95,flagship=0.95] Write to {email} about the refund"))["id"]
db_url = subprocess.run(
    [".venv/bin/python", "-m", "controlplane.embedded", "urls"], capture_output=True, text=True
).stdout
db_url = re.search(r"(postgresql://[^\"\s]+)", db_url).group(1)
pg_dump = next(Path(".venv/lib").glob("python3*/site-packages/pgserver/pginstall/bin/pg_dump"))


def dump():
    out = subprocess.run([str(pg_dump), "--data-only", db_url], capture_output=True, text=True, check=True).stdout
    assert len(out) > 100_000, "pg_dump returned almost nothing"
    return out


check("9 before erasure the e-mail is in the database (the job's own request)", email in dump())
auditor = ui("auditor")
preview = auditor.post(
    "/erasure/preview", data={"subject": email, "reason": "data_subject_request", "reference": "walk"}
)
count = re.search(r'name="expected_jobs" value="(\d+)"', preview.text)
confirm = auditor.post(
    "/erasure/confirm",
    data={
        "subject": email,
        "reason": "data_subject_request",
        "reference": "walk",
        **({"expected_jobs": count.group(1)} if count else {}),
    },
)
check(
    "9 the auditor erases by identifier in the UI",
    confirm.status_code in (200, 302, 303),
    f"{preview.status_code} {confirm.status_code} {confirm.text[:300]}",
)
check("9 after erasure the e-mail appears nowhere in pg_dump --data-only", email not in dump())
verify = subprocess.run([".venv/bin/python", "manage.py", "ledger_verify"], capture_output=True, text=True)
check("9 the chain still verifies", verify.returncode == 0, verify.stdout[-300:] + verify.stderr[-300:])

# 10. Sign-in is throttled.
bad = httpx.Client(base_url=BASE, timeout=30)
for _ in range(6):
    page = bad.get("/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    last = bad.post(
        "/login/",
        data={"username": "reviewer2", "password": "wrong-password-123", "csrfmiddlewaretoken": token},
        headers={"Referer": f"{BASE}/login/"},
    )
page = bad.get("/login/")
token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
right = bad.post(
    "/login/",
    data={"username": "reviewer2", "password": PW["reviewer2"], "csrfmiddlewaretoken": token},
    headers={"Referer": f"{BASE}/login/"},
)
check(
    "10 after 6 wrong passwords the right one is refused for now",
    right.status_code == 429,
    f"{last.status_code} {right.status_code}",
)

# 11. A key sent in a URL is revoked.
spare_page = admin.post(f"/applications/{slug}/keys", data={"name": "walk-url", "scopes": ["jobs:read"]})
spare = re.search(
    r"(arb_[0-9a-f]+_[\w-]+)", spare_page.text or admin.get(spare_page.headers.get("location", "/")).text
).group(1)
in_url = httpx.get(f"{BASE}/api/v1/jobs?api_key={spare}")
after = api(spare).get("/api/v1/jobs")
check(
    "11 a key in a URL is refused and revoked",
    in_url.status_code == 400 and after.status_code == 401,
    f"{in_url.status_code} {after.status_code}",
)

failed = [name for name, ok in results if not ok]
print(f"\n{len(results) - len(failed)} passed, {len(failed)} failed")
sys.exit(1 if failed else 0)
