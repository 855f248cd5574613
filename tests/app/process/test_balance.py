"""app.process.balance: server processes accept on one socket by load. Here two listeners stand for two
processes, in one event loop, each on its own descriptor of the socket: both are woken by every
connection, in the same order each time, so without the load rule one would take them all."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from app.process.balance import BalancedListener, CountingSet, LoadBoard


class Held(asyncio.Protocol):
    """A server-side connection that stays open until the client closes it."""

    def __init__(self, connections: CountingSet) -> None:
        self.connections = connections

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)


@pytest.fixture
def board() -> Iterator[LoadBoard]:
    board = LoadBoard.create(4)
    for slot in range(2):
        board.use(slot)
    yield board
    board.unlink()


@pytest.fixture
def listening() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    yield sock
    sock.close()


def start_listener(sock: socket.socket, board: LoadBoard, slot: int, **options: float) -> tuple[BalancedListener, CountingSet]:
    """A listener on its own descriptor of ``sock``, as each process has (one event loop watches
    one descriptor with one callback)."""
    sock = sock.dup()
    holder: list[BalancedListener] = []
    connections = CountingSet(lambda: holder[0].connection_closed())
    listener = BalancedListener(sock, lambda: Held(connections), board, slot, lambda: len(connections), **options)  # type: ignore[arg-type]
    holder.append(listener)
    listener.start()
    return listener, connections


def stop(listener: BalancedListener) -> None:
    listener.close()
    listener.sockets[0].close()  # this test's duplicate (a server's socket is uvicorn's to close)


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.001)


@pytest.fixture
async def clients() -> AsyncIterator[list[asyncio.StreamWriter]]:
    writers: list[asyncio.StreamWriter] = []
    yield writers
    for writer in writers:
        writer.close()


async def connect(sock: socket.socket, writers: list[asyncio.StreamWriter]) -> None:
    _, writer = await asyncio.open_connection(*sock.getsockname())
    writers.append(writer)


def test_the_board_reports_the_least_busy_live_sibling() -> None:
    board = LoadBoard.create(4)
    assert board.least_other(0, stale_s=1.0) is None  # nobody else yet
    board.publish(1, 7)
    assert board.least_other(0, stale_s=1.0) is None  # a slot not yet in use is not read
    board.use(2)  # slots 0…2 are read now
    with pytest.raises(ValueError, match="slot 4"):
        board.use(4)
    board.publish(1, 7)
    board.publish(2, 3)
    board.publish(0, 0)  # one's own slot never counts
    assert board.least_other(0, stale_s=1.0) == 3
    assert board.least_other(2, stale_s=1.0) == 0
    board.clear(2)
    assert board.least_other(0, stale_s=1.0) == 7
    reopened = LoadBoard(board.path, board.slots)  # another process's view of the same file
    assert reopened.least_other(0, stale_s=1.0) == 7
    reopened.close()
    board.unlink()


@pytest.fixture
async def pair(board: LoadBoard, listening: socket.socket) -> AsyncIterator[tuple[CountingSet, CountingSet, BalancedListener]]:
    """Two listeners on slots 0 and 1: (first's connections, second's connections, first)."""
    first, first_held = start_listener(listening, board, 0)
    second, second_held = start_listener(listening, board, 1)
    yield first_held, second_held, first
    stop(first)
    stop(second)


async def connect_in_turn(sock: socket.socket, writers: list[asyncio.StreamWriter], count: int, *helds: CountingSet) -> AsyncIterator[int]:
    """Open ``count`` connections one after another, each accepted before the next; yields how many so far."""
    start = sum(len(held) for held in helds)
    for k in range(1, count + 1):
        await connect(sock, writers)
        await until(lambda k=k: sum(len(held) for held in helds) == start + k)  # type: ignore[misc]
        yield k


async def test_connections_are_spread_one_at_a_time(
    pair: tuple[CountingSet, CountingSet, BalancedListener], listening: socket.socket, clients: list[asyncio.StreamWriter]
) -> None:
    first_held, second_held, _ = pair
    async for k in connect_in_turn(listening, clients, 40, first_held, second_held):
        assert abs(len(first_held) - len(second_held)) <= 2, (k, len(first_held), len(second_held))  # slack 1, plus the one in hand
    assert min(len(first_held), len(second_held)) >= 19


async def test_a_process_whose_connections_close_takes_the_next_ones(
    pair: tuple[CountingSet, CountingSet, BalancedListener], listening: socket.socket, clients: list[asyncio.StreamWriter]
) -> None:
    first_held, second_held, _ = pair
    async for _ in connect_in_turn(listening, clients, 20, first_held, second_held):
        pass
    busy = len(second_held)
    for writer in clients:  # close every connection; the first listener's leave it at 0
        writer.close()
    clients.clear()
    await until(lambda: len(first_held) + len(second_held) == 0)
    for _ in range(busy):  # the second listener holds nothing either now: it takes its share again
        await connect(listening, clients)
    await until(lambda: len(first_held) + len(second_held) == busy)
    assert abs(len(first_held) - len(second_held)) <= 2


async def test_a_busy_process_waits_for_a_live_sibling_but_not_for_a_silent_one(
    board: LoadBoard, listening: socket.socket, clients: list[asyncio.StreamWriter]
) -> None:
    stale_s = 0.3
    board.publish(1, 0)  # a sibling that says it holds nothing, then never speaks again (it died)
    alone, held = start_listener(listening, board, 0, stale_s=stale_s)
    try:
        started = asyncio.get_running_loop().time()
        for _ in range(6):
            await connect(listening, clients)  # the kernel completes the handshake; accepting is the listener's
        await until(lambda: len(held) == 2)  # 0 ≤ 0 + 1 and 1 ≤ 0 + 1: two, then it leaves the rest to the sibling
        await asyncio.sleep(stale_s / 3)
        assert len(held) == 2
        await until(lambda: len(held) == 6)  # once the sibling's slot is stale, it takes them all
        assert asyncio.get_running_loop().time() - started >= stale_s * 0.9
    finally:
        stop(alone)


async def test_a_closed_listener_accepts_nothing_and_leaves_the_board(
    pair: tuple[CountingSet, CountingSet, BalancedListener], board: LoadBoard, listening: socket.socket, clients: list[asyncio.StreamWriter]
) -> None:
    first_held, second_held, first = pair
    first.close()
    assert board.least_other(1, stale_s=10.0) is None  # the second no longer waits for the first
    for _ in range(8):
        await connect(listening, clients)
    await until(lambda: len(second_held) == 8)
    assert len(first_held) == 0


async def test_a_paused_listener_keeps_one_timer_however_many_connections_close(
    board: LoadBoard, listening: socket.socket, clients: list[asyncio.StreamWriter]
) -> None:
    """Paused and still too busy after each of many closes: it looks again once per ``recheck_s``,
    not once per close per ``recheck_s`` (timers must not pile up)."""
    recheck_s = 0.005
    listener, held = start_listener(listening, board, 0, recheck_s=recheck_s)
    for _ in range(14):
        await connect(listening, clients)
    await until(lambda: len(held) == 14)  # no live sibling yet: it takes them all
    looks = 0
    least_other = board.least_other

    def counted(slot: int, stale_s: float) -> int | None:
        nonlocal looks
        looks += 1
        return least_other(slot, stale_s)

    board.least_other = counted  # type: ignore[method-assign]
    sibling_alive = True

    async def sibling() -> None:  # a live sibling holding nothing
        while sibling_alive:
            board.publish(1, 0)
            await asyncio.sleep(0.01)

    beating = asyncio.ensure_future(sibling())
    try:
        await asyncio.sleep(0.05)
        await connect(listening, clients)  # a 15th: the listener looks, finds itself too busy and pauses
        await asyncio.sleep(0.05)
        assert len(held) == 14
        for writer in clients[:10]:  # 14 → 4 connections: still more than 0 + 1 after every close
            writer.close()
        await until(lambda: len(held) == 4)
        looks = 0
        window = 0.2
        await asyncio.sleep(window)
        assert looks <= window / recheck_s + 5, looks  # one timer: at most one look per recheck_s
        assert looks >= 1
        assert len(held) == 4  # the 15th still waits for the sibling
    finally:
        sibling_alive = False
        await beating
        stop(listener)
