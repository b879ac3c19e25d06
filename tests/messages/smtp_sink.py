"""A real SMTP server for tests and benchmarks: aiosmtpd on 127.0.0.1, in a thread.

    with SMTPSink(auth=("shop", "secret"), tls="starttls") as sink:
        ... send to sink.host:sink.port ...
        sink.received[0].message()["Subject"]

`rcpt_replies` and `data_replies` map a recipient to the reply it gets at RCPT or at DATA
("550 5.1.1 No such user", "451 4.3.0 Try again later"); everyone else is accepted.
`keep=False` only counts messages (`count`), for benchmarks. `connections` counts the TCP
connections that reached RCPT, so a client that reuses one connection shows 1.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HOST = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class Received:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    tls: bool  # the session was encrypted (STARTTLS or implicit TLS)
    login: str | None  # who authenticated, if anyone

    def message(self) -> EmailMessage:
        """The message parsed by the stdlib, with line ends as a mailbox on disk has them
        (the parser keeps CRLF inside decoded bodies otherwise)."""
        parsed = BytesParser(policy=policy.default).parsebytes(self.data.replace(b"\r\n", b"\n"))
        assert isinstance(parsed, EmailMessage)
        return parsed


class SMTPSink:
    def __init__(
        self,
        *,
        auth: tuple[str, str] | None = None,
        tls: Literal["starttls", "implicit"] | None = None,
        keep: bool = True,
        rcpt_replies: Mapping[str, str] | None = None,
        data_replies: Mapping[str, str] | None = None,
    ) -> None:
        self.auth = auth
        self.tls = tls
        self.keep = keep
        self.rcpt_replies = dict(rcpt_replies or {})
        self.data_replies = dict(data_replies or {})
        self.host = HOST
        self.port = free_port()
        self.received: list[Received] = []
        self.count = 0
        self._peers: set[Any] = set()
        self._tls_context = _self_signed_context() if tls else None
        self._controller: Controller | None = None

    @property
    def connections(self) -> int:
        return len(self._peers)

    def start(self) -> SMTPSink:
        kwargs: dict[str, Any] = {"auth_require_tls": self.tls == "starttls"}
        if self.auth is not None:
            kwargs.update(authenticator=self._authenticate, auth_required=True)
        if self.tls == "starttls":
            kwargs.update(tls_context=self._tls_context, require_starttls=True)
        elif self.tls == "implicit":
            kwargs.update(ssl_context=self._tls_context)
        self._controller = Controller(_Handler(self), hostname=self.host, port=self.port, **kwargs)
        self._controller.start()  # returns once the server answers
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def restart(self) -> None:
        """Stop and start on the same port: every open client connection is dropped."""
        self.stop()
        self.start()

    def __enter__(self) -> SMTPSink:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword) or self.auth is None:
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode()
        ok = (login, auth_data.password.decode()) == self.auth
        return AuthResult(success=ok, handled=False, auth_data=login if ok else None)

    def _record(self, server: Any, session: Any, envelope: Any) -> None:
        self.count += 1
        if self.keep:
            login = session.auth_data if session.authenticated else None
            self.received.append(
                Received(
                    mail_from=envelope.mail_from,
                    rcpt_tos=tuple(envelope.rcpt_tos),
                    data=envelope.original_content,
                    tls=server.transport.get_extra_info("ssl_object") is not None,
                    login=login,
                )
            )


class _Handler:
    """aiosmtpd calls these coroutines on its event loop thread."""

    def __init__(self, sink: SMTPSink) -> None:
        self.sink = sink

    async def handle_RCPT(  # noqa: N802 (aiosmtpd's hook names)
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        self.sink._peers.add(session.peer)
        reply = self.sink.rcpt_replies.get(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        for address in envelope.rcpt_tos:
            reply = self.sink.data_replies.get(address)
            if reply is not None:
                return reply
        self.sink._record(server, session, envelope)
        return "250 OK"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def _self_signed_context() -> ssl.SSLContext:
    """A server context with a fresh self-signed certificate for 127.0.0.1 and localhost."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    alt_names = x509.SubjectAlternativeName(
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(alt_names, critical=False)
        .sign(key, hashes.SHA256())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as folder:
        cert_path, key_path = Path(folder, "cert.pem"), Path(folder, "key.pem")
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        context.load_cert_chain(cert_path, key_path)
    return context
