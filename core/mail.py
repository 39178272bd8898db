"""E-mail: one interface, chosen by the ``smtp_url`` setting.

With no ``smtp_url`` (development) a message goes to the ``yima.mail`` log. With
``smtp://[user:password@]host[:port]`` it goes to that server, upgraded with STARTTLS when the
server offers it (``smtp+starttls://`` insists on it); ``smtps://`` speaks TLS from the start.
Tests and demos install a sender of their own with :func:`use_mailer`.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
import threading
import weakref
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol
from urllib.parse import unquote, urlsplit

from core.runtime import Runtime

log = logging.getLogger("yima.mail")

SMTP_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Mail:
    """One message: plain text, to one or more addresses."""

    to: tuple[str, ...]
    subject: str
    text: str


class Mailer(Protocol):
    """Sends one message; raises (``OSError``, ``smtplib.SMTPException``) when it cannot."""

    def send(self, mail: Mail) -> None: ...


class LogMailer:
    """Development: the message goes to the ``yima.mail`` log."""

    def send(self, mail: Mail) -> None:
        log.info("mail to %s: %s\n%s", ", ".join(mail.to), mail.subject, mail.text)


class SmtpMailer:
    """An SMTP server named by a URL (module docstring); one connection per message."""

    def __init__(self, url: str, sender: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtp+starttls", "smtps") or not parts.hostname:
            raise ValueError("smtp_url must look like smtp://user:password@host:587")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (465 if parts.scheme == "smtps" else 25)
        self.user = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.sender = sender

    def send(self, mail: Mail) -> None:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = ", ".join(mail.to)
        message["Subject"] = mail.subject
        message.set_content(mail.text)
        context = ssl.create_default_context()
        client: smtplib.SMTP
        if self.scheme == "smtps":
            client = smtplib.SMTP_SSL(
                self.host, self.port, timeout=SMTP_TIMEOUT_SECONDS, context=context
            )
        else:
            client = smtplib.SMTP(self.host, self.port, timeout=SMTP_TIMEOUT_SECONDS)
        with client:
            client.ehlo()
            if self.scheme == "smtp+starttls" or (
                self.scheme == "smtp" and client.has_extn("starttls")
            ):
                client.starttls(context=context)
                client.ehlo()
            if self.user is not None:
                client.login(self.user, self.password or "")
            client.send_message(message)


_mailers: weakref.WeakKeyDictionary[Runtime, Mailer] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def mailer_for(runtime: Runtime) -> Mailer:
    """The runtime's mailer: the one installed by :func:`use_mailer`, else by the settings."""
    with _lock:
        found = _mailers.get(runtime)
        if found is None:
            url = runtime.settings.smtp_url
            found = SmtpMailer(url, runtime.settings.mail_from) if url else LogMailer()
            _mailers[runtime] = found
        return found


def use_mailer(runtime: Runtime, mailer: Mailer) -> None:
    """Send this runtime's mail through ``mailer`` (tests: a recorder or a local server)."""
    with _lock:
        _mailers[runtime] = mailer
