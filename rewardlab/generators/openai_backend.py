"""The ``openai`` back-end: any OpenAI-compatible chat-completions server writes the reward.

Works with OpenAI itself and with local servers that speak the same protocol (vLLM,
Ollama, llama.cpp ``llama-server``, LM Studio ...): point ``base_url`` at the server's
``/v1`` root.

Retries are done here, not by the ``openai`` client (which is built with
``max_retries=0``), so every attempt is accounted for in the error message:

* HTTP 429, HTTP 5xx, timeouts and connection errors are retried with exponential backoff
  and jitter (capped at ``backoff_max_s``); a ``Retry-After`` header, when the server sends
  one, replaces the computed delay (also capped).
* Any other 4xx (bad key, unknown model, bad request) fails at once.
* A reply that is not valid chat-completions JSON fails at once: it almost always means
  ``base_url`` points at something that is not a chat-completions endpoint.

The API key is read from the environment variable named by ``api_key_env``; it is never
logged, recorded in :class:`~rewardlab.generators.base.Reply`, or shown in ``repr``.

Example:
    >>> from rewardlab.generators.openai_backend import OpenAIConfig, OpenAIGenerator
    >>> gen = OpenAIGenerator(OpenAIConfig(model="qwen2.5-coder:7b",
    ...                                    base_url="http://localhost:11434/v1"))
    >>> gen.name
    'openai'
"""

from __future__ import annotations

import email.utils
import ipaddress
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

import openai

from rewardlab.generators.base import GenerationRequest, GeneratorError, Reply

log = logging.getLogger(__name__)

PLACEHOLDER_API_KEY = "not-needed"
"""Sent to keyless servers (most local ones ignore the key but the client needs one)."""

_OPENAI_HOSTS = frozenset({"api.openai.com"})


@dataclass(frozen=True)
class OpenAIConfig:
    """Settings of :class:`OpenAIGenerator` (also usable as a Hydra structured config).

    Attributes:
        model: Model name as the server knows it (``"gpt-4o"``, ``"qwen2.5-coder:7b"`` ...).
        base_url: The server's ``/v1`` root, e.g. ``"http://localhost:8000/v1"``; ``None``
            uses the ``openai`` client default (OpenAI, or ``$OPENAI_BASE_URL`` if set).
        api_key_env: Name of the environment variable holding the API key. When it is unset
            and ``base_url`` is given, a placeholder key is sent (local servers need none);
            when it is unset and ``base_url`` is ``None``, construction fails.
        temperature: Sampling temperature; ``None`` leaves it to the server.
        max_tokens: Reply length limit; ``None`` leaves it to the server.
        timeout_s: Per-attempt time limit (connect, read, write), seconds.
        max_retries: Retries after the first attempt for retryable failures.
        backoff_s: Delay before the first retry; doubles each retry, with jitter.
        backoff_max_s: Cap on any delay, including a server's ``Retry-After``.
    """

    model: str
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float | None = 0.7
    max_tokens: int | None = 4096
    timeout_s: float = 120.0
    max_retries: int = 3
    backoff_s: float = 1.0
    backoff_max_s: float = 30.0

    def __post_init__(self) -> None:
        """Reject settings that can only fail later.

        Raises:
            GeneratorError: On an empty model name or out-of-range numbers.
        """
        problems = []
        if not self.model or not self.model.strip():
            problems.append("model must be a non-empty model name")
        if self.temperature is not None and self.temperature < 0:
            problems.append(f"temperature must be >= 0, got {self.temperature}")
        if self.max_tokens is not None and self.max_tokens <= 0:
            problems.append(f"max_tokens must be > 0 or None, got {self.max_tokens}")
        if self.timeout_s <= 0:
            problems.append(f"timeout_s must be > 0, got {self.timeout_s}")
        if self.max_retries < 0:
            problems.append(f"max_retries must be >= 0, got {self.max_retries}")
        if self.backoff_s < 0 or self.backoff_max_s < 0:
            problems.append("backoff_s and backoff_max_s must be >= 0")
        if problems:
            raise GeneratorError("openai generator config: " + "; ".join(problems))


class _Retryable(Exception):
    """One failed attempt that may be retried (internal)."""

    def __init__(self, summary: str, retry_after: float | None = None) -> None:
        super().__init__(summary)
        self.summary = summary
        self.retry_after = retry_after


