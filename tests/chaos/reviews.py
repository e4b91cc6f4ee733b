"""Review traffic under chaos: loan officers claim and decide referred cases while services are killed.

The pipeline runs `seed-with-review`, so part of the load is referred and each referred revision opens a case.
Two reviewers poll the queue and race for the same cases (one claim wins, the other gets 409), decide them (some
following the policy's recommendation, some overriding it), and a supervisor approves the overrides. Like the
load generator, every request that fails with a 5xx, a 408, a 429 or a connection error is retried with
backoff; a 409 after a retry is looked up (the lost answer may have been a success).

After the run, `check` holds every case of an acknowledged application to the guarantees: no case opened twice,
none left without its application, every final decision recorded once (as the revision's `decided_by = 'review'`
decision) and applied, none recorded for a case that was not decided.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx

from fastloans.contracts import REVIEWS_PATH
from fastloans.db.reviews import UNFINISHED
from fastloans.tenants import hash_key, issue_key

REVIEWERS = ("chaos-reviewer-1", "chaos-reviewer-2")
SUPERVISOR = "chaos-supervisor-1"
# A reviewer's outcome and the decision it becomes.
DECIDED_AS = {"approve": "approved", "reject": "rejected"}
FINISHED = ("decided", "withdrawn", "superseded")


@dataclass
class ReviewStats:
    """What the review client did and saw."""

    claims: int = 0
    conflicts: int = 0  # 409: another reviewer came first, the case changed, or its application moved on
    overrides: int = 0  # decisions sent to a supervisor
    approvals: int = 0
    final: dict[str, str] = field(default_factory=dict)  # case id -> outcome the client saw become final
    attempts: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    abandoned: int = 0
    unexpected: int = 0  # answers other than 2xx, 404 and 409 (or a 503 without Retry-After)
    examples: list[str] = field(default_factory=list)

    @property
    def server_errors(self) -> int:
        """5xx answers other than 503 (a 503 without Retry-After is counted in `unexpected`)."""
        return sum(n for key, n in self.attempts.items() if key.split()[-1].startswith("5") and key[-3:] != "503")

    def note(self, problem: str) -> None:
        """Keep a few examples for the report."""
        if len(self.examples) < 10:
            self.examples.append(problem)


@dataclass
class ReviewVerdict:
    """What became of the review cases of the acknowledged applications."""

    opened: int = 0
    decided: int = 0
    unfinished: int = 0
    recorded: int = 0  # reviewers' decisions in loan_decisions
    lost: int = 0
    duplicated: int = 0
    resurrected: int = 0
    opened_twice: int = 0
    orphaned: int = 0  # a case its application does not account for (or an application its case does not)
    examples: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Cases were opened and decided, and nothing was lost, duplicated, resurrected or left over."""
        return (
            self.opened > 0
            and self.decided > 0
            and not (self.lost or self.duplicated or self.resurrected or self.opened_twice or self.orphaned)
        )

    def summary(self, stats: ReviewStats) -> str:
        """The counts, as `key=value` pairs."""
        return (
            f"reviews[opened={self.opened} decided={self.decided} unfinished={self.unfinished} "
            f"recorded={self.recorded} overrides={stats.overrides} approvals={stats.approvals} "
            f"claims={stats.claims} conflicts={stats.conflicts} lost={self.lost} duplicated={self.duplicated} "
            f"resurrected={self.resurrected} opened_twice={self.opened_twice} orphaned={self.orphaned} "
            f"retries={stats.retries} abandoned={stats.abandoned} unexpected={stats.unexpected}]"
        )

    def note(self, problem: str) -> None:
        """Keep a few examples for the report."""
        if len(self.examples) < 10:
            self.examples.append(problem)


