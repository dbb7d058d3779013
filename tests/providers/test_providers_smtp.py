from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from zoneinfo import ZoneInfo

import pytest

from providers.base import OutboundEmail, PermanentProviderError, TransientProviderError
from providers.smtp import SmtpEmail, build_ics
from tests.fakes.smtp_server import FakeSmtp

PARIS = ZoneInfo("Europe/Paris")


@pytest.fixture
def smtp_server():
    with FakeSmtp() as relay:
        yield relay, relay.port


@pytest.fixture
def smtp_server_with_auth():
    with FakeSmtp(credentials=("lapin", "pw")) as relay:
        yield relay, relay.port


def _ics():
    start = datetime(2024, 11, 26, 14, 30, tzinfo=PARIS)
    return build_ics(
        "rdv-7@lapin", start, start + timedelta(minutes=30), "RDV PMI", "MDS Calais", "Bienvenue"
    )


EMAIL = OutboundEmail(
    reference="msg-42",
    to="alice@example.org",
    subject="Rappel : votre rendez-vous",
    text="Bonjour, votre rendez-vous est mardi à 14h30.",
    html="<p>Bonjour, votre rendez-vous est <b>mardi</b> à 14h30.</p>",
    ics=_ics(),
    reply_to="mds-calais@example.org",
)


def test_sends_text_html_and_ics(smtp_server):
    handler, port = smtp_server
    provider = SmtpEmail("127.0.0.1", port, mail_from="Lapin <rappels@lapin.example>")

    result = provider.send_email(EMAIL)

    assert result.provider == "smtp"
    assert result.provider_message_id.endswith("@lapin.example>")
    (envelope,) = handler.envelopes
    assert envelope.mail_from == "rappels@lapin.example"
    assert envelope.rcpt_tos == ["alice@example.org"]
    received = message_from_bytes(envelope.original_content, policy=policy.default)
    assert received["Message-ID"] == result.provider_message_id
    assert received["X-Lapin-Ref"] == "msg-42"
    assert received["Subject"] == "Rappel : votre rendez-vous"
    assert received["Reply-To"] == "mds-calais@example.org"
    assert received["Date"]
    assert received.get_body(("plain",)).get_content().strip() == EMAIL.text
    assert "<b>mardi</b>" in received.get_body(("html",)).get_content()
    (attachment,) = list(received.iter_attachments())
    assert attachment.get_filename() == "rdv.ics"
    assert attachment.get_content_type() == "text/calendar"
    assert attachment.get_param("method") == "REQUEST"
    assert "DTSTART:20241126T133000Z" in attachment.get_content()


def test_text_only_message_has_no_parts(smtp_server):
    handler, port = smtp_server
    email = OutboundEmail(reference="m", to="bob@example.org", subject="RDV", text="Bonjour")
    SmtpEmail("127.0.0.1", port).send_email(email)
    received = message_from_bytes(handler.envelopes[0].original_content, policy=policy.default)
    assert received.get_content_type() == "text/plain"
    assert received["Message-ID"].endswith("@localhost>")


def test_cancellation_ics_is_sent_with_method_cancel(smtp_server):
    handler, port = smtp_server
    start = datetime(2024, 11, 26, 14, 30, tzinfo=UTC)
    ics = build_ics("u", start, start + timedelta(hours=1), "s", "l", "d", cancelled=True)
    SmtpEmail("127.0.0.1", port).send_email(
        OutboundEmail(reference="m", to="bob@example.org", subject="Annulé", text="x", ics=ics)
    )
    received = message_from_bytes(handler.envelopes[0].original_content, policy=policy.default)
    (attachment,) = list(received.iter_attachments())
    assert attachment.get_param("method") == "CANCEL"


def test_550_recipient_refusal_is_permanent(smtp_server):
    handler, port = smtp_server
    email = OutboundEmail(reference="m", to="gone@example.org", subject="s", text="t")
    with pytest.raises(PermanentProviderError) as info:
        SmtpEmail("127.0.0.1", port).send_email(email)
    assert info.value.code == "550"
    assert "No such user" in info.value.message
    assert handler.envelopes == []


def test_451_recipient_refusal_is_transient(smtp_server):
    _, port = smtp_server
    email = OutboundEmail(reference="m", to="later@example.org", subject="s", text="t")
    with pytest.raises(TransientProviderError) as info:
        SmtpEmail("127.0.0.1", port).send_email(email)
    assert info.value.code == "451"


def test_closed_port_is_transient(unused_tcp_port):
    with pytest.raises(TransientProviderError) as info:
        SmtpEmail("127.0.0.1", unused_tcp_port, timeout=2).send_email(EMAIL)
    assert info.value.code == "connection"


def test_login(smtp_server_with_auth):
    handler, port = smtp_server_with_auth
    SmtpEmail("127.0.0.1", port, username="lapin", password="pw").send_email(EMAIL)
    assert len(handler.envelopes) == 1


def test_bad_credentials_are_transient_not_the_recipients_fault(smtp_server_with_auth):
    handler, port = smtp_server_with_auth
    with pytest.raises(TransientProviderError) as info:
        SmtpEmail("127.0.0.1", port, username="lapin", password="nope").send_email(EMAIL)
    assert info.value.code == "535"
    assert handler.envelopes == []


