"""The supervisor of several server processes: uvicorn's, with SIGHUP meaning "reload models"
and one listening socket per process.

uvicorn's supervisor answers SIGHUP with a rolling restart: each process is replaced by a
fresh one that loads everything again. A fresh process cannot keep an old version serving
when the new one fails verification (it never had the old one), and it warms every model
up again; so here SIGHUP is forwarded to every server process instead, and each reloads its
models in place (``app.serving.reload``) without stopping. A process that is still starting gets
the signal once it is ready (it may have read the folders before they changed); SIGINT,
SIGTERM, SIGTTIN and SIGTTOU keep uvicorn's meaning.

Every process accepts on the one listening socket the supervisor binds, but only while it
holds no more connections than its least busy sibling (plus one): ``app.process.balance``. uvicorn lets
the processes race to accept, and asyncio accepts every pending connection at once, so the
process whose event loop woke first took a burst nearly whole (64 concurrent connections split
49/15, 52/12, 48/16 between two processes, measured); SO_REUSEPORT sockets, which the kernel
fills by hashing each connection's addresses, split evenly only on average, and under load the
busier process kept more clients waiting (benchmarks/RESULTS.md, the serving engine). The supervisor binds the socket (so a
port in use fails at start, and port 0 picks one port for all), hands it to each process, and
keeps the shared ``LoadBoard`` on which the processes publish their load.
"""

from __future__ import annotations

import logging
import os
import signal
import socket

import uvicorn
from uvicorn.config import STARTUP_FAILURE, Config
from uvicorn.supervisors.multiprocess import Multiprocess, Process

from app.process.balance import BalancedServer, LoadBoard

logger = logging.getLogger("uvicorn.error")

SLOTS = 256
"""Slots on the load board: the most server processes one supervisor runs (SIGTTIN adds one)."""


class BalancedProcess(Process):
    """uvicorn's server process, serving through ``app.process.balance.BalancedServer`` on board slot ``slot``."""

    def __init__(self, config: Config, sockets: list[socket.socket], board: LoadBoard, slot: int) -> None:
        self.board_path, self.slots, self.slot = board.path, board.slots, slot
        super().__init__(config, sockets)  # pickles self (with the three above) for the spawned process

    @property
    def server(self) -> uvicorn.Server:
        if self._server is None:
            self._server = BalancedServer(self.config, self.board_path, self.slots, self.slot)
        return self._server


class Supervisor(Multiprocess):
    def __init__(self, config: Config) -> None:
        sock = config.bind_socket()  # uvicorn's: bound and inheritable (a port in use exits 3); each process listens
        self.board = LoadBoard.create(SLOTS)
        super().__init__(config, sockets=[sock])

    def _new_process(self, slot: int) -> Process:
        """A started server process on the shared socket, publishing its load in ``slot``."""
        self.board.use(slot)  # empty: a dead predecessor's last word is not this process's
        process = BalancedProcess(self.config, self.sockets, self.board, slot)
        process.start()
        return process

    def run(self) -> None:
        try:
            super().run()
        finally:
            self.board.unlink()

    def init_processes(self) -> None:
        self._reload_pending: list[Process] = []
        for slot in range(self.processes_num):
            self.processes.append(self._new_process(slot))

    def restart_all(self) -> None:
        """uvicorn's rolling restart, each replacement in its predecessor's board slot (SIGHUP
        reloads models instead: ``handle_hup``)."""
        for index, old in enumerate(self.processes):
            if self.should_exit.is_set():
                return
            new = self._new_process(index)
            if not new.wait_until_ready(self.config.timeout_worker_healthcheck, self.should_exit):
                new.kill()
                new.join()
                return
            old.terminate()
            old.join()
            self.processes[index] = new

    def handle_ttin(self) -> None:
        if len(self.processes) >= SLOTS:
            logger.warning("Received SIGTTIN, but %d server processes are the most one supervisor runs.", SLOTS)
            return
        logger.info("Received SIGTTIN, increasing the number of processes.")
        self.processes_num += 1
        self.processes.append(self._new_process(len(self.processes)))

    def handle_hup(self) -> None:
        logger.info("Received SIGHUP, asking every server process to reload its models.")
        self._reload_pending = list(self.processes)
        self._forward_reloads()

    def keep_subprocess_alive(self) -> None:
        """uvicorn's: replace a process that died or hangs (in its slot, on the shared socket),
        stop everything if one failed before it ever served; then forward reloads."""
        if self.should_exit.is_set():
            return
        for index, process in enumerate(self.processes):
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            process.kill()  # hung: kill it
            process.join()
            if process.exitcode == STARTUP_FAILURE:
                logger.error(f"Child process [{process.pid}] failed to start, stopping the parent process.")
                self.should_exit.set()
                return
            if self.should_exit.is_set():
                return
            logger.info(f"Child process [{process.pid}] died")
            try:
                self.processes[index] = self._new_process(index)
            except OSError as exc:  # the process could not be started (e.g. out of descriptors): stop
                logger.error(f"Cannot start a replacement process: {exc}; stopping.")
                self.should_exit.set()
                return
        self._forward_reloads()

    def _forward_reloads(self) -> None:
        waiting: list[Process] = []
        for process in self._reload_pending:
            if process not in self.processes or process.pid is None or process.exitcode is not None:
                continue  # replaced or gone: its successor loads the folders as they are now
            if not process.is_ready(timeout=1):
                waiting.append(process)
                continue
            try:
                os.kill(process.pid, signal.SIGHUP)
            except ProcessLookupError:
                continue
            logger.info(f"Asked server process [{process.pid}] to reload its models")
        self._reload_pending = waiting

    @property
    def startup_failed(self) -> bool:
        """A server process failed before serving (the supervisor then stops them all)."""
        return any(process.exitcode == STARTUP_FAILURE for process in self.processes)
