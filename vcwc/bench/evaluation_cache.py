"""A sweep run's evaluations, shared by its tasks wherever they run: identical weights are scored once.

Points that rebuild the same weights (one quantization coded losslessly by several codecs, a baseline
with the same int8 symbols) need one evaluation. Tasks ask the cache by the weights' key: the first to
ask claims the key and scores the weights; a task asking while the claim is held waits for that score.
The driver fills the cache from OUT/evaluations at the start and writes the new scores that tasks
return, so the cache lives only as long as a run and needs no shared file system. It is one object
with a lock: in the driver's process for a serial sweep, in a multiprocessing manager for a process
pool, in a Ray actor on a cluster (vcwc.bench.backends, vcwc.bench.ray_backend).
"""

from __future__ import annotations

import threading
import time

# A claim older than this is taken over by the next task that asks: its holder is stuck or gone.
CLAIM_TIMEOUT_SECONDS = 1800.0


class EvaluationCache:
    def __init__(self, known: dict[str, dict] | None = None, claim_timeout: float = CLAIM_TIMEOUT_SECONDS):
        self._scores = dict(known or {})
        self._claims: dict[str, tuple[str, float]] = {}  # key -> (owner, when claimed)
        self._claim_timeout = claim_timeout
        self._changed = threading.Condition()

    def claim(self, key: str, owner: str) -> dict | None:
        """The score of `key` if known; else None, and `owner` must score it and `store` (or `release`).

        Claims are re-entrant by owner, so a task retried after its worker died takes its claim back.
        """
        with self._changed:
            while True:
                if key in self._scores:
                    return self._scores[key]
                holder = self._claims.get(key)
                now = time.monotonic()
                if holder is None or holder[0] == owner or now - holder[1] > self._claim_timeout:
                    self._claims[key] = (owner, now)
                    return None
                self._changed.wait(timeout=max(0.1, self._claim_timeout - (now - holder[1])))

    def store(self, key: str, owner: str, score: dict) -> None:
        with self._changed:
            self._scores[key] = score
            self._claims.pop(key, None)
            self._changed.notify_all()

    def release(self, owner: str) -> None:
        """Drop the claims `owner` still holds (its task ended without scoring): a waiting task takes over."""
        with self._changed:
            for key in [key for key, (holder, _) in self._claims.items() if holder == owner]:
                del self._claims[key]
            self._changed.notify_all()