def test_server_without_starttls_is_transient(smtp_server):
    _, port = smtp_server
    with pytest.raises(TransientProviderError) as info:
        SmtpEmail("127.0.0.1", port, starttls=True).send_email(EMAIL)
    assert info.value.code == "smtp"


# --- no resend: a connection lost after the DATA ----------------------------

ONE_RECIPIENT = OutboundEmail(
    reference="msg-43", to="lea@example.org", subject="Votre rendez-vous", text="Bonjour"
)


def test_smtp_writes_once_when_the_relay_closes_before_answering_the_data():
    with FakeSmtp() as relay:
        relay.mode = "drop_after_data"
        with pytest.raises(TransientProviderError) as info:
            SmtpEmail("127.0.0.1", relay.port, timeout=5).send_email(ONE_RECIPIENT)
        assert info.value.code == "connection"
        assert [e.rcpt_tos for e in relay.envelopes] == [["lea@example.org"]]


@pytest.mark.parametrize("mode", ["drop_at_quit", "error_at_quit"])
def test_smtp_email_accepted_by_the_relay_is_sent_whatever_happens_at_quit(mode):
    with FakeSmtp() as relay:
        relay.mode = mode
        result = SmtpEmail("127.0.0.1", relay.port, timeout=5).send_email(ONE_RECIPIENT)
        assert result.provider == "smtp" and result.provider_message_id
        (envelope,) = relay.envelopes
        assert envelope.rcpt_tos == ["lea@example.org"]
        assert relay.quits == 1


# --- build_ics -------------------------------------------------------------


def _unfold(ics):
    return ics.replace("\r\n ", "")


def test_build_ics_shape():
    start = datetime(2024, 3, 31, 10, 0, tzinfo=PARIS)  # the day of the DST change: UTC+2
    ics = build_ics(
        "rdv-1@lapin",
        start,
        start + timedelta(minutes=45),
        "RDV PMI",
        "MDS Calais",
        "Apportez le carnet",
        sequence=2,
        dtstamp=datetime(2024, 3, 1, 8, 0, tzinfo=UTC),
    )
    assert ics.endswith("\r\n")
    lines = ics.split("\r\n")[:-1]
    assert "\n" not in "".join(lines)
    assert lines[0] == "BEGIN:VCALENDAR" and lines[-1] == "END:VCALENDAR"
    assert "VERSION:2.0" in lines
    assert "METHOD:REQUEST" in lines
    assert "UID:rdv-1@lapin" in lines
    assert "DTSTAMP:20240301T080000Z" in lines
    assert "DTSTART:20240331T080000Z" in lines
    assert "DTEND:20240331T084500Z" in lines
    assert "SEQUENCE:2" in lines
    assert "STATUS:CONFIRMED" in lines
    assert lines.index("BEGIN:VEVENT") < lines.index("END:VEVENT")


def test_build_ics_cancelled():
    start = datetime(2024, 11, 26, 14, 30, tzinfo=UTC)
    ics = build_ics(
        "u", start, start + timedelta(hours=1), "s", "l", "d", sequence=3, cancelled=True
    )
    assert "METHOD:CANCEL\r\n" in ics
    assert "STATUS:CANCELLED\r\n" in ics
    assert "SEQUENCE:3\r\n" in ics


def test_build_ics_escapes_text():
    start = datetime(2024, 11, 26, 14, 30, tzinfo=UTC)
    ics = build_ics(
        "u",
        start,
        start + timedelta(hours=1),
        "RDV; PMI, Calais",
        "12 rue X, 62100 Calais",
        "Ligne 1\nLigne 2\r\nchemin C:\\dossier",
    )
    unfolded = _unfold(ics)
    assert "SUMMARY:RDV\\; PMI\\, Calais\r\n" in unfolded
    assert "LOCATION:12 rue X\\, 62100 Calais\r\n" in unfolded
    assert "DESCRIPTION:Ligne 1\\nLigne 2\\nchemin C:\\\\dossier\r\n" in unfolded


def test_build_ics_folds_long_lines_at_75_octets_without_cutting_characters():
    start = datetime(2024, 11, 26, 14, 30, tzinfo=UTC)
    description = "Protection maternelle et infantile, é è à ü — " * 10
    ics = build_ics("u", start, start + timedelta(hours=1), "s", "l", description)
    for line in ics.split("\r\n"):
        assert len(line.encode("utf-8")) <= 75
    assert description.replace(",", "\\,") in _unfold(ics)


def test_build_ics_refuses_naive_or_inverted_times():
    naive = datetime(2024, 11, 26, 14, 30)
    aware = naive.replace(tzinfo=UTC)
    with pytest.raises(ValueError, match="starts_at"):
        build_ics("u", naive, aware, "s", "l", "d")
    with pytest.raises(ValueError, match="ends_at"):
        build_ics("u", aware, naive, "s", "l", "d")
    with pytest.raises(ValueError, match="after"):
        build_ics("u", aware, aware, "s", "l", "d")
