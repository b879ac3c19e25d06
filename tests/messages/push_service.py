"""A web push service stand-in for tests: a loopback HTTP server that keeps every request and
answers the status named in the endpoint's path (`/wpush/410/<token>` answers 410), and the
browser side of a subscription, which decrypts what it receives (RFC 8291, http_ece)."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import http_ece
from cryptography.hazmat.primitives.asymmetric import ec


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    client_port: int


@dataclass
class PushService:
    port: int
    received: list[Received] = field(default_factory=list)

    def endpoint(self, status: int, token: str = "sub") -> str:
        return f"http://127.0.0.1:{self.port}/wpush/{status}/{token}"


def _handler(service: PushService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, so connection reuse is visible

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {name.lower(): value for name, value in self.headers.items()}
            service.received.append(Received(self.path, headers, body, self.client_address[1]))
            status = int(self.path.split("/")[2])
            reason = b"" if status < 300 else b"subscription says no"
            self.send_response(status)
            if status == 201:
                self.send_header("Location", f"https://push.example/m{self.path}")
            self.send_header("Content-Length", str(len(reason)))
            self.end_headers()
            self.wfile.write(reason)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def running_push_service() -> Iterator[PushService]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    service = PushService(port=server.server_address[1])
    server.RequestHandlerClass = _handler(service)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01})
    thread.start()
    try:
        yield service
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@dataclass
class BrowserKeys:
    """The key pair and auth secret a browser keeps for one subscription."""

    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    auth: bytes = field(default_factory=lambda: os.urandom(16))

    def read(self, body: bytes) -> Any:
        plain = http_ece.decrypt(
            body, private_key=self.key, auth_secret=self.auth, version="aes128gcm"
        )
        return json.loads(plain)
