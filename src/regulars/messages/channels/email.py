"""Email over SMTP: a batch shared over a few connections, which stay open for the next one.

The MIME bytes are written here rather than by `email.message.EmailMessage`: the stdlib's
header registry made building and serialising a message cost about 1.1 ms, more than the
rest of the hot path put together, while this writer takes about 35 us. Headers that are not
plain ASCII still go through the stdlib's `policy.SMTP` folder (RFC 2047), bodies through
`binascii.b2a_qp`; tests parse the result back with the stdlib parser.

A message is multipart/alternative, text/plain then text/html, UTF-8; Message-ID is
`<delivery id@sender's domain>` and is the provider message id.
"""

from __future__ import annotations

import binascii
import contextlib
import functools
import re
import secrets
import smtplib
import socket
import ssl
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from email import policy
from email.utils import format_datetime, parseaddr
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from regulars.kit import clock
from regulars.messages.channels.base import (
    Accepted,
    Outcome,
    Outgoing,
    PermanentError,
    TransientError,
    TransportConfig,
)
from regulars.messages.models import MessageChannel


class SMTPConfig(TransportConfig):
    host: str = Field(min_length=1)
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    verify_tls: bool = True  # False accepts any certificate (self-signed test servers)
    username: str | None = None
    password: SecretStr | None = None
    from_address: str  # "news@shop.example" or "Shop <news@shop.example>"
    reply_to: str | None = None
    timeout: float = Field(default=10, gt=0)  # seconds, per network operation
    local_hostname: str | None = None  # the EHLO name; default: this machine's FQDN
    max_messages_per_connection: int = Field(default=500, ge=1)
    connections: int = Field(default=4, ge=1, le=32)  # sent over at once, for one batch

    @field_validator("from_address", "reply_to")
    @classmethod
    def _is_address(cls, value: str | None) -> str | None:
        if value is not None and "@" not in parseaddr(value)[1]:
            raise ValueError("expected an email address, optionally as 'Name <address>'")
        return value

    @model_validator(mode="after")
    def _login_complete(self) -> SMTPConfig:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        return self


@dataclass(frozen=True, slots=True)
class _Mail:
    sender: str  # envelope MAIL FROM
    recipient: str
    data: bytes
    message_id: str
    options: tuple[str, ...]  # MAIL FROM parameters: SMTPUTF8 for a non-ASCII address


_OWN_HEADERS = frozenset(
    name.casefold()
    for name in ("From", "To", "Subject", "Date", "Message-ID", "Reply-To", "MIME-Version")
)
_HEADER_NAME = re.compile(r"[!-9;-~]+")  # printable ASCII without the colon
_LONG_LINE = re.compile(rb"[^\n]{999}")  # RFC 5322: at most 998 characters a line


@functools.lru_cache(maxsize=4096)
def _fold(name: str, value: str) -> bytes:
    """A header as RFC 5322 wants it: encoded words for non-ASCII, folded at 78 columns."""
    return policy.SMTP.fold_binary(name, policy.SMTP.header_factory(name, value))


def _header(name: str, value: str) -> bytes:
    if not _HEADER_NAME.fullmatch(name):
        raise ValueError(f"invalid header name {name!r}")
    if "\r" in value or "\n" in value:
        raise ValueError(f"header {name} contains a line break")
    if value.isascii() and len(name) + len(value) < 997:
        return f"{name}: {value}\r\n".encode()
    return _fold(name, value)


def _text_part(subtype: bytes, text: str) -> bytes:
    raw = text.replace("\r\n", "\n").replace("\r", "\n").encode()
    if raw.isascii() and not _LONG_LINE.search(raw):
        encoding, body = b"7bit", raw
    else:
        encoding, body = b"quoted-printable", binascii.b2a_qp(raw, istext=True)
    return b'Content-Type: text/%s; charset="utf-8"\r\nContent-Transfer-Encoding: %s\r\n\r\n%s' % (
        subtype,
        encoding,
        body.replace(b"\n", b"\r\n"),
    )