async def review_keys(primary_url: str, api_key: str) -> dict[str, str]:
    """Keys of the load's tenant for the two reviewers and the supervisor, by actor."""
    conn = await asyncpg.connect(primary_url)
    try:
        tenant = await conn.fetchval(
            "SELECT t.name FROM api_keys k JOIN tenants t ON t.id = k.tenant_id WHERE k.key_hash = $1",
            hash_key(api_key),
        )
        if tenant is None:
            raise LookupError("the load's API key is not registered")
        keys = {actor: ("review",) for actor in REVIEWERS} | {SUPERVISOR: ("supervise",)}
        return {
            actor: (await issue_key(conn, tenant, scopes=scopes, actor=actor)).key for actor, scopes in keys.items()
        }
    finally:
        await conn.close()


class ReviewClient:
    """Reviewers and a supervisor working the queue through the gateways, round robin, until stopped."""

    def __init__(
        self,
        api_urls: list[str],
        keys: dict[str, str],
        *,
        seed: int = 0,
        override_share: float = 0.3,
        interval: float = 0.5,
        give_up_after: float = 120.0,
    ) -> None:
        self.api_urls = api_urls
        self.keys = keys
        self.rng = random.Random(seed)  # noqa: S311 - reproducible traffic, not secrets
        self.override_share = override_share
        self.interval = interval
        self.give_up_after = give_up_after
        self.stats = ReviewStats()
        self._stop = asyncio.Event()
        self._working: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._turn = 0
        self._http: httpx.AsyncClient | None = None

    def stop(self) -> None:
        """Take no new case; the run returns once the cases in hand are settled."""
        self._stop.set()

    async def run(self) -> None:
        """Poll the queue for each reviewer and for the supervisor until stopped, then settle what is in hand."""
        async with httpx.AsyncClient(timeout=15) as http:
            self._http = http
            while not self._stop.is_set():
                for actor in REVIEWERS:
                    for case in await self._queue(actor, "open"):
                        self._take(actor, case["id"], self._work(actor, case["id"]))
                for case in await self._queue(SUPERVISOR, "awaiting_approval"):
                    if case["decision"] and case["decision"]["decided_by"] != SUPERVISOR:
                        self._take(SUPERVISOR, case["id"], self._approve(case["id"]))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), timeout=self.interval)
            while self._working:
                await asyncio.gather(*list(self._working.values()), return_exceptions=True)
            self._http = None

    def _take(self, actor: str, case_id: str, work: Any) -> None:
        key = (actor, case_id)
        if key in self._working:
            work.close()
            return
        task = asyncio.ensure_future(work)
        self._working[key] = task
        task.add_done_callback(lambda _: self._working.pop(key, None))

    async def _queue(self, actor: str, state: str) -> list[dict[str, Any]]:
        response, _ = await self._request(actor, "GET", f"{REVIEWS_PATH}?state={state}&limit=20")
        if response is None or response.status_code != 200:
            return []
        items: list[dict[str, Any]] = response.json()["items"]
        self.rng.shuffle(items)
        return items[:5]

    async def _work(self, actor: str, case_id: str) -> None:
        """Claim, read and decide one case (the other reviewer may get there first: a 409)."""
        await asyncio.sleep(self.rng.uniform(0, 0.3))
        claimed = await self._act(actor, case_id, "claim", {}, done=lambda c: c["claimed_by"] == actor)
        if claimed is None:
            return
        self.stats.claims += 1
        response, _ = await self._request(actor, "GET", f"{REVIEWS_PATH}/{case_id}")
        if response is None or response.status_code != 200:
            return
        case = response.json()
        follow = case["recommendation"] or "reject"
        override = self.rng.random() < self.override_share
        outcome = ({"approve": "reject", "reject": "approve"}[follow]) if override else follow
        codes = [option["code"] for option in case["reason_options"]][: self.rng.randint(1, 2)]
        body: dict[str, Any] = {"outcome": outcome, "reason_codes": codes if outcome == "reject" else []}
        if outcome != case["recommendation"]:
            body["note"] = "Reviewed under chaos"
        decided = await self._act(
            actor,
            case_id,
            "decision",
            body,
            done=lambda c: c["decision"] is not None and c["decision"]["decided_by"] == actor,
        )
        if decided is None:
            return
        if decided["state"] == "awaiting_approval":
            self.stats.overrides += 1
        elif decided["state"] == "decided":
            self.stats.final[case_id] = decided["decision"]["outcome"]

    async def _approve(self, case_id: str) -> None:
        approved = await self._act(
            SUPERVISOR,
            case_id,
            "approve",
            {},
            done=lambda c: c["decision"] is not None and c["decision"]["approved_by"] == SUPERVISOR,
        )
        if approved is not None and approved["state"] == "decided":
            self.stats.approvals += 1
            self.stats.final[case_id] = approved["decision"]["outcome"]

    async def _act(
        self, actor: str, case_id: str, action: str, body: dict[str, Any], *, done: Any
    ) -> dict[str, Any] | None:
        """One action; the case as it answered, or None when refused. A 409 after a retry is checked by a read."""
        response, attempts = await self._request(actor, "POST", f"{REVIEWS_PATH}/{case_id}/{action}", json=body)
        if response is None:
            return None
        if response.status_code == 200:
            answer: dict[str, Any] = response.json()
            return answer
        if response.status_code == 409 and attempts > 1:
            # The first attempt may have gone through with its answer lost: the case says so.
            again, _ = await self._request(actor, "GET", f"{REVIEWS_PATH}/{case_id}")
            if again is not None and again.status_code == 200 and done(again.json()):
                answer = again.json()
                return answer
        if response.status_code in (404, 409):
            self.stats.conflicts += response.status_code == 409
            return None
        self.stats.unexpected += 1
        self.stats.note(f"{action} {case_id} by {actor}: {response.status_code} {response.text[:160]}")
        return None

    async def _request(self, actor: str, method: str, path: str, **kwargs: Any) -> tuple[httpx.Response | None, int]:
        """One logical request, retried while its answer is a 5xx, a 408 or a 429; (answer or None, attempts)."""
        assert self._http is not None
        deadline = time.monotonic() + self.give_up_after
        backoff = 0.2
        attempts = 0
        headers = {"Authorization": f"Bearer {self.keys[actor]}"}
        while True:
            attempts += 1
            self.stats.retries += attempts > 1
            self._turn += 1
            url = self.api_urls[self._turn % len(self.api_urls)] + path
            try:
                response = await self._http.request(method, url, headers=headers, **kwargs)
                self.stats.attempts[f"{method} {response.status_code}"] += 1
                if response.status_code < 500 and response.status_code not in (408, 429):
                    return response, attempts
                if response.status_code == 503 and "retry-after" not in response.headers:
                    self.stats.unexpected += 1
                wait = float(response.headers.get("retry-after", backoff))
            except httpx.TransportError as error:
                self.stats.attempts[f"{method} {type(error).__name__}"] += 1
                wait = backoff
            if time.monotonic() + wait > deadline:
                self.stats.abandoned += 1
                return None, attempts
            await asyncio.sleep(wait)
            backoff = min(backoff * 2, 2.0)


