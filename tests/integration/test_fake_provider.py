"""Integration tests: the fake provider on 127.0.0.1, driven by aiohttp and the official SDKs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import aiohttp
import anthropic
import openai
import orjson
import pytest

from proxy.fake import Behaviour, FakeProvider
from proxy.fake.openai_dialect import embedding_vector
from proxy.fake.server import serve

CHAT = {"model": "gpt-test", "messages": [{"role": "user", "content": "hello"}]}
STREAM = {**CHAT, "stream": True}
BOUND = 10.0  # no test waits longer than this on any one step


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    provider = FakeProvider(name="alpha")
    await provider.start()
    yield provider
    await asyncio.wait_for(provider.stop(), BOUND)


@pytest.fixture
async def claude() -> AsyncIterator[FakeProvider]:
    provider = FakeProvider(dialect="anthropic", name="claude")
    await provider.start()
    yield provider
    await asyncio.wait_for(provider.stop(), BOUND)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=BOUND)) as s:
        yield s


async def _events(resp: aiohttp.ClientResponse) -> list[tuple[float, bytes]]:
    """Each SSE event with the monotonic time its blank line arrived."""
    out: list[tuple[float, bytes]] = []
    buf = b""
    async for line in resp.content:
        if line == b"\n":
            out.append((time.monotonic(), buf))
            buf = b""
        else:
            buf += line
    assert buf == b""
    return out


async def _until(predicate: Callable[[], bool], within: float = 3.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def test_stream_events_arrive_separately_with_delays(
    fake: FakeProvider, session: aiohttp.ClientSession
) -> None:
    fake.default = Behaviour(chunks=3, chunk_delay_s=0.2, ttft_s=0.1)
    sent = time.monotonic()
    async with session.post(f"{fake.base_url}/chat/completions", json=STREAM) as resp:
        headers_at = time.monotonic()
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/event-stream"
        assert resp.headers["x-fake-name"] == "alpha"
        assert resp.headers["x-request-id"]
        events = await _events(resp)
    bodies = [body for _, body in events]
    assert bodies[-1] == b"data: [DONE]\n"
    chunks = [orjson.loads(body.removeprefix(b"data: ")) for body in bodies[:-1]]
    assert [c["choices"][0]["delta"].get("content") for c in chunks] == [
        "",
        "tok0",
        " tok1",
        " tok2",
        None,
    ]
    assert all(c["model"] == "gpt-test" for c in chunks)
    first_content, last_content = events[1][0], events[3][0]
    # Two 0.2 s pauses separate the first and last content chunk: the first one was
    # delivered long before the last one was even written.
    assert last_content - first_content >= 0.3
    assert first_content - sent >= 0.1  # TTFT
    assert headers_at <= first_content


async def test_latency_delays_the_headers(
    fake: FakeProvider, session: aiohttp.ClientSession
) -> None:
    fake.script(Behaviour(latency_s=0.3))
    started = time.monotonic()
    async with session.post(f"{fake.base_url}/chat/completions", json=CHAT) as resp:
        assert time.monotonic() - started >= 0.25
        body = await resp.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == "tok0 tok1 tok2 tok3 tok4"


async def test_script_is_consumed_in_order_then_default(
    fake: FakeProvider, session: aiohttp.ClientSession
) -> None:
    fake.script(
        Behaviour(status=500),
        Behaviour(status=429, retry_after="3", retry_after_ms="2500"),
        Behaviour(chunks=2),
    )
    fake.default = Behaviour(chunks=1)
    seen = []
    for _ in range(5):
        async with session.post(f"{fake.base_url}/chat/completions", json=CHAT) as resp:
            seen.append((resp.status, await resp.json(), resp.headers))
    assert [status for status, _, _ in seen] == [500, 429, 200, 200, 200]
    assert seen[0][1]["error"]["type"] == "server_error"
    assert seen[1][1]["error"]["code"] == "rate_limit_exceeded"
    assert seen[1][2]["Retry-After"] == "3"
    assert seen[1][2]["retry-after-ms"] == "2500"
    assert "Retry-After" not in seen[0][2]
    assert [body["usage"]["completion_tokens"] for _, body, _ in seen[2:]] == [2, 1, 1]
    assert fake.queued == 0
    assert len(fake.requests) == 5
    assert len({h["x-request-id"] for _, _, h in seen}) == 5


async def test_requests_are_recorded_with_original_header_case(
    fake: FakeProvider, session: aiohttp.ClientSession
) -> None:
    body = orjson.dumps(CHAT)
    headers = {"X-Custom-Thing": "v", "Content-Type": "application/json"}
    async with session.post(f"{fake.base_url}/chat/completions", data=body, headers=headers) as r:
        assert r.status == 200
    (rec,) = fake.requests
    assert rec.method == "POST"
    assert rec.path == "/v1/chat/completions"
    assert rec.body == body
    assert ("X-Custom-Thing", "v") in rec.headers
    assert rec.header("x-custom-thing") == "v"
    assert rec.json()["model"] == "gpt-test"
    assert fake.inflight == 0


async def test_bad_request_is_openai_shaped_400(
    fake: FakeProvider, session: aiohttp.ClientSession
) -> None:
    bad = {**CHAT, "stream_options": {"include_usage": True}}
    async with session.post(f"{fake.base_url}/chat/completions", json=bad) as resp:
        assert resp.status == 400
        error = (await resp.json())["error"]
    assert error["param"] == "stream_options"
    async with session.post(f"{fake.base_url}/chat/completions", data=b"{") as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["type"] == "invalid_request_error"


async def test_include_usage_adds_the_usage_chunk(
    fake: FakeProvider, session: aiohttp.ClientSession
) -> None:
    req = {**STREAM, "stream_options": {"include_usage": True}}
    async with session.post(f"{fake.base_url}/chat/completions", json=req) as resp:
        bodies = [body for _, body in await _events(resp)]
    usage_chunk = orjson.loads(bodies[-2].removeprefix(b"data: "))
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == 5


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("reset_before_headers", aiohttp.ClientOSError),  # RST: ECONNRESET
        ("close_before_headers", aiohttp.ServerDisconnectedError),  # clean FIN
    ],
)
async def test_connection_broken_before_headers(
    fake: FakeProvider, session: aiohttp.ClientSession, fault: str, error: type[Exception]
) -> None:
    fake.script(Behaviour(fault=fault))
    with pytest.raises(error):
        async with session.post(f"{fake.base_url}/chat/completions", json=CHAT) as resp:
            await resp.read()
    assert len(fake.requests) == 1  # the request was read before the connection broke
    await _until(lambda: fake.inflight == 0)
    assert fake.disconnects == []  # the fake broke it: not a client disconnect
    async with session.post(f"{fake.base_url}/chat/completions", json=CHAT) as resp:
        assert resp.status == 200  # and the next request is fine


async def test_reset_mid_stream_breaks_after_n_events(
    fake: FakeProvider, session: aiohttp.ClientSession
) -> None:
    fake.script(Behaviour(fault="reset_mid_stream", fault_after_chunks=2, chunks=5))
    received: list[bytes] = []

    async def collect() -> None:
        async with session.post(f"{fake.base_url}/chat/completions", json=STREAM) as resp:
            assert resp.status == 200
            buf = b""
            async for line in resp.content:
                if line == b"\n":
                    received.append(buf)
                    buf = b""
                else:
                    buf += line

    with pytest.raises(aiohttp.ClientPayloadError):
        await collect()
    contents = [orjson.loads(b.removeprefix(b"data: "))["choices"][0]["delta"] for b in received]
    assert contents == [
        {"role": "assistant", "content": "", "refusal": None},
        {"content": "tok0"},
        {"content": " tok1"},
    ]
    assert b"data: [DONE]\n" not in received


async def test_hang_records_a_disconnect_when_the_client_gives_up(
    fake: FakeProvider, session: aiohttp.ClientSession
) -> None:
    fake.script(Behaviour(fault="hang"))
    started = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=0.3)
    with pytest.raises(asyncio.TimeoutError):
        async with session.post(
            f"{fake.base_url}/chat/completions", json=CHAT, timeout=timeout
        ) as resp:
            await resp.read()
    await _until(lambda: len(fake.disconnects) == 1)
    assert fake.disconnects[0] >= started + 0.25
    await _until(lambda: fake.inflight == 0)


async def test_latent_handler_is_cancelled_by_a_client_cancel(
    fake: FakeProvider, session: aiohttp.ClientSession
) -> None:
    fake.script(Behaviour(latency_s=30))

    async def call() -> None:
        async with session.post(f"{fake.base_url}/chat/completions", json=CHAT) as resp:
            await resp.read()

    request = asyncio.create_task(call())
    await _until(lambda: fake.inflight == 1)
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request
    await _until(lambda: fake.inflight == 0 and len(fake.disconnects) == 1)


async def test_drip_sends_only_comments(fake: FakeProvider, session: aiohttp.ClientSession) -> None:
    fake.script(Behaviour(fault="drip", drip_interval_s=0.05))
    async with session.post(f"{fake.base_url}/chat/completions", json=STREAM) as resp:
        assert resp.status == 200
        lines = [await asyncio.wait_for(resp.content.readline(), BOUND) for _ in range(4)]
    assert lines == [b": \n"] * 4
    await _until(lambda: len(fake.disconnects) == 1 and fake.inflight == 0)


async def test_control_api(fake: FakeProvider, session: aiohttp.ClientSession) -> None:
    root = fake.base_url.removesuffix("/v1")
    async with session.post(f"{root}/_fake/script", json=[{"status": 503}, {"chunks": 1}]) as r:
        assert r.status == 200
        assert (await r.json())["queued"] == 2
    async with session.put(f"{root}/_fake/default", json={"chunks": 2, "text": "ab"}) as r:
        assert r.status == 200
    async with session.post(f"{root}/_fake/script", json=[{"fault": "nope"}]) as r:
        assert r.status == 400
        assert "fault" in (await r.json())["error"]
    statuses, tokens, body = [], [], {}
    for _ in range(3):
        async with session.post(f"{fake.base_url}/chat/completions", json=CHAT) as r:
            statuses.append(r.status)
            body = await r.json()
            tokens.append(body.get("usage", {}).get("completion_tokens"))
    assert statuses == [503, 200, 200]
    assert tokens == [None, 1, 2]
    assert body["choices"][0]["message"]["content"] == "ab"
    async with session.get(f"{root}/_fake/requests") as r:
        info = await r.json()
    assert info["count"] == 3
    assert [item["path"] for item in info["recent"]] == ["/v1/chat/completions"] * 3
    assert orjson.loads(info["recent"][0]["body"]) == CHAT
    async with session.post(f"{root}/_fake/reset") as r:
        assert r.status == 200
    assert fake.requests == []
    assert fake.default == Behaviour()


async def test_anthropic_dialect_over_http(
    claude: FakeProvider, session: aiohttp.ClientSession
) -> None:
    claude.script(Behaviour(status=529))
    req = {
        "model": "claude-test",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}],
    }
    async with session.post(f"{claude.base_url}/v1/messages", json=req) as resp:
        assert resp.status == 529
        body = await resp.json()
        assert resp.headers["request-id"] == body["request_id"]
    assert body["error"]["type"] == "overloaded_error"
    async with session.post(f"{claude.base_url}/v1/messages", json={**req, "stream": True}) as resp:
        assert resp.headers["Content-Type"] == "text/event-stream"
        bodies = [body for _, body in await _events(resp)]
    names = [b.split(b"\n", 1)[0].removeprefix(b"event: ").decode() for b in bodies]
    assert names[0] == "message_start"
    assert names[-1] == "message_stop"


async def test_openai_sdk_chat_and_embeddings(fake: FakeProvider) -> None:
    client = openai.AsyncOpenAI(base_url=fake.base_url, api_key="x", max_retries=0, timeout=BOUND)
    async with client:
        completion = await client.chat.completions.create(
            model="gpt-test", messages=[{"role": "user", "content": "hi"}]
        )
        assert completion.choices[0].message.content == "tok0 tok1 tok2 tok3 tok4"
        assert completion.usage is not None
        assert completion.usage.completion_tokens == 5
        stream = await client.chat.completions.create(
            model="gpt-test",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        text, usage = "", None
        async for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
            if chunk.usage is not None:
                usage = chunk.usage
        assert text == "tok0 tok1 tok2 tok3 tok4"
        assert usage is not None
        assert usage.completion_tokens == 5
        embeddings = await client.embeddings.create(model="emb", input=["a", "b"])
    (rec,) = [r for r in fake.requests if r.path.endswith("/embeddings")]
    assert rec.json()["encoding_format"] == "base64"  # the SDK default
    assert [e.embedding for e in embeddings.data] == [
        embedding_vector(b"a", 8),
        embedding_vector(b"b", 8),
    ]


async def test_openai_sdk_sees_rate_limit(fake: FakeProvider) -> None:
    fake.script(Behaviour(status=429, retry_after="1"))
    client = openai.AsyncOpenAI(base_url=fake.base_url, api_key="x", max_retries=0, timeout=BOUND)
    async with client:
        with pytest.raises(openai.RateLimitError) as info:
            await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "x"}]
            )
    assert info.value.code == "rate_limit_exceeded"


async def test_anthropic_sdk_stream_and_usage(claude: FakeProvider) -> None:
    claude.default = Behaviour(chunks=4, prompt_tokens=12, text="Hello there!")
    client = anthropic.AsyncAnthropic(
        base_url=claude.base_url, api_key="x", max_retries=0, timeout=BOUND
    )
    async with client:
        async with client.messages.stream(
            model="claude-test", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            pieces = [text async for text in stream.text_stream]
            final = await stream.get_final_message()
        plain = await client.messages.create(
            model="claude-test", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
        )
    assert "".join(pieces) == "Hello there!"
    assert len(pieces) == 4
    assert final.usage.input_tokens == 12
    assert final.usage.output_tokens == 4
    assert final.stop_reason == "end_turn"
    assert final.model == "claude-test"
    assert plain.content[0].type == "text"
    assert plain.usage.output_tokens == 4
    assert claude.requests[0].header("anthropic-version")  # the SDK always sends one


async def test_scripted_headers_replace_ours(
    fake: FakeProvider, session: aiohttp.ClientSession
) -> None:
    fake.script(Behaviour(headers=(("content-type", "text/plain"), ("x-extra", "1"))))
    async with session.post(f"{fake.base_url}/chat/completions", json=CHAT) as resp:
        assert resp.headers.getall("Content-Type") == ["text/plain"]
        assert resp.headers["x-extra"] == "1"


async def test_serve_runs_until_cancelled(session: aiohttp.ClientSession) -> None:
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    server = asyncio.create_task(
        serve("127.0.0.1", 0, "openai", "served", Behaviour(chunks=1), ready.set_result)
    )
    try:
        port = await asyncio.wait_for(ready, BOUND)
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        async with session.post(url, json=CHAT) as resp:
            assert resp.headers["x-fake-name"] == "served"
            assert (await resp.json())["usage"]["completion_tokens"] == 1
    finally:
        server.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(server, BOUND)
