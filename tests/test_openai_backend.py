"""The ``openai`` back-end against a real (fake) OpenAI-compatible HTTP server."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fake_llm_server import (
    FakeLLMServer,
    drop,
    dynamic,
    empty,
    malformed,
    reply,
    slow,
    status,
)

from rewardlab.generators.base import GenerationRequest, GeneratorError, extract_code
from rewardlab.generators.openai_backend import OpenAIConfig, OpenAIGenerator
from rewardlab.tasks.registry import TaskSpec

pytestmark = pytest.mark.timeout(30)

KEY_ENV = "REWARDLAB_TEST_OPENAI_KEY"
SECRET = "sk-test-do-not-leak-1234"
MODEL = "test-coder-7b"

CODE_REPLY = """Here is a reward.

```python
import numpy as np

def compute_dense_reward(self, action):
    return float(self.data.qvel[0]) - 0.001 * float(np.square(action).sum())
```
"""

BROKEN_REPLY = "```python\ndef compute_dense_reward(self, action)\n    return (1.0\n```\n"


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as fake:
        yield fake


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)


HANG_S = 600.0
"""A reply that never comes while the test runs (the server's stop wakes the handler): a client
timeout, however loaded the machine, and never a reply that was merely late."""


class Waits(list[float]):
    """Stands in for the generator's sleep: records the back-off delays instead of waiting, so
    tests check the delay chosen, not the wall time taken."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def make(server: FakeLLMServer, **overrides: Any) -> OpenAIGenerator:
    settings: dict[str, Any] = {
        "model": MODEL,
        "base_url": server.base_url,
        "api_key_env": KEY_ENV,
        "temperature": 0.3,
        "max_tokens": 512,
        "timeout_s": 5.0,
        "max_retries": 2,
        "backoff_s": 0.01,
        "backoff_max_s": 0.05,
    }
    settings.update(overrides)
    return OpenAIGenerator(OpenAIConfig(**settings))


def request() -> GenerationRequest:
    messages = [
        {"role": "system", "content": "You write reward functions."},
        {"role": "user", "content": "Make the hopper hop forward."},
    ]
    return GenerationRequest(task=TaskSpec(), instruction="hop forward", messages=messages)


def test_reply_with_code_sends_model_messages_and_params(server: FakeLLMServer) -> None:
    usage = {"prompt_tokens": 11, "completion_tokens": 22, "total_tokens": 33}
    server.push(reply(CODE_REPLY, usage=usage))
    gen = make(server)
    req = request()

    before = time.monotonic()
    out = gen.propose(req)
    took = time.monotonic() - before

    assert gen.name == "openai"
    assert out.text == CODE_REPLY
    code = extract_code(out.text)
    assert code is not None and code.startswith("import numpy as np")
    assert "def compute_dense_reward(self, action):" in code
    assert out.model == MODEL
    assert out.usage == usage
    assert 0 < out.latency_s <= took, "the call's own wall time, whatever the machine's load"
    assert out.params["temperature"] == 0.3
    assert out.params["max_tokens"] == 512
    assert out.params["base_url"] == server.base_url
    assert out.params["attempts"] == 1
    assert SECRET not in repr(out)

    assert server.chat_count == 1
    sent = server.chat_bodies[0]
    assert sent["model"] == MODEL
    assert sent["messages"] == req.messages
    assert sent["temperature"] == 0.3
    assert sent["max_tokens"] == 512
    headers = server.requests[0].headers
    assert headers.get("authorization") == f"Bearer {SECRET}"


def test_served_model_name_is_recorded(server: FakeLLMServer) -> None:
    server.push(reply("ok", model=f"{MODEL}-2025-01-01"))
    out = make(server).propose(request())
    assert out.model == f"{MODEL}-2025-01-01"
    assert out.params["model"] == MODEL


def test_none_params_are_not_sent(server: FakeLLMServer) -> None:
    server.push(reply("ok"))
    make(server, temperature=None, max_tokens=None).propose(request())
    sent = server.chat_bodies[0]
    assert "temperature" not in sent and "max_tokens" not in sent


def test_reply_without_code(server: FakeLLMServer) -> None:
    server.push(reply("I cannot help with that."))
    out = make(server).propose(request())
    assert out.text == "I cannot help with that."
    assert extract_code(out.text) is None


def test_reply_with_broken_code_comes_back_unchanged(server: FakeLLMServer) -> None:
    server.push(reply(BROKEN_REPLY))
    out = make(server).propose(request())
    assert out.text == BROKEN_REPLY


def test_empty_content_is_empty_text(server: FakeLLMServer) -> None:
    server.push(empty())
    out = make(server).propose(request())
    assert out.text == ""
    assert server.chat_count == 1


def test_dynamic_reply_sees_the_request(server: FakeLLMServer) -> None:
    server.push(dynamic(lambda body: f"you said: {body['messages'][-1]['content']}"))
    out = make(server).propose(request())
    assert out.text == "you said: Make the hopper hop forward."


def test_429_then_success_honours_retry_after(server: FakeLLMServer) -> None:
    server.push(status(429, retry_after=0), reply(CODE_REPLY))
    # a large computed backoff: only honouring Retry-After: 0 keeps this fast
    gen = make(server, backoff_s=10.0, backoff_max_s=10.0)
    gen._sleep = waits = Waits()
    out = gen.propose(request())
    assert waits == [0.0], "Retry-After: 0 replaces the computed backoff"
    assert out.text == CODE_REPLY
    assert out.params["attempts"] == 2
    assert server.chat_count == 2
    assert server.chat_bodies[0] == server.chat_bodies[1]


def test_retry_after_is_capped(server: FakeLLMServer) -> None:
    server.push(status(429, retry_after=3600), reply("ok"))
    gen = make(server, backoff_max_s=0.05)
    gen._sleep = waits = Waits()
    out = gen.propose(request())
    assert waits == [0.05], "the server's hour is capped at backoff_max_s"
    assert out.text == "ok"


def test_5xx_exhausts_retries(server: FakeLLMServer) -> None:
    server.push(*[status(500, "upstream model crashed")] * 3, reply("too late"))
    with pytest.raises(GeneratorError) as info:
        make(server, max_retries=2).propose(request())
    message = str(info.value)
    assert server.chat_count == 3
    assert "HTTP 500" in message and "upstream model crashed" in message
    assert "3 attempt" in message
    assert all(f"attempt {i}" in message for i in (1, 2, 3))
    assert MODEL in message and server.base_url in message
    assert server.pending == 1


def test_503_then_success(server: FakeLLMServer) -> None:
    server.push(status(503), reply("ok"))
    assert make(server).propose(request()).text == "ok"
    assert server.chat_count == 2


def test_401_fails_at_once_without_leaking_the_key(server: FakeLLMServer) -> None:
    server.push(status(401, "Incorrect API key provided"), reply("never"))
    gen = make(server, max_retries=3)
    with pytest.raises(GeneratorError) as info:
        gen.propose(request())
    message = str(info.value)
    assert server.chat_count == 1
    assert "401" in message and "Incorrect API key provided" in message
    assert MODEL in message and server.base_url in message
    assert KEY_ENV in message
    assert SECRET not in message and SECRET not in repr(gen)


def test_404_unknown_model_fails_at_once(server: FakeLLMServer) -> None:
    server.push(status(404, f"model '{MODEL}' not found"))
    with pytest.raises(GeneratorError, match="404") as info:
        make(server).propose(request())
    assert "not found" in str(info.value)
    assert server.chat_count == 1


def test_slow_reply_times_out_and_is_retried(server: FakeLLMServer) -> None:
    server.push(slow(HANG_S, "late"), slow(HANG_S, "late"))  # replies only after the test
    with pytest.raises(GeneratorError) as info:
        make(server, timeout_s=1.0, max_retries=1).propose(request())
    assert "timeout" in str(info.value).lower() and "2 attempt" in str(info.value)
    assert server.chat_count == 2


def test_timeout_then_success(server: FakeLLMServer) -> None:
    server.push(slow(HANG_S, "late"), reply("on time"))
    out = make(server, timeout_s=1.0).propose(request())
    assert out.text == "on time"
    assert out.params["attempts"] == 2


def test_dropped_connection_is_retried(server: FakeLLMServer) -> None:
    server.push(drop(), reply("ok"))
    assert make(server).propose(request()).text == "ok"
    assert server.chat_count == 2


def test_connection_refused_gives_clear_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = OpenAIConfig(
        model=MODEL,
        base_url=f"http://127.0.0.1:{port}/v1",
        api_key_env=KEY_ENV,
        timeout_s=1.0,
        max_retries=1,
        backoff_s=0.01,
    )
    with pytest.raises(GeneratorError) as info:
        OpenAIGenerator(config).propose(request())
    message = str(info.value)
    assert "connection" in message.lower() and f"127.0.0.1:{port}" in message
    assert "2 attempt" in message


def test_malformed_json_fails_clearly(server: FakeLLMServer) -> None:
    server.push(malformed())
    with pytest.raises(GeneratorError, match="malformed response") as info:
        make(server).propose(request())
    assert server.base_url in str(info.value)
    assert server.chat_count == 1


def test_missing_key_for_openai_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(GeneratorError, match=KEY_ENV):
        OpenAIGenerator(OpenAIConfig(model="gpt-4o", api_key_env=KEY_ENV))


def test_missing_key_for_local_server_uses_placeholder(
    server: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    server.push(reply("ok"))
    assert make(server).propose(request()).text == "ok"
    assert server.requests[0].headers.get("authorization") == "Bearer not-needed"


def test_script_exhausted_is_a_clear_client_error(server: FakeLLMServer) -> None:
    with pytest.raises(GeneratorError, match="script exhausted"):
        make(server).propose(request())
    assert server.chat_count == 1


def test_models_endpoint(server: FakeLLMServer) -> None:
    import openai

    client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
    assert [m.id for m in client.models.list()] == ["fake-model"]


@pytest.mark.parametrize(
    "bad",
    [
        {"model": ""},
        {"timeout_s": 0},
        {"max_retries": -1},
        {"max_tokens": 0},
        {"temperature": -1.0},
    ],
)
def test_bad_config_is_rejected(bad: dict[str, Any]) -> None:
    settings: dict[str, Any] = {"model": MODEL, "base_url": "http://127.0.0.1:1/v1"}
    settings.update(bad)
    with pytest.raises(GeneratorError, match="config"):
        OpenAIConfig(**settings)