class OpenAIGenerator:
    """Writes reward programs with a chat model behind an OpenAI-compatible API.

    Args:
        config: Model, server and retry settings.

    Raises:
        GeneratorError: If the config is invalid or no API key is available for OpenAI.
    """

    name = "openai"

    def __init__(self, config: OpenAIConfig) -> None:
        self.config = config
        api_key = _resolve_api_key(config)
        self._secret = api_key if api_key != PLACEHOLDER_API_KEY else None
        kwargs: dict[str, Any] = {
            "api_key": api_key,
            "timeout": config.timeout_s,
            "max_retries": 0,
        }
        if config.base_url is not None:
            kwargs["base_url"] = config.base_url
        try:
            self._client = openai.OpenAI(**kwargs)
        except openai.OpenAIError as exc:  # e.g. malformed base_url
            raise GeneratorError(f"openai: cannot create client: {self._redact(str(exc))}") from exc
        self.base_url = str(self._client.base_url).rstrip("/")
        self._sleep: Callable[[float], None] = time.sleep

    def __repr__(self) -> str:
        """Show model and server, never the key."""
        return f"OpenAIGenerator(model={self.config.model!r}, base_url={self.base_url!r})"

    def propose(self, request: GenerationRequest) -> Reply:
        """Send ``request.messages`` to the server and return its reply.

        Args:
            request: The rendered chat messages (other fields are not used here).

        Returns:
            The reply text (``""`` when the server sent no content), the served model name,
            the sampling parameters, token usage when reported, and the wall time of the
            whole call (including retries) in ``latency_s``. ``params["attempts"]`` is the
            number of HTTP requests made.

        Raises:
            GeneratorError: On a non-retryable failure, or when all retries failed; the
                message names the model, the server and what each attempt got.
        """
        cfg = self.config
        attempts: list[str] = []
        start = time.monotonic()
        for attempt in range(cfg.max_retries + 1):
            try:
                completion = self._call(request)
            except _Retryable as exc:
                attempts.append(f"attempt {attempt + 1}: {exc.summary}")
                if attempt == cfg.max_retries:
                    break
                delay = self._delay(attempt, exc.retry_after)
                log.warning(
                    "openai: %s (model %r at %s); retrying in %.2f s",
                    exc.summary,
                    cfg.model,
                    self.base_url,
                    delay,
                )
                self._sleep(delay)
                continue
            return self._reply(completion, attempts=attempt + 1, start=start)
        hint = ""
        if any("connection error" in a for a in attempts):
            hint = ". Is the server running and is base_url right?"
        raise GeneratorError(
            f"openai: no reply from model {cfg.model!r} at {self.base_url} after "
            f"{len(attempts)} attempt(s): " + "; ".join(attempts) + hint
        )

    # -- one attempt -------------------------------------------------------------------

    def _call(self, request: GenerationRequest) -> Any:
        """Make one request; classify failures as retryable or fatal.

        Raises:
            _Retryable: For 429, 5xx, timeouts and connection errors.
            GeneratorError: For everything else.
        """
        cfg = self.config
        kwargs: dict[str, Any] = {}
        if cfg.temperature is not None:
            kwargs["temperature"] = cfg.temperature
        if cfg.max_tokens is not None:
            kwargs["max_tokens"] = cfg.max_tokens
        try:
            return self._client.chat.completions.create(
                model=cfg.model,
                messages=cast(Any, request.messages),
                **kwargs,
            )
        except openai.APITimeoutError as exc:
            raise _Retryable(f"timeout (no reply within timeout_s={cfg.timeout_s:g} s)") from exc
        except openai.APIConnectionError as exc:
            cause = exc.__cause__ or exc
            raise _Retryable(
                f"connection error ({self._redact(str(cause)) or type(cause).__name__})"
            ) from exc
        except openai.APIStatusError as exc:
            code = exc.status_code
            detail = self._server_message(exc)
            if code == 429 or code >= 500:
                raise _Retryable(
                    f"HTTP {code}: {detail}", _retry_after(exc.response.headers)
                ) from exc
            raise GeneratorError(self._fatal_message(code, detail)) from exc
        except (openai.APIResponseValidationError, ValueError) as exc:  # bad JSON
            raise GeneratorError(
                f"openai: malformed response from {self.base_url} for model {cfg.model!r} "
                f"({type(exc).__name__}: {self._redact(str(exc))[:200]}); is base_url the "
                "server's OpenAI-compatible /v1 root?"
            ) from exc
        except openai.OpenAIError as exc:
            raise GeneratorError(
                f"openai: request to {self.base_url} for model {cfg.model!r} failed: "
                f"{type(exc).__name__}: {self._redact(str(exc))}"
            ) from exc

    def _reply(self, completion: Any, *, attempts: int, start: float) -> Reply:
        """Turn a chat completion into a :class:`Reply`.

        Raises:
            GeneratorError: If the response is not a chat completion.
        """
        cfg = self.config
        try:
            choice = completion.choices[0]
            content = choice.message.content
        except (AttributeError, IndexError, KeyError, TypeError) as exc:
            shown = self._redact(repr(completion))[:200]
            raise GeneratorError(
                f"openai: malformed response from {self.base_url} for model {cfg.model!r}: "
                f"no choices[0].message in {shown}; is base_url the server's "
                "OpenAI-compatible /v1 root?"
            ) from exc
        if getattr(choice, "finish_reason", None) == "length":
            log.warning(
                "openai: reply of %r was cut at max_tokens=%s; the code may be incomplete",
                cfg.model,
                cfg.max_tokens,
            )
        text = content if isinstance(content, str) else ""
        usage: dict[str, int] = {}
        reported = getattr(completion, "usage", None)
        for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
            value = getattr(reported, key, None)
            if isinstance(value, int):
                usage[key] = value
        served = getattr(completion, "model", None)
        return Reply(
            text=text,
            model=served if isinstance(served, str) and served else cfg.model,
            params={
                "model": cfg.model,
                "temperature": cfg.temperature,
                "max_tokens": cfg.max_tokens,
                "base_url": self.base_url,
                "attempts": attempts,
            },
            usage=usage,
            latency_s=time.monotonic() - start,
        )

    # -- helpers -----------------------------------------------------------------------

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before retry number ``attempt + 1``."""
        cap = self.config.backoff_max_s
        if retry_after is not None:
            return min(cap, max(0.0, retry_after))
        base = min(cap, self.config.backoff_s * (2**attempt))
        return base * random.uniform(0.5, 1.0)

    def _fatal_message(self, code: int, detail: str) -> str:
        """Explain a non-retryable HTTP error."""
        cfg = self.config
        hint = ""
        if code in (401, 403):
            hint = f" Check the API key in ${cfg.api_key_env}."
        elif code == 404:
            hint = " Check the model name and that base_url ends with the /v1 root."
        return f"openai: HTTP {code} from {self.base_url} for model {cfg.model!r}: {detail}.{hint}"

    def _server_message(self, exc: openai.APIStatusError) -> str:
        """The server's own error text, shortened and with the key removed."""
        body = exc.body
        if isinstance(body, dict):
            inner = body.get("error", body)
            message = inner.get("message") if isinstance(inner, dict) else inner
            text = str(message) if message else str(body)
        elif isinstance(body, str) and body.strip():
            text = body
        else:
            text = exc.message
        return self._redact(" ".join(text.split()))[:300]

    def _redact(self, text: str) -> str:
        """Remove the API key from text meant for users or logs."""
        if self._secret:
            text = text.replace(self._secret, "***")
        return text


