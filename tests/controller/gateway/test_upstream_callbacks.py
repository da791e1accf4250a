"""The upstream client's callback path (:meth:`Upstream.send`), the one a proxied request takes
on an idle pooled connection: the answer reaches the callback once, a reused connection that
fails before any response byte is retried on a fresh one, and the deadline sweep times out a
call that gets no answer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from controller.gateway.upstream import (
    CONNECTION_ERROR,
    DEADLINE_TICK_S,
    TIMEOUT,
    Upstream,
    UpstreamResponse,
)

Behaviour = Callable[[int], str]  # the nth request on a connection -> answer, close or hold


async def _model_server(behaviour: Behaviour) -> tuple[asyncio.AbstractServer, int, list[int]]:
    """Answers ``ok-<connection>-<n>`` or closes or stays silent, as ``behaviour`` says; the
    list counts the connections made."""
    connections: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(len(connections) + 1)
        number = len(connections)
        count = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                count += 1
                action = behaviour(count)
                if action == "close":
                    break
                if action == "hold":
                    await asyncio.sleep(30)
                body = b"ok-%d-%d" % (number, count)
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n\r\n%s"
                    % (len(body), body)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, int(server.sockets[0].getsockname()[1]), connections


async def _send(upstream: Upstream, url: str) -> tuple[UpstreamResponse, int]:
    """One call through ``send``, and how many times its callback ran."""
    answers: list[UpstreamResponse] = []
    upstream.send("POST", url, "/infer", [(b"x-test", b"1")], b"{}", answers.append)
    deadline = time.monotonic() + 5
    while not answers and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.05)  # a second callback would have arrived by now
    assert answers, "the callback never ran"
    return answers[0], len(answers)


def test_answers_on_a_pooled_connection_reach_the_callback_once() -> None:
    async def scenario() -> None:
        server, port, connections = await _model_server(lambda n: "answer")
        upstream = Upstream(10, 2.0)
        try:
            url = f"http://127.0.0.1:{port}"
            bodies = []
            for _ in range(3):
                response, calls = await _send(upstream, url)
                assert (response.outcome, response.status, calls) == ("2xx", 200, 1)
                assert (b"content-type", b"text/plain") in response.headers
                bodies.append(response.body)
            assert bodies == [b"ok-1-1", b"ok-1-2", b"ok-1-3"]  # one connection, reused
            assert connections == [1]
            assert not upstream._deadlines
        finally:
            await upstream.close()
            server.close()

    asyncio.run(scenario())


def test_a_reused_connection_dropped_before_answering_is_retried_on_a_fresh_one() -> None:
    async def scenario() -> None:
        # Each connection answers its first request and drops the second unanswered (a server
        # closing an idle keep-alive connection as the request arrives).
        server, port, connections = await _model_server(lambda n: "answer" if n == 1 else "close")
        upstream = Upstream(10, 2.0)
        try:
            url = f"http://127.0.0.1:{port}"
            first, _ = await _send(upstream, url)
            assert first.body == b"ok-1-1"
            second, calls = await _send(upstream, url)
            assert (second.outcome, second.body, calls) == ("2xx", b"ok-2-1", 1)
            assert connections == [1, 2]
        finally:
            await upstream.close()
            server.close()

    asyncio.run(scenario())


def test_a_fresh_connection_dropped_before_answering_is_a_connection_error() -> None:
    async def scenario() -> None:
        server, port, _ = await _model_server(lambda n: "close")
        upstream = Upstream(10, 2.0)
        try:
            response, calls = await _send(upstream, f"http://127.0.0.1:{port}")
            assert (response.outcome, response.status, calls) == (CONNECTION_ERROR, 0, 1)
            assert response.unanswered
        finally:
            await upstream.close()
            server.close()

    asyncio.run(scenario())


def test_a_pooled_call_without_an_answer_times_out_within_a_tick() -> None:
    async def scenario() -> None:
        server, port, _ = await _model_server(lambda n: "answer" if n == 1 else "hold")
        upstream = Upstream(10, 0.3)
        try:
            url = f"http://127.0.0.1:{port}"
            await _send(upstream, url)
            started = time.perf_counter()
            response, calls = await _send(upstream, url)
            assert (response.outcome, calls) == (TIMEOUT, 1)
            assert 0.3 <= response.latency_s < 0.3 + DEADLINE_TICK_S + 0.2
            assert time.perf_counter() - started < 0.3 + DEADLINE_TICK_S + 0.4
            assert not upstream._deadlines
        finally:
            await upstream.close()
            server.close()

    asyncio.run(scenario())


def test_a_url_that_cannot_be_called_is_answered_at_once() -> None:
    async def scenario() -> None:
        upstream = Upstream(10, 1.0)
        answers: list[UpstreamResponse] = []
        upstream.send("GET", "ftp://example", "/", [], b"", answers.append)
        assert [a.outcome for a in answers] == [CONNECTION_ERROR]
        await upstream.close()

    asyncio.run(scenario())
