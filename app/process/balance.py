"""New connections go to the least busy server process: one shared listening socket, accepted by load.

With several server processes (``app.process.supervisor``) a connection's process decides how long its
request waits: each process has its own engine, and a process holding more requests runs longer
ticks. Letting the kernel pick (SO_REUSEPORT hashes each connection's addresses) spreads
connections evenly only on average; under a closed loop the busier process keeps more clients
waiting, and that imbalance is what set the tail. Measured (benchmarks/RESULTS.md, the serving engine): 48
mixed closed-loop clients split evenly by the client over two one-process servers got p99 307
and 330 ms; the same clients on one two-process server with SO_REUSEPORT got 479 and 486 ms.

So every process listens on the same socket, publishes how many connections it holds (open
or being set up) on a ``LoadBoard`` (a small file of int64 pairs, shared memory between the
processes), and accepts only while it holds at most ``slack`` more than the least busy of its
siblings. A process over that stops watching the socket, and looks again when one of its own
connections closes or after ``recheck_s``. Each process also refreshes its slot every
``stale_s / 4``; a slot older than ``stale_s`` (a process that died, or whose event loop is
stuck) is left out, so a dead sibling holds the others back for at most ``stale_s``.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import mmap
import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE, Config

log = logging.getLogger("swirl.balance")

FIELDS = 2  # per slot: connections held, and when that was published (monotonic ms); -1: no process
ITEM = 8
HEADER = 1  # the number of slots in use (the supervisor's), so a look at the board reads only those


class LoadBoard:
    """One slot per server process in a shared file: the connections it holds and when it said so."""

    def __init__(self, path: str, slots: int) -> None:
        self.path = path
        self.slots = slots
        with open(path, "r+b") as file:
            self._map = mmap.mmap(file.fileno(), (HEADER + slots * FIELDS) * ITEM)
        self._values = memoryview(self._map).cast("q")  # aligned 8-byte stores: a reader never sees half a value

    @classmethod
    def create(cls, slots: int) -> LoadBoard:
        """A new board with every slot empty (the supervisor's; each process opens it by path)."""
        handle, path = tempfile.mkstemp(prefix="swirl-load-")
        with os.fdopen(handle, "wb") as file:
            file.write((0).to_bytes(ITEM, sys.byteorder) + (-1).to_bytes(ITEM, sys.byteorder, signed=True) * (slots * FIELDS))
        return cls(path, slots)

    def use(self, slot: int) -> None:
        """Make ``slot`` one that is read (the supervisor, before its process starts), and empty it."""
        if not 0 <= slot < self.slots:
            raise ValueError(f"slot {slot} is not on a board of {self.slots}")
        self.clear(slot)
        self._values[0] = max(self._values[0], slot + 1)

    def publish(self, slot: int, connections: int) -> None:
        at = HEADER + slot * FIELDS
        self._values[at] = connections
        self._values[at + 1] = int(time.monotonic() * 1000)

    def clear(self, slot: int) -> None:
        at = HEADER + slot * FIELDS
        self._values[at] = -1
        self._values[at + 1] = -1

    def least_other(self, slot: int, stale_s: float) -> int | None:
        """The fewest connections any live sibling of ``slot`` holds; None when there is none."""
        oldest = int((time.monotonic() - stale_s) * 1000)
        values = self._values
        least: int | None = None
        for other in range(min(values[0], self.slots)):
            if other == slot:
                continue
            at = HEADER + other * FIELDS
            held = values[at]
            if held >= 0 and values[at + 1] >= oldest and (least is None or held < least):
                least = held
        return least

    def close(self) -> None:
        self._values.release()
        self._map.close()

    def unlink(self) -> None:
        self.close()
        os.unlink(self.path)


class CountingSet(set[Any]):
    """uvicorn's set of open connections, calling ``on_discard`` whenever one leaves it."""

    def __init__(self, on_discard: Callable[[], None]) -> None:
        super().__init__()
        self._on_discard = on_discard

    def discard(self, item: Any) -> None:
        if item in self:
            super().discard(item)
            self._on_discard()

    def remove(self, item: Any) -> None:
        super().remove(item)
        self._on_discard()


class BalancedListener:
    """Accepts on ``sock`` while this process is no busier than its siblings allow; the ``close``
    and ``wait_closed`` of an asyncio server, for uvicorn's shutdown."""

    def __init__(
        self,
        sock: socket.socket,
        protocol_factory: Callable[[], asyncio.Protocol],
        board: LoadBoard,
        slot: int,
        held: Callable[[], int],
        *,
        slack: int = 1,
        recheck_s: float = 0.001,
        stale_s: float = 0.2,
    ) -> None:
        self._sock = sock
        self._factory = protocol_factory
        self._board = board
        self._slot = slot
        self._held = held  # open connections (uvicorn's set)
        self._slack = slack
        self._recheck_s = recheck_s
        self._stale_s = stale_s
        self._connecting = 0  # accepted, transport not yet made
        self._watching = False
        self._closed = False
        self._timer: asyncio.TimerHandle | None = None  # the next look while paused
        self._heartbeat: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def sockets(self) -> list[socket.socket]:
        return [self._sock]

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._sock.setblocking(False)
        self._check()
        self._beat()

    def _beat(self) -> None:
        """Publish now and then even when nothing happens: a slot left unrefreshed means a dead process."""
        assert self._loop is not None
        if self._closed:
            return
        self._board.publish(self._slot, self.load())
        self._heartbeat = self._loop.call_later(self._stale_s / 4, self._beat)

    def load(self) -> int:
        return self._held() + self._connecting

    def may_accept(self) -> bool:
        """Publish this process's load; True when it is within ``slack`` of the least busy sibling."""
        mine = self.load()
        self._board.publish(self._slot, mine)
        least = self._board.least_other(self._slot, self._stale_s)
        return least is None or mine <= least + self._slack

    def connection_closed(self) -> None:
        if not self._closed and not self._watching:
            self._check()
        elif not self._closed:
            self._board.publish(self._slot, self.load())

    def _check(self) -> None:
        """Watch the socket if this process may accept, else look again in ``recheck_s``."""
        if self._closed:
            return
        assert self._loop is not None
        if self.may_accept():
            if not self._watching:
                self._loop.add_reader(self._sock.fileno(), self._accept)
                self._watching = True
        else:
            self._pause(self._recheck_s)

    def _on_timer(self) -> None:
        self._timer = None
        self._check()

    def _pause(self, delay: float) -> None:
        """Stop watching the socket; one timer at most looks again (closes may call this many times)."""
        assert self._loop is not None
        if self._watching:
            self._loop.remove_reader(self._sock.fileno())
            self._watching = False
        if self._timer is None:
            self._timer = self._loop.call_later(delay, self._on_timer)

    def _accept(self) -> None:
        """One connection per wake-up: a sibling woken by the same connection gets the next one."""
        assert self._loop is not None
        if not self.may_accept():
            self._pause(self._recheck_s)
            return
        try:
            conn, _ = self._sock.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return  # a sibling took it, or the client gave up
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                log.warning("cannot accept a connection (%s); trying again in 0.1 s", exc)
                self._pause(0.1)
                return
            raise
        self._connecting += 1
        self._board.publish(self._slot, self.load())
        self._loop.create_task(self._connect(conn))

    async def _connect(self, conn: socket.socket) -> None:
        assert self._loop is not None
        try:
            conn.setblocking(False)
            if conn.family in (socket.AF_INET, socket.AF_INET6):
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await self._loop.connect_accepted_socket(self._factory, conn)
        except Exception:
            log.exception("could not set up an accepted connection")
            conn.close()
        finally:
            self._connecting -= 1

    def close(self) -> None:
        """Stop accepting (the socket itself is uvicorn's to close); siblings stop counting this process."""
        if self._closed:
            return
        self._closed = True
        if self._watching and self._loop is not None:
            self._loop.remove_reader(self._sock.fileno())
            self._watching = False
        for timer in (self._timer, self._heartbeat):
            if timer is not None:
                timer.cancel()
        self._timer = self._heartbeat = None
        self._board.clear(self._slot)

    async def wait_closed(self) -> None:
        return None


class BalancedServer(uvicorn.Server):
    """uvicorn's server, accepting on its one shared socket through a ``BalancedListener``."""

    def __init__(self, config: Config, board_path: str, slots: int, slot: int) -> None:
        super().__init__(config)
        self._board_path = board_path
        self._slots = slots
        self._slot = slot

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        if not sockets or len(sockets) != 1:
            raise RuntimeError("a balanced server process takes exactly one listening socket")
        await self.lifespan.startup()
        if self.lifespan.should_exit:
            sys.exit(STARTUP_FAILURE)
        config = self.config
        loop = asyncio.get_running_loop()

        def protocol() -> asyncio.Protocol:
            return config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=self.server_state, app_state=self.lifespan.state, _loop=loop
            )

        sockets[0].listen(config.backlog)  # once ready: until then a connection is refused, not left waiting
        board = LoadBoard(self._board_path, self._slots)
        listener = BalancedListener(sockets[0], protocol, board, self._slot, lambda: len(self.server_state.connections))
        self.server_state.connections = CountingSet(listener.connection_closed)
        listener.start()
        self.servers = [listener]  # type: ignore[list-item]  # close() and wait_closed(), as uvicorn's shutdown uses
        self.started = True
