"""Hot reload: the active (or challenger) policy, re-read when its file changes."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from typing import Final, Literal

from prometheus_client import Counter, Gauge

from .loader import PolicyValidationError, load_default_policy, parse_policy
from .model import Policy

logger = logging.getLogger("fastloans.policy")

Role = Literal["active", "challenger"]

RELOAD_FAILURES: Final = Counter(
    "fastloans_policy_reload_failures",
    "Policy file changes that were rejected (invalid or unreadable); the previous policy stays.",
)
POLICY_INFO: Final = Gauge(
    "fastloans_policy_info",
    "The active credit policy: 1 for its name, version and content hash.",
    ["name", "version", "hash"],
)
CHALLENGER_INFO: Final = Gauge(
    "fastloans_policy_challenger_info",
    "The challenger credit policy evaluated in shadow mode: 1 for its name, version and hash.",
    ["name", "version", "hash"],
)


class PolicyStore:
    """Holds one policy; ``watch()`` swaps in a new version when the file changes and is valid."""

    def __init__(self, path: str | os.PathLike[str] | None = None, *, role: Role = "active") -> None:
        self.path = None if path is None else os.fspath(path)
        self._info = POLICY_INFO if role == "active" else CHALLENGER_INFO
        self._seen: str | None = None
        if self.path is None:
            policy = load_default_policy()
        else:
            raw = self._read()
            policy = parse_policy(raw.decode("utf-8"), self.path)
            self._seen = hashlib.sha256(raw).hexdigest()
        self._current = policy
        self._publish(None, policy)

    @property
    def current(self) -> Policy:
        """Return the policy in force (one atomic attribute read)."""
        return self._current

    def _read(self) -> bytes:
        assert self.path is not None
        # open() follows symlinks, so a ConfigMap's `..data` symlink swap is seen on the next read.
        with open(self.path, "rb") as handle:
            return handle.read()

    def _publish(self, old: Policy | None, new: Policy) -> None:
        if old is not None:
            with contextlib.suppress(KeyError):  # another store already retired the same label set
                self._info.remove(old.name, old.version, old.content_hash)
        self._info.labels(new.name, new.version, new.content_hash).set(1)

    def reload(self) -> bool:
        """Re-read the file once; return whether a new policy was swapped in."""
        if self.path is None:
            return False
        try:
            raw = self._read()
        except OSError as error:
            return self._reject(f"missing:{error.errno}", f"cannot read policy file {self.path}: {error}")
        digest = hashlib.sha256(raw).hexdigest()
        if digest == self._seen:
            return False
        try:
            policy = parse_policy(raw.decode("utf-8"), self.path)
        except (PolicyValidationError, UnicodeDecodeError) as error:
            return self._reject(digest, f"invalid policy file {self.path}, keeping the previous policy:\n{error}")
        self._seen = digest
        old = self._current
        if policy.content_hash == old.content_hash:
            return False
        self._current = policy
        self._publish(old, policy)
        logger.info(
            "policy reloaded: %s %s (%s), was %s %s",
            policy.name,
            policy.version,
            policy.content_hash[:12],
            old.name,
            old.version,
        )
        return True

    def _reject(self, state: str, message: str) -> bool:
        """Count and log a bad file once per distinct content, not on every poll."""
        if state != self._seen:
            self._seen = state
            RELOAD_FAILURES.inc()
            logger.error(message)
        return False

    async def watch(self, interval: float = 1.0) -> None:
        """Poll the file every ``interval`` seconds until cancelled (returns at once without a file)."""
        if self.path is None:
            return
        while True:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(self.reload)
            except Exception:  # a bug here must not stop future reloads
                RELOAD_FAILURES.inc()
                logger.exception("policy reload of %s failed", self.path)