def _resolve_api_key(config: OpenAIConfig) -> str:
    """Read the key from the environment, or fall back to a placeholder for local servers.

    Raises:
        GeneratorError: If the key is needed (OpenAI itself) but unset.
    """
    key = os.environ.get(config.api_key_env, "").strip()
    if key:
        return key
    host = urlsplit(config.base_url).hostname if config.base_url else None
    if config.base_url is None or (host or "").lower() in _OPENAI_HOSTS:
        raise GeneratorError(
            f"openai: no API key: set the environment variable {config.api_key_env} "
            "(or set api_key_env to the variable that holds it), or point base_url at a "
            "local OpenAI-compatible server"
        )
    if not _is_local(host):
        log.warning(
            "openai: $%s is unset; sending a placeholder key to %s",
            config.api_key_env,
            config.base_url,
        )
    return PLACEHOLDER_API_KEY


def _is_local(host: str | None) -> bool:
    """Whether ``host`` is this machine or a private network address."""
    if not host:
        return False
    if host.lower() == "localhost" or host.lower().endswith((".local", ".localhost")):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_unspecified


def _retry_after(headers: Any) -> float | None:
    """Seconds from ``retry-after-ms`` / ``Retry-After`` (seconds or HTTP date), if any."""
    try:
        millis = headers.get("retry-after-ms")
        if millis is not None:
            return float(millis) / 1000.0
    except (TypeError, ValueError):
        pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        pass
    try:
        when = email.utils.parsedate_to_datetime(str(value))
    except (TypeError, ValueError, IndexError):
        return None
    return when.timestamp() - time.time()
