"""Email over SMTP, and the iCalendar invitation attached to appointment emails.

One connection per message, no resend: ``smtplib`` writes the message once,
and a connection that drops before the relay answers the DATA is a transient
error (the relay may or may not have taken it; the scheduler decides whether
to try again). The relay's 250 after the DATA is the commitment: from then
on the email counts as sent, whatever happens at QUIT (a refusal, a drop, a
timeout), since sending it again would deliver it twice.
"""

from __future__ import annotations

import logging
import re
import smtplib
import ssl
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr

from .base import (
    EmailProvider,
    OutboundEmail,
    PermanentProviderError,
    ProviderError,
    SendResult,
    TransientProviderError,
)

NAME = "smtp"
logger = logging.getLogger("providers.smtp")
ICS_FILENAME = "rdv.ics"
_ICS_METHOD = re.compile(r"^METHOD:([A-Za-z-]+)\s*$", re.MULTILINE)


def _smtp_error(code: int, text: str | bytes) -> ProviderError:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if 500 <= code < 600:
        return PermanentProviderError(NAME, text, code)
    return TransientProviderError(NAME, text, code)


class SmtpEmail(EmailProvider):
    """Send email through an SMTP relay, one connection per message.

    A connection per message keeps the adapter thread-safe and robust to
    relays that drop idle connections; reminder volumes do not need more.
    """

    name = NAME

    def __init__(
        self,
        host: str,
        port: int = 25,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        mail_from: str = "lapin@localhost",
        timeout: float = 10.0,
    ) -> None:
        if not host:
            raise ValueError("SMTP needs a host")
        self.host = host
        self.port = int(port)
        self.username = username
        self.password = password
        self.starttls = starttls
        self.mail_from = mail_from
        self.timeout = timeout
        address = parseaddr(mail_from)[1]
        self._domain = address.rpartition("@")[2] or "localhost"

    def build_message(self, email: OutboundEmail) -> EmailMessage:
        """Build the MIME message: text, optional HTML alternative and ``rdv.ics``."""
        message = EmailMessage()
        message["From"] = self.mail_from
        message["To"] = email.to
        message["Subject"] = email.subject
        message["Date"] = formatdate(usegmt=True)
        message["Message-ID"] = make_msgid(domain=self._domain)
        message["X-Lapin-Ref"] = email.reference
        if email.reply_to:
            message["Reply-To"] = email.reply_to
        message.set_content(email.text)
        if email.html:
            message.add_alternative(email.html, subtype="html")
        if email.ics:
            found = _ICS_METHOD.search(email.ics)
            message.add_attachment(
                email.ics,
                subtype="calendar",
                filename=ICS_FILENAME,
                params={"method": found.group(1).upper() if found else "REQUEST"},
            )
        return message

    def _send_email(self, email: OutboundEmail) -> SendResult:
        message = self.build_message(email)
        try:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            try:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.username:
                    smtp.login(self.username, self.password or "")
                smtp.send_message(message)
            except BaseException:
                smtp.close()
                raise
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()))
            raise _smtp_error(code, text) from exc
        except smtplib.SMTPAuthenticationError as exc:
            # Our credentials, not the recipient: retrying after a fix works.
            raise TransientProviderError(NAME, str(exc.smtp_error), exc.smtp_code) from exc
        except smtplib.SMTPConnectError as exc:
            raise TransientProviderError(NAME, str(exc.smtp_error), exc.smtp_code) from exc
        except smtplib.SMTPResponseException as exc:
            raise _smtp_error(exc.smtp_code, exc.smtp_error) from exc
        except smtplib.SMTPServerDisconnected as exc:
            raise TransientProviderError(NAME, str(exc), "connection") from exc
        except smtplib.SMTPException as exc:
            # E.g. STARTTLS or AUTH not offered: a relay configuration problem.
            raise TransientProviderError(NAME, f"{type(exc).__name__}: {exc}", "smtp") from exc
        except OSError as exc:
            # Refused connections, timeouts, TLS failures (SMTPException is an
            # OSError too, hence the order).
            raise TransientProviderError(
                NAME, f"{type(exc).__name__}: {exc}", "connection"
            ) from exc
        # The relay answered 250 to the DATA: the message is its now. Not with
        # `with smtplib.SMTP(...)`, whose exit raises on a reply other than 221
        # to QUIT and would make an accepted email a failure, then a duplicate.
        _quit(smtp)
        return SendResult(
            provider=NAME,
            provider_message_id=message["Message-ID"],
            raw={"message_id": message["Message-ID"]},
        )


def _quit(smtp: smtplib.SMTP) -> None:
    """Say QUIT and close; a failure here changes nothing (the message is accepted)."""
    try:
        code, text = smtp.quit()
        if code != 221:
            logger.info("SMTP relay answered %s to QUIT after accepting: %r", code, text)
    except (smtplib.SMTPException, OSError) as exc:
        logger.info("SMTP QUIT failed after the relay accepted the message: %s", exc)
    finally:
        smtp.close()


def _ics_text(value: str) -> str:
    """Escape a TEXT value (RFC 5545 3.3.11)."""
    return (
        value.replace("\\", "\\\\")
        .replace(";", "\\;")
        .replace(",", "\\,")
        .replace("\r\n", "\\n")
        .replace("\n", "\\n")
        .replace("\r", "\\n")
    )


def _ics_time(value: datetime, name: str) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
    return value.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _fold(line: str) -> str:
    """Fold a content line at 75 octets without cutting a UTF-8 character."""
    out: list[str] = []
    current, size = "", 0
    for ch in line:
        width = len(ch.encode("utf-8"))
        # Continuation lines start with a space, which counts in their 75.
        if size + width > 75:
            out.append(current)
            current, size = " ", 1
        current += ch
        size += width
    out.append(current)
    return "\r\n".join(out)


def build_ics(
    uid: str,
    starts_at: datetime,
    ends_at: datetime,
    summary: str,
    location: str,
    description: str,
    method: str = "REQUEST",
    sequence: int = 0,
    cancelled: bool = False,
    *,
    dtstamp: datetime | None = None,
) -> str:
    """Build an RFC 5545 calendar with one event, for the ``rdv.ics`` attachment.

    Times are written in UTC; naive datetimes raise ValueError. ``cancelled``
    produces ``METHOD:CANCEL`` / ``STATUS:CANCELLED`` so calendars drop the
    event; bump ``sequence`` each time the rdv changes so they update it.
    ``dtstamp`` defaults to now.
    """
    start = _ics_time(starts_at, "starts_at")
    end = _ics_time(ends_at, "ends_at")
    if ends_at <= starts_at:
        raise ValueError("ends_at must be after starts_at")
    stamp = _ics_time(dtstamp or datetime.now(UTC), "dtstamp")
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//Lapin//Rappels de rendez-vous//FR",
        "CALSCALE:GREGORIAN",
        f"METHOD:{'CANCEL' if cancelled else method.upper()}",
        "BEGIN:VEVENT",
        f"UID:{_ics_text(uid)}",
        f"DTSTAMP:{stamp}",
        f"DTSTART:{start}",
        f"DTEND:{end}",
        f"SEQUENCE:{int(sequence)}",
        f"STATUS:{'CANCELLED' if cancelled else 'CONFIRMED'}",
        f"SUMMARY:{_ics_text(summary)}",
        f"LOCATION:{_ics_text(location)}",
        f"DESCRIPTION:{_ics_text(description)}",
        "END:VEVENT",
        "END:VCALENDAR",
    ]
    return "\r\n".join(_fold(line) for line in lines) + "\r\n"