class _Composer:
    """Writes one message's bytes; what is the same for every message is folded once."""

    def __init__(self, config: SMTPConfig) -> None:
        self.sender = parseaddr(config.from_address)[1]
        self.domain = self.sender.rpartition("@")[2]
        fixed = _fold("From", config.from_address)
        if config.reply_to is not None:
            fixed += _fold("Reply-To", config.reply_to)
        self.fixed = fixed + b"MIME-Version: 1.0\r\n"

    def compose(self, message: Outgoing) -> _Mail:
        content = message.content
        if "@" not in message.address or "\r" in message.address or "\n" in message.address:
            raise ValueError(f"{message.address!r} is not an email address")
        message_id = f"<{message.delivery_id}@{self.domain}>"
        boundary = b"=_" + secrets.token_hex(12).encode()  # "=_" never occurs in QP text
        headers = [
            self.fixed,
            f"To: {message.address}\r\n".encode(),
            _header("Subject", str(content["subject"])),
            f"Date: {format_datetime(clock.now())}\r\nMessage-ID: {message_id}\r\n".encode(),
            *(self._extra(name, value) for name, value in message.headers.items()),
            b'Content-Type: multipart/alternative; boundary="%s"\r\n\r\n' % boundary,
        ]
        parts = (
            _text_part(b"plain", str(content["text"])),
            _text_part(b"html", str(content["html"])),
        )
        body = b"".join(b"--%s\r\n%s\r\n" % (boundary, part) for part in parts)
        data = b"".join(headers) + body + b"--%s--\r\n" % boundary
        international = not (message.address.isascii() and self.sender.isascii())
        options = ("SMTPUTF8",) if international else ()
        return _Mail(self.sender, message.address, data, message_id, options)

    @staticmethod
    def _extra(name: str, value: str) -> bytes:
        if name.casefold() in _OWN_HEADERS or name.casefold().startswith("content-"):
            raise ValueError(f"header {name} is written by the transport")
        return _header(name, value)


