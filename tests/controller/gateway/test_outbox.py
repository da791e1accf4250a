"""The outbox holds a connection's writes and closes until the loop has run its current
callbacks, then makes them in order; over real sockets, a connection's bytes and its close keep
their order."""

from __future__ import annotations

import asyncio

import pytest

from controller.gateway.outbox import Outbox


class RecordingTransport:
    """What the outbox calls on a transport, in order (``fail`` makes ``write`` raise)."""

    def __init__(self, log: list[tuple[str, str, bytes | None]], name: str) -> None:
        self.log = log
        self.name = name
        self.closing = False
        self.fail = False

    def is_closing(self) -> bool:
        return self.closing

    def write(self, data: bytes) -> None:
        if self.fail:
            raise RuntimeError("broken transport")
        self.log.append((self.name, "write", data))

    def close(self) -> None:
        self.closing = True
        self.log.append((self.name, "close", None))

    def abort(self) -> None:
        self.closing = True
        self.log.append((self.name, "abort", None))


def test_writes_wait_for_the_iteration_then_go_in_order_together() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        outbox = Outbox(loop)
        log: list[tuple[str, str, bytes | None]] = []
        a, b = RecordingTransport(log, "a"), RecordingTransport(log, "b")
        seen: dict[str, int] = {}
        loop.call_soon(lambda: seen.setdefault("before", len(log)))
        outbox.write(a, b"1")  # type: ignore[arg-type]
        outbox.write(b, b"2")  # type: ignore[arg-type]
        loop.call_soon(lambda: seen.setdefault("between", len(log)))
        outbox.write(a, b"3")  # type: ignore[arg-type]
        outbox.close(a)  # type: ignore[arg-type]
        assert log == [] and len(outbox) == 4  # nothing written before the loop runs on
        await asyncio.sleep(0)
        # One flush, queued with the first write, makes every write held by then, later ones
        # included: a callback queued before it sees none, one queued after it sees all.
        assert seen == {"before": 0, "between": 4}
        assert log == [("a", "write", b"1"), ("b", "write", b"2"), ("a", "write", b"3"),
                       ("a", "close", None)]  # fmt: skip
        assert len(outbox) == 0
        outbox.write(b, b"4")  # type: ignore[arg-type]  # a later iteration flushes again
        await asyncio.sleep(0)
        assert log[-1] == ("b", "write", b"4")

    asyncio.run(scenario())


def test_a_closing_transport_gets_nothing_and_a_broken_one_costs_the_others_nothing() -> None:
    async def scenario() -> None:
        outbox = Outbox(asyncio.get_running_loop())
        log: list[tuple[str, str, bytes | None]] = []
        gone, broken, fine = (RecordingTransport(log, name) for name in ("gone", "broken", "ok"))
        outbox.write(gone, b"lost")  # type: ignore[arg-type]
        outbox.write(broken, b"x")  # type: ignore[arg-type]
        outbox.write(fine, b"kept")  # type: ignore[arg-type]
        outbox.write(gone, b"after the close")  # type: ignore[arg-type]
        gone.closing = True  # the peer left before the flush
        broken.fail = True
        await asyncio.sleep(0)
        assert log == [("broken", "abort", None), ("ok", "write", b"kept")]

    asyncio.run(scenario())


@pytest.mark.timeout(30)
def test_over_sockets_bytes_arrive_in_order_and_the_close_after_them() -> None:
    async def scenario() -> None:
        received: list[bytes] = []
        done = asyncio.Event()

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            received.append(await reader.read())  # until the peer's close
            done.set()
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
        outbox = Outbox(loop)
        for chunk in (b"one ", b"two ", b"three"):
            outbox.write(transport, chunk)
        outbox.close(transport)
        outbox.write(transport, b" never")  # after the close: dropped
        await asyncio.wait_for(done.wait(), 10)
        assert received == [b"one two three"]
        server.close()
        await server.wait_closed()

    asyncio.run(scenario())