CASES = """
SELECT c.id, c.application_id, c.revision, c.state, c.outcome,
       (SELECT count(*) FROM review_history h WHERE h.case_id = c.id AND h.action = 'open') AS opens
  FROM review_cases c WHERE c.application_id = ANY($1::uuid[])
"""
APPLICATIONS = (
    "SELECT id, status, revision, decided_by, review_case_id FROM loan_applications WHERE id = ANY($1::uuid[])"
)
REVIEWED = (
    "SELECT application_id, revision, outcome, review_case_id FROM loan_decisions "
    "WHERE decided_by = 'review' AND application_id = ANY($1::uuid[])"
)


async def check(pool: asyncpg.Pool, ids: list[uuid.UUID], stats: ReviewStats) -> ReviewVerdict:
    """Every case of the acknowledged applications `ids` against its application, its decision and the client."""
    verdict = ReviewVerdict()
    cases = {row["id"]: row for row in await pool.fetch(CASES, ids)}
    applications = {row["id"]: row for row in await pool.fetch(APPLICATIONS, ids)}
    recorded: dict[uuid.UUID, list[asyncpg.Record]] = {}
    per_revision: Counter[tuple[uuid.UUID, int]] = Counter()
    for row in await pool.fetch(REVIEWED, ids):
        recorded.setdefault(row["review_case_id"], []).append(row)
        per_revision[(row["application_id"], row["revision"])] += 1
    verdict.opened = len(cases)
    verdict.recorded = sum(per_revision.values())
    revisions = Counter((c["application_id"], c["revision"]) for c in cases.values())
    verdict.opened_twice = sum(n - 1 for n in revisions.values()) + sum(c["opens"] != 1 for c in cases.values())
    verdict.duplicated = sum(n - 1 for n in per_revision.values())
    for (application_id, revision), n in per_revision.items():
        if n > 1:
            verdict.note(f"{application_id} revision {revision}: {n} reviewers' decisions recorded")

    for case_id, case in cases.items():
        application = applications[case["application_id"]]
        decisions = recorded.get(case_id, [])
        verdict.decided += case["state"] == "decided"
        verdict.unfinished += case["state"] in UNFINISHED
        problem = _orphan(case, application)
        if problem:
            verdict.orphaned += 1
            verdict.note(f"case {case_id}: {problem}")
        if case["state"] == "decided" and not decisions:
            verdict.lost += 1
            verdict.note(f"case {case_id} is decided but no reviewer's decision is recorded")
        for decision in decisions:
            if case["state"] != "decided" or decision["outcome"] != DECIDED_AS[case["outcome"]]:
                verdict.resurrected += 1
                verdict.note(f"case {case_id} ({case['state']}) has a recorded {decision['outcome']} decision")
    for case_id in set(recorded) - set(cases):
        verdict.resurrected += 1
        verdict.note(f"a reviewer's decision is recorded for case {case_id}, which does not exist")
    for application in applications.values():
        if application["status"] == "referred":
            case = cases.get(application["review_case_id"])
            if case is None or case["revision"] != application["revision"] or case["state"] not in UNFINISHED:
                verdict.orphaned += 1
                verdict.note(f"application {application['id']} is referred without an unfinished case of its own")
    for case_id, outcome in stats.final.items():
        case = cases.get(uuid.UUID(case_id))
        if case is None or case["state"] != "decided" or case["outcome"] != outcome:
            verdict.lost += 1
            verdict.note(f"case {case_id} was answered {outcome} and final, but is {case and case['state']}")
    return verdict


def _orphan(case: asyncpg.Record, application: asyncpg.Record) -> str | None:
    """What is wrong between a case and its application, or None."""
    if case["revision"] > application["revision"]:
        return f"revision {case['revision']} of an application at revision {application['revision']}"
    current = case["revision"] == application["revision"]
    if application["status"] == "withdrawn":
        return None if case["state"] in ("withdrawn", "decided", "superseded") else f"{case['state']} when withdrawn"
    if not current:
        return None if case["state"] in FINISHED else f"{case['state']} for a revision since changed"
    if case["state"] in UNFINISHED:
        return (
            None
            if application["status"] == "referred"
            else f"{case['state']} for an application {application['status']}"
        )
    if case["state"] == "decided":
        shown = (application["status"], application["decided_by"], application["review_case_id"])
        expected = (DECIDED_AS[case["outcome"]], "review", case["id"])
        return None if shown == expected else f"decided {case['outcome']}, the application shows {shown[:2]}"
    return f"{case['state']} for the current revision of an application {application['status']}"
