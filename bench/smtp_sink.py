"""An SMTP server that only counts, in a process of its own, for the messages benchmark.

    with SinkProcess() as sink:
        ... send to sink.host:sink.port ...
        sink.count()      # messages accepted since the start or the last reset()
        sink.arrivals()   # {delivery id: time.time() when the message was accepted}

It runs as `python -m bench.smtp_sink PORT`, so its work does not take the GIL from the
process being measured, and speaks just the SMTP that smtplib's sendmail needs (EHLO, MAIL,
RCPT, DATA, RSET, NOOP, QUIT) on an asyncio protocol: aiosmtpd, which the tests use, tops
out near 2,000 messages a second here and would be what a benchmark measures. Bodies are
not kept: each message leaves a count and the moment it arrived, keyed by the delivery id
of its Message-ID (regulars writes `<delivery id@domain>`).
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
import threading
import time
from types import TracebackType
from typing import Any

HOST = "127.0.0.1"
_MESSAGE_ID = re.compile(rb"\r\nMessage-ID: <([^@>]+)@", re.IGNORECASE)
_END_OF_DATA = b"\r\n.\r\n"


class Counter:
    def __init__(self) -> None:
        self.count = 0
        self.arrivals: dict[str, float] = {}

    def accept(self, data: bytes) -> None:
        at = time.time()
        self.count += 1
        found = _MESSAGE_ID.search(data, 0, 4096)
        if found is not None:
            self.arrivals[found.group(1).decode()] = at


class SMTPSession(asyncio.Protocol):
    """One client connection: commands line by line, DATA up to the lone dot."""

    def __init__(self, counter: Counter) -> None:
        self.counter = counter
        self.buffer = b""
        self.in_data = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(b"220 sink ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.transport is not None:
            if self.in_data:
                end = self.buffer.find(_END_OF_DATA)
                if end < 0:
                    return
                self.counter.accept(self.buffer[:end])
                self.buffer, self.in_data = self.buffer[end + len(_END_OF_DATA) :], False
                self.transport.write(b"250 OK queued\r\n")
                continue
            line, found, rest = self.buffer.partition(b"\r\n")
            if not found:
                return
            self.buffer = rest
            self.transport.write(self._reply(line[:4].upper()))

    def _reply(self, verb: bytes) -> bytes:
        if verb == b"EHLO":
            return b"250-sink\r\n250-8BITMIME\r\n250 SIZE 33554432\r\n"
        if verb == b"DATA":
            self.in_data = True
            return b"354 End data with <CR><LF>.<CR><LF>\r\n"
        if verb == b"QUIT":
            assert self.transport is not None
            self.transport.write(b"221 Bye\r\n")
            self.transport.close()
            self.transport = None
            return b""
        if verb in (b"HELO", b"MAIL", b"RCPT", b"RSET", b"NOOP"):
            return b"250 OK\r\n"
        return b"502 Command not implemented\r\n"


def serve(port: int) -> None:
    """The sink process: serve on a thread, and answer one command a line on stdin (count,
    arrivals, reset) with one JSON line on stdout, until stdin closes."""
    counter = Counter()
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(
        loop.create_server(lambda: SMTPSession(counter), HOST, port, reuse_address=True)
    )
    threading.Thread(target=loop.run_forever, daemon=True).start()
    print('"ready"', flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "reset":
            counter.count, counter.arrivals = 0, {}
        answer = dict(counter.arrivals) if command == "arrivals" else counter.count
        print(json.dumps(answer), flush=True)
    loop.call_soon_threadsafe(server.close)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


class SinkProcess:
    def __init__(self) -> None:
        self.host = HOST
        self.port = free_port()
        self._process: subprocess.Popen[str] | None = None

    def start(self) -> SinkProcess:
        command = [sys.executable, "-m", "bench.smtp_sink", str(self.port)]
        self._process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        if self._answer() != "ready":
            raise RuntimeError("the SMTP sink did not start")
        return self

    def _answer(self) -> Any:
        assert self._process is not None and self._process.stdout is not None
        return json.loads(self._process.stdout.readline() or "null")

    def _ask(self, command: str) -> Any:
        assert self._process is not None and self._process.stdin is not None
        self._process.stdin.write(f"{command}\n")
        self._process.stdin.flush()
        return self._answer()

    def count(self) -> int:
        return int(self._ask("count"))

    def arrivals(self) -> dict[str, float]:
        arrivals: dict[str, float] = self._ask("arrivals")
        return arrivals

    def reset(self) -> None:
        self._ask("reset")

    def stop(self) -> None:
        if self._process is not None:
            assert self._process.stdin is not None
            self._process.stdin.close()
            self._process.wait(timeout=30)
            self._process = None

    def __enter__(self) -> SinkProcess:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


if __name__ == "__main__":
    serve(int(sys.argv[1]))
