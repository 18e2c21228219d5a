"""LLM call caching and replay by content hash.

* :class:`CachedGenerator` wraps an LLM back-end: a request identical to one answered before
  (same back-end, model, sampling parameters, messages and sample index) is answered from
  ``<cache_dir>/<hash[:2]>/<hash>.json`` without a network call; otherwise the back-end is
  called and its reply stored. Hits are marked ``params["cache"] = "hit"`` in the records.
* :class:`ReplayGenerator` (``llm=replay``) answers *only* from recorded replies: the
  ``rewards/v*/llm/attempt_*.json`` records of run directories and cache entries under
  ``llm.replay_from``. Requests are matched by their messages (and sample index), in recorded
  order, so an experiment re-runs bit for bit with no network. A request that was never
  recorded fails with a clear :class:`GeneratorError`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict, deque
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rewardlab.generators.base import GenerationRequest, Generator, GeneratorError, Reply
from rewardlab.rundir import write_json


def content_hash(payload: Any) -> str:
    """SHA-256 of the canonical JSON of ``payload``."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def messages_key(messages: list[dict[str, str]], sample: int) -> str:
    """The replay key: what was asked, and which sample of it."""
    return content_hash({"messages": messages, "sample": sample})


class CachedGenerator:
    """Answer repeated requests from a content-addressed cache; store new replies."""

    def __init__(self, inner: Generator, cache_dir: Path, identity: dict[str, Any]) -> None:
        """``identity``: what besides the messages determines a reply (back-end, model,
        temperature, max_tokens ...); never put secrets here."""
        self.inner = inner
        self.name = inner.name
        self.cache_dir = cache_dir
        self.identity = identity

    def _path(self, request: GenerationRequest) -> tuple[Path, str]:
        key = content_hash(
            {**self.identity, "messages": request.messages, "sample": request.sample}
        )
        return self.cache_dir / key[:2] / f"{key}.json", key

    def propose(self, request: GenerationRequest) -> Reply:
        path, key = self._path(request)
        if path.exists():
            try:
                stored = json.loads(path.read_text())
                reply = Reply(**stored["reply"])
                reply.params = {**reply.params, "cache": "hit", "cache_key": key}
                return reply
            except (OSError, ValueError, KeyError, TypeError):
                pass  # a damaged entry is treated as a miss and rewritten
        reply = self.inner.propose(request)
        write_json(path, {"key": key, "identity": self.identity, "messages": request.messages,
                          "sample": request.sample, "reply": asdict(reply)})  # fmt: skip
        reply.params = {**reply.params, "cache": "miss", "cache_key": key}
        return reply


def _version_order(path: Path) -> tuple[Any, ...]:
    return tuple(int(n) if n.isdigit() else n for n in re.split(r"(\d+)", str(path)))


class ReplayGenerator:
    """``llm=replay``: recorded replies only, in recorded order; no network."""

    name = "replay"

    def __init__(self, sources: list[Path]) -> None:
        self.replies: dict[str, deque[dict[str, Any]]] = defaultdict(deque)
        self.sources = sources
        for source in sources:
            if not source.exists():
                raise GeneratorError(f"llm.replay_from: {source} does not exist")
            files = sorted(source.rglob("attempt_*.json"), key=_version_order)
            for record_file in files:
                record = json.loads(record_file.read_text())
                if record.get("reply"):
                    sample = int(record.get("sample", 0))
                    self.replies[messages_key(record["messages"], sample)].append(record["reply"])
            for entry_file in sorted(source.rglob("*.json"), key=_version_order):
                if len(entry_file.parent.name) == 2 and len(entry_file.stem) == 64:  # a cache entry
                    entry = json.loads(entry_file.read_text())
                    self.replies[
                        messages_key(entry["messages"], int(entry.get("sample", 0)))
                    ].append(entry["reply"])
        if not self.replies:
            raise GeneratorError(
                f"llm.replay_from: no recorded LLM replies under {', '.join(map(str, sources))}"
            )

    def propose(self, request: GenerationRequest) -> Reply:
        queue = self.replies.get(messages_key(request.messages, request.sample))
        if not queue:
            raise GeneratorError(
                "llm=replay: this prompt was never recorded (or its recorded replies are used up) "
                f"in {', '.join(map(str, self.sources))}; the task, instruction, card or prompt "
                "templates must be the same as in the recorded run"
            )
        stored = queue.popleft() if len(queue) > 1 else queue[0]
        reply = Reply(**stored)
        reply.params = {**reply.params, "replayed": True}
        return reply