class _Unreachable(Exception):
    """The server cannot be reached or used: this message and the rest of the batch wait."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class _Dropped(_Unreachable):
    """The server closed the connection (idle timeout, restart): worth one reconnect."""


@functools.cache
def _fqdn() -> str:
    return socket.getfqdn()


class SMTPTransport:
    """A batch goes out over up to `connections` SMTP connections at once, as mail servers'
    own clients do: one conversation spends most of its time waiting for the server's
    replies (four a message), and the lanes wait side by side. Each connection stays open
    for the next batch. Not thread-safe: one transport per worker thread."""

    kind: ClassVar[str] = "smtp"
    channels: ClassVar[frozenset[MessageChannel]] = frozenset({MessageChannel.EMAIL})
    Config: ClassVar[type[TransportConfig]] = SMTPConfig

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = SMTPConfig.model_validate(config)
        composer = _Composer(self.config)
        self._lanes = [_Lane(self.config, composer) for _ in range(self.config.connections)]
        self._pool: ThreadPoolExecutor | None = None

    def send_many(self, messages: Sequence[Outgoing]) -> list[Outcome]:
        """One outcome per message, in the order given. Message i goes on lane i % lanes, so
        every lane gets an even share and outcomes fold back by position."""
        lanes = min(len(self._lanes), len(messages))
        if lanes <= 1:
            return self._lanes[0].send_all(messages)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(len(self._lanes), thread_name_prefix="smtp")
        sending = [
            self._pool.submit(self._lanes[lane].send_all, messages[lane::lanes])
            for lane in range(lanes)
        ]
        wait(sending)  # every lane has finished before any error is raised here
        by_lane = [lane.result() for lane in sending]
        return [by_lane[n % lanes][n // lanes] for n in range(len(messages))]

    def close(self) -> None:
        for lane in self._lanes:
            lane.close()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


class _Lane:
    """One SMTP connection, opened on first use and reopened when the server drops it."""

    def __init__(self, config: SMTPConfig, composer: _Composer) -> None:
        self.config = config
        self._composer = composer
        self._smtp: smtplib.SMTP | None = None
        self._sent_on_connection = 0

    def send_all(self, messages: Sequence[Outgoing]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for message in messages:
            try:
                outcomes.append(self._send(message))
            except _Unreachable as exc:
                outcomes.extend(TransientError(exc.detail) for _ in messages[len(outcomes) :])
                break
        return outcomes

    def close(self) -> None:
        if self._smtp is not None:
            # Saying goodbye is a courtesy; the socket is closed below either way.
            with contextlib.suppress(smtplib.SMTPException, OSError):
                self._smtp.quit()
            self._discard()

    def _send(self, message: Outgoing) -> Outcome:
        try:
            mail = self._composer.compose(message)
        except (KeyError, ValueError) as exc:  # a missing field, a line break in a header
            return PermanentError(f"cannot build the email: {exc}")
        if self._smtp is not None:
            try:
                return self._transmit(self._smtp, mail)
            except _Dropped:
                pass  # an idle connection the server closed: reconnect once
        return self._transmit(self._open(), mail)

    def _transmit(self, smtp: smtplib.SMTP, mail: _Mail) -> Outcome:
        try:
            smtp.sendmail(mail.sender, [mail.recipient], mail.data, mail_options=mail.options)
            outcome: Outcome = Accepted(provider_message_id=mail.message_id)
        except smtplib.SMTPRecipientsRefused as exc:
            outcome = _refused(*exc.recipients[mail.recipient])
        except smtplib.SMTPDataError as exc:
            outcome = _rejected("message", exc.smtp_code, exc.smtp_error)
        except smtplib.SMTPSenderRefused as exc:  # about our From, not the recipient
            outcome = TransientError(f"sender {exc.sender} refused: {_reply(exc)}")
        except smtplib.SMTPNotSupportedError as exc:  # SMTPUTF8 not offered
            outcome = PermanentError(f"the server cannot take this address: {exc}")
        except UnicodeEncodeError as exc:  # ... and not even EHLO: halfway through MAIL
            self._discard()
            outcome = PermanentError(f"the server cannot take this address: {exc}")
        except (smtplib.SMTPServerDisconnected, ConnectionError) as exc:
            self._discard()
            raise _Dropped(f"SMTP connection lost: {exc}") from exc
        except OSError as exc:  # timeouts, TLS errors, replies smtplib cannot parse
            self._discard()
            raise _Unreachable(f"SMTP server not answering: {exc!r}") from exc
        self._sent_on_connection += 1
        if smtp.sock is None:  # the server said 421 and smtplib hung up
            self._discard()
        elif self._sent_on_connection >= self.config.max_messages_per_connection:
            self.close()
        return outcome

    def _open(self) -> smtplib.SMTP:
        config = self.config
        where = f"{config.host}:{config.port}"
        try:
            self._smtp = self._connect()
        except smtplib.SMTPAuthenticationError as exc:
            raise _Unreachable(
                f"SMTP authentication as {config.username!r} at {where} failed ({_reply(exc)}):"
                " check the provider's username and password"
            ) from exc
        except smtplib.SMTPNotSupportedError as exc:  # no STARTTLS, or no AUTH offered
            raise _Unreachable(f"SMTP server {where}: {exc}") from exc
        except OSError as exc:  # refused, timed out, TLS handshake, bad greeting
            raise _Unreachable(f"cannot connect to SMTP server {where}: {exc!r}") from exc
        self._sent_on_connection = 0
        return self._smtp

    def _connect(self) -> smtplib.SMTP:
        config = self.config
        helo = config.local_hostname or _fqdn()
        context = self._tls_context
        smtp: smtplib.SMTP
        if config.security == "tls":
            smtp = smtplib.SMTP_SSL(
                config.host, config.port, helo, timeout=config.timeout, context=context
            )
        else:
            smtp = smtplib.SMTP(config.host, config.port, helo, timeout=config.timeout)
        try:
            if config.security == "starttls":
                smtp.starttls(context=context)
            if config.username is not None and config.password is not None:
                smtp.login(config.username, config.password.get_secret_value())
        except OSError:  # smtplib's errors are OSErrors too; close before reporting
            smtp.close()
            raise
        return smtp

    @functools.cached_property
    def _tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if not self.config.verify_tls:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _discard(self) -> None:
        if self._smtp is not None:
            self._smtp.close()
            self._smtp = None


def _text(error: bytes | str) -> str:
    return error.decode(errors="replace") if isinstance(error, bytes) else error


def _reply(exc: smtplib.SMTPResponseException) -> str:
    return f"{exc.smtp_code} {_text(exc.smtp_error)}"


def _refused(code: int, error: bytes) -> Outcome:
    """A refused recipient. 5xx says the address is bad (a hard bounce) unless the enhanced
    status is 5.7.x: a policy answer, such as relaying denied, says nothing of the address."""
    outcome = _rejected("recipient", code, error)
    if isinstance(outcome, PermanentError) and not error.startswith(b"5.7."):
        outcome.bounce = True
    return outcome


def _rejected(what: str, code: int, error: bytes | str) -> Outcome:
    detail = f"{what} refused: {code} {_text(error)}"
    return PermanentError(detail) if 500 <= code < 600 else TransientError(detail)
