"""The champion (active) policy and an optional challenger, as the risk and approval services hold them."""

from __future__ import annotations

import asyncio
from typing import ClassVar

from fastloans.background import cancel_all
from fastloans.events import EventDecodeError, Facts, PolicyRef, Topic
from fastloans.policy import ApplicationFacts, Policy, PolicyStore
from fastloans.settings import Settings
from fastloans.worker import PipelineWorker


class Policies:
    """The active policy (hot-reloaded from POLICY_FILE) and the optional shadow challenger."""

    def __init__(self, settings: Settings) -> None:
        self.champion = PolicyStore(settings.policy_file)
        self.challenger = (
            PolicyStore(settings.challenger_policy_file, role="challenger") if settings.challenger_policy_file else None
        )
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Watch the policy files for changes."""
        self._tasks = [asyncio.create_task(store.watch()) for store in (self.champion, self.challenger) if store]

    async def stop(self) -> None:
        """Stop watching."""
        await cancel_all(self._tasks)


def policy_ref(policy: Policy) -> PolicyRef:
    """The event form of a policy's identity."""
    return PolicyRef(name=policy.name, version=policy.version, hash=policy.content_hash)


def facts_of(facts: Facts) -> ApplicationFacts:
    """The policy engine's facts from an event's facts; invalid facts make the event undecodable."""
    try:
        return ApplicationFacts.from_mapping(facts.model_dump())
    except (TypeError, ValueError) as error:
        raise EventDecodeError(f"invalid facts: {error}") from None


class PolicyWorker(PipelineWorker):
    """A pipeline consumer that decides with the credit policy (risk, approval) and produces to `output_topic`."""

    output_topic: ClassVar[Topic]

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.policies = Policies(settings)
        self.output = settings.topic(self.output_topic.value)

    async def start(self) -> None:
        """Start watching the policy files, then consuming."""
        self.policies.start()
        await super().start()

    async def stop(self) -> None:
        """Stop consuming, then stop watching the policy files."""
        await super().stop()
        await self.policies.stop()
