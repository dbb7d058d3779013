"""Database models for every entity of SPEC section 1.

All datetimes are stored in UTC through :class:`UTCDateTime`, which refuses
naive values on the way in and returns aware UTC values on the way out, on
SQLite as on PostgreSQL.
"""

from __future__ import annotations

import hashlib
import secrets
import string
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from flask_login import UserMixin
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    Time,
    UniqueConstraint,
    false,
    text,
    types,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from providers import status as message_status

from .extensions import db
from .timeutil import UTC, require_aware, utcnow


class UTCDateTime(types.TypeDecorator):
    """A timestamp stored as UTC; naive datetimes are refused."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        value = require_aware(value)
        if dialect.name == "sqlite":
            # SQLite has no zone type: store naive UTC so text order is time order.
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# Rdv statuses (SPEC section 1).
RDV_UNKNOWN = "unknown"
RDV_SEEN = "seen"
RDV_NOSHOW = "noshow"
RDV_EXCUSED = "excused"
RDV_REVOKED = "revoked"
RDV_STATUSES = (RDV_UNKNOWN, RDV_SEEN, RDV_NOSHOW, RDV_EXCUSED, RDV_REVOKED)
RDV_CANCELLED_STATUSES = (RDV_EXCUSED, RDV_REVOKED)

CANCELLED_VIA = ("agent", "link", "sms", "api")

CHANNEL_SMS = "sms"
CHANNEL_EMAIL = "email"
CHANNELS = (CHANNEL_SMS, CHANNEL_EMAIL)

MESSAGE_KINDS = (
    "confirmation",
    "reminder",
    "second_reminder",
    "moved",
    "cancelled",
    "reply",
    "agent_alert",
    "verification",
    "waitlist_offer",
)

# Who booked an rdv (SPEC section 5): an agent's form, a usager online, the JSON API.
BOOKED_VIA = ("agent", "online", "api")

LOCATION_TYPES = {
    "on_site": "Sur place",
    "phone": "Par téléphone",
    "home": "À domicile",
}

CODE_ALPHABET = string.ascii_letters + string.digits

# Primary keys are PostgreSQL "integer": a larger number cannot be an id, and
# handing it to the database would fail (SQLite overflows past 2**63).
MAX_ID = 2**31 - 1
CANCEL_REASON_MAX = 500


def is_db_id(value) -> bool:
    """Whether ``value`` can be a primary key (an int, not a bool, in 1..MAX_ID)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_ID


def new_cancel_code(length: int = 12) -> str:
    """A random cancellation code: 12 characters of [A-Za-z0-9], about 71 bits."""
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(length))


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)


class Organisation(TimestampMixin, db.Model):
    __tablename__ = "organisations"
    __table_args__ = (UniqueConstraint("slug", name="uq_organisations_slug"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64), default="Europe/Paris")
    phone: Mapped[str | None] = mapped_column(String(32))
    sms_sender: Mapped[str | None] = mapped_column(String(16))
    # Comma lists; NULL means "use the environment's default".
    sms_providers: Mapped[str | None] = mapped_column(String(200))
    email_provider: Mapped[str | None] = mapped_column(String(50))
    reminder_offsets: Mapped[str | None] = mapped_column(String(100))
    quiet_hours: Mapped[str | None] = mapped_column(String(20))
    min_cancel_notice_minutes: Mapped[int] = mapped_column(Integer, default=0)
    # Online booking (SPEC section 5): the URL of its public pages, /prendre-rdv/<slug>,
    # and whether they are open.
    slug: Mapped[str | None] = mapped_column(String(64))
    online_booking: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # The second reminder, to usagers who have not confirmed with OUI (SPEC section 5):
    # one offset such as "24h"; NULL means none. The motif's value overrides it.
    second_reminder_offset: Mapped[str | None] = mapped_column(String(20))
    # Send the second reminder only to usagers with a past no-show.
    second_reminder_noshow_only: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    # No waiting-list offer for a slot starting sooner than this (docs/waitlist.md).
    waitlist_notice_minutes: Mapped[int] = mapped_column(
        Integer, default=240, server_default=text("240")
    )

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone or "Europe/Paris")


class Lieu(TimestampMixin, db.Model):
    __tablename__ = "lieux"

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    address: Mapped[str] = mapped_column(String(300), default="")
    phone: Mapped[str | None] = mapped_column(String(32))

    organisation: Mapped[Organisation] = relationship()


class Agent(UserMixin, TimestampMixin, db.Model):
    __tablename__ = "agents"

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(300), default="")
    first_name: Mapped[str] = mapped_column(String(100), default="")
    last_name: Mapped[str] = mapped_column(String(100), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Admins manage the organisation's outbound webhooks and are emailed when one is disabled.
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Bumped under a row lock by every booking of this agent: serialises
    # concurrent bookings so two rdvs can never overlap (see gateway.booking).
    booking_version: Mapped[int] = mapped_column(Integer, default=0)

    organisation: Mapped[Organisation] = relationship()

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip() or self.email

    @property
    def is_active(self) -> bool:  # Flask-Login
        return bool(self.active)

    def set_password(self, password: str) -> None:
        # scrypt: memory-hard, Werkzeug's default modern scheme.
        self.password_hash = generate_password_hash(password, method="scrypt")

    def check_password(self, password: str) -> bool:
        return bool(self.password_hash) and check_password_hash(self.password_hash, password)


class Motif(TimestampMixin, db.Model):
    __tablename__ = "motifs"

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    service: Mapped[str] = mapped_column(String(100), default="PMI")
    duration_minutes: Mapped[int] = mapped_column(Integer, default=30)
    location_type: Mapped[str] = mapped_column(String(20), default="on_site")
    reminder_offsets: Mapped[str | None] = mapped_column(String(100))
    # Overrides the organisation's second reminder; "off" switches it off for this motif.
    second_reminder_offset: Mapped[str | None] = mapped_column(String(20))
    instructions: Mapped[str | None] = mapped_column(Text)
    # Online booking (SPEC section 5): offered to usagers or agent-only, and the window
    # of its slots: from now + minimum notice to now + maximum delay.
    bookable_online: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    online_min_notice_minutes: Mapped[int] = mapped_column(
        Integer, default=120, server_default=text("120")
    )
    online_max_delay_days: Mapped[int] = mapped_column(
        Integer, default=60, server_default=text("60")
    )
    public_description: Mapped[str | None] = mapped_column(String(500))

    organisation: Mapped[Organisation] = relationship()


opening_hours_motifs = Table(
    "opening_hours_motifs",
    db.Model.metadata,
    Column(
        "opening_hours_id", ForeignKey("opening_hours.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("motif_id", ForeignKey("motifs.id", ondelete="CASCADE"), primary_key=True),
)


class OpeningHours(TimestampMixin, db.Model):
    """A weekly recurring range (local wall-clock time) of one agent at one lieu."""

    __tablename__ = "opening_hours"

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"), index=True)
    lieu_id: Mapped[int] = mapped_column(ForeignKey("lieux.id"), index=True)
    weekday: Mapped[int] = mapped_column(Integer)  # Monday = 0
    start_time: Mapped[time] = mapped_column(Time)
    end_time: Mapped[time] = mapped_column(Time)

    agent: Mapped[Agent] = relationship()
    lieu: Mapped[Lieu] = relationship()
    motifs: Mapped[list[Motif]] = relationship(secondary=opening_hours_motifs)


class Usager(TimestampMixin, db.Model):
    __tablename__ = "usagers"

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    phone: Mapped[str | None] = mapped_column(String(20), index=True)  # E.164
    email: Mapped[str | None] = mapped_column(String(254))
    notify_sms: Mapped[bool] = mapped_column(Boolean, default=True)
    notify_email: Mapped[bool] = mapped_column(Boolean, default=True)
    sms_opted_out: Mapped[bool] = mapped_column(Boolean, default=False)

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


class Rdv(TimestampMixin, db.Model):
    __tablename__ = "rdvs"
    __table_args__ = (
        Index("ix_rdvs_agent_starts", "agent_id", "starts_at"),
        # Statistics of one organisation (gateway.stats): a range on starts_at,
        # read from the index alone on PostgreSQL.
        Index(
            "ix_rdvs_stats",
            "organisation_id",
            "starts_at",
            postgresql_include=["status", "cancelled_via", "booked_via"],
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    motif_id: Mapped[int] = mapped_column(ForeignKey("motifs.id"))
    lieu_id: Mapped[int] = mapped_column(ForeignKey("lieux.id"))
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    duration_minutes: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default=RDV_UNKNOWN)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_via: Mapped[str | None] = mapped_column(String(16))
    cancelled_by_agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    # Why the agent cancelled (optional, internal: on the timeline, never sent to the usager).
    cancel_reason: Mapped[str | None] = mapped_column(String(CANCEL_REASON_MAX))
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status_recorded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    booked_via: Mapped[str] = mapped_column(String(16), default="agent", server_default="agent")
    # The usager asked to be told of an earlier slot (gateway.waitlist).
    waitlist: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Bumped by every move and cancel: the messages planned before are stale
    # (Message.plan_generation; the send-time rule of scheduler.jobs).
    plan_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    organisation: Mapped[Organisation] = relationship()
    motif: Mapped[Motif] = relationship()
    lieu: Mapped[Lieu] = relationship()
    agent: Mapped[Agent] = relationship(foreign_keys=[agent_id])
    cancelled_by_agent: Mapped[Agent | None] = relationship(foreign_keys=[cancelled_by_agent_id])
    participations: Mapped[list[Participation]] = relationship(
        back_populates="rdv", cascade="all, delete-orphan", order_by="Participation.id"
    )
    messages: Mapped[list[Message]] = relationship(
        back_populates="rdv", order_by="Message.id", foreign_keys="Message.rdv_id"
    )

    @property
    def usagers(self) -> list[Usager]:
        return [p.usager for p in self.participations]

    @property
    def is_cancelled(self) -> bool:
        return self.status in RDV_CANCELLED_STATUSES


class Participation(db.Model):
    """One usager at one rdv, with the cancellation code bound to both."""

    __tablename__ = "participations"
    __table_args__ = (UniqueConstraint("rdv_id", "usager_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    rdv_id: Mapped[int] = mapped_column(ForeignKey("rdvs.id", ondelete="CASCADE"), index=True)
    usager_id: Mapped[int] = mapped_column(ForeignKey("usagers.id"), index=True)
    cancel_code: Mapped[str] = mapped_column(String(32), unique=True, default=new_cancel_code)

    rdv: Mapped[Rdv] = relationship(back_populates="participations")
    usager: Mapped[Usager] = relationship()


class Message(TimestampMixin, db.Model):
    """One SMS or email to one recipient; the database is the source of truth."""

    __tablename__ = "messages"
    __table_args__ = (
        # The dispatch query: due rows only, whatever the size of the table.
        Index(
            "ix_messages_due",
            "send_at",
            postgresql_where=text("status = 'scheduled'"),
            sqlite_where=text("status = 'scheduled'"),
        ),
        # The reconciler's query: rows in flight only (scheduler.dispatch.reconcile_stale).
        Index(
            "ix_messages_in_flight",
            "status",
            "status_changed_at",
            postgresql_where=text("status IN ('queued', 'sending')"),
            sqlite_where=text("status IN ('queued', 'sending')"),
        ),
        Index("ix_messages_provider_id", "provider", "provider_message_id"),
        Index("ix_messages_rdv", "rdv_id"),
        Index("ix_messages_recipient_sent", "recipient", "sent_at"),
        # Statistics (gateway.stats): messages the provider accepted, by sent_at,
        # for all organisations and for one; index-only scans on PostgreSQL.
        Index(
            "ix_messages_stats_sent",
            "sent_at",
            postgresql_include=["organisation_id", "channel", "provider", "status", "segments"],
            postgresql_where=text("sent_at IS NOT NULL"),
            sqlite_where=text("sent_at IS NOT NULL"),
        ),
        Index(
            "ix_messages_stats_org_sent",
            "organisation_id",
            "sent_at",
            postgresql_include=["channel", "provider", "status", "segments"],
            postgresql_where=text("sent_at IS NOT NULL"),
            sqlite_where=text("sent_at IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    rdv_id: Mapped[int | None] = mapped_column(ForeignKey("rdvs.id"))
    usager_id: Mapped[int | None] = mapped_column(ForeignKey("usagers.id"))
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    # The SMS this email replaces (SMS-to-email fallback), or the inbound SMS answered.
    fallback_of_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))
    channel: Mapped[str] = mapped_column(String(8))
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=message_status.SCHEDULED)
    send_at: Mapped[datetime] = mapped_column(UTCDateTime)
    recipient: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str | None] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text, default="")
    html_body: Mapped[str | None] = mapped_column(Text)
    segments: Mapped[int | None] = mapped_column(Integer)
    encoding: Mapped[str | None] = mapped_column(String(8))
    provider: Mapped[str | None] = mapped_column(String(32))
    provider_message_id: Mapped[str | None] = mapped_column(String(200))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # The rdv's plan_generation when this message was planned.
    plan_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(String(32))
    queued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=utcnow)

    rdv: Mapped[Rdv | None] = relationship(back_populates="messages", foreign_keys=[rdv_id])
    usager: Mapped[Usager | None] = relationship()
    agent: Mapped[Agent | None] = relationship()
    events: Mapped[list[DeliveryEvent]] = relationship(
        back_populates="message", order_by="DeliveryEvent.id"
    )
    status_changes: Mapped[list[MessageStatusChange]] = relationship(
        back_populates="message", order_by="MessageStatusChange.id"
    )

    @property
    def is_final(self) -> bool:
        return self.status in message_status.FINAL_STATUSES


class MessageStatusChange(db.Model):
    """Every status a message went through, with its time: the timeline's spine."""

    __tablename__ = "message_status_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    detail: Mapped[str | None] = mapped_column(Text)

    message: Mapped[Message] = relationship(back_populates="status_changes")


class DeliveryEvent(db.Model):
    """A receipt or webhook call, kept raw for audit, linked to its message when known."""

    __tablename__ = "delivery_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"), index=True)
    provider: Mapped[str] = mapped_column(String(32))
    provider_message_id: Mapped[str | None] = mapped_column(String(200), index=True)
    raw_status: Mapped[str | None] = mapped_column(String(50))
    mapped_status: Mapped[str | None] = mapped_column(String(16))
    error_code: Mapped[str | None] = mapped_column(String(32))
    applied: Mapped[bool] = mapped_column(Boolean, default=False)
    raw: Mapped[dict] = mapped_column(JSON, default=dict)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    message: Mapped[Message | None] = relationship(back_populates="events")


class InboundSms(db.Model):
    """An SMS received (or one part of a long one), with what was done about it.

    ``action`` is NULL until the message has been acted on; a part of a long
    Vonage SMS keeps NULL until every part has arrived, then the first part
    holds the joined text and the action, the others ``part``.
    """

    __tablename__ = "inbound_sms"
    __table_args__ = (
        UniqueConstraint("provider", "provider_message_id"),
        Index("ix_inbound_sms_concat", "provider", "from_number", "concat_ref"),
        # The reconciler's query: SMS stored but not (yet) acted on.
        Index(
            "ix_inbound_sms_unhandled",
            "received_at",
            postgresql_where=text("action IS NULL"),
            sqlite_where=text("action IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"))
    provider: Mapped[str] = mapped_column(String(32))
    provider_message_id: Mapped[str] = mapped_column(String(200))
    from_number: Mapped[str] = mapped_column(String(32), index=True)
    to_number: Mapped[str | None] = mapped_column(String(32))
    body: Mapped[str] = mapped_column(Text, default="")
    usager_id: Mapped[int | None] = mapped_column(ForeignKey("usagers.id"))
    rdv_id: Mapped[int | None] = mapped_column(ForeignKey("rdvs.id"), index=True)
    action: Mapped[str | None] = mapped_column(String(32))
    raw: Mapped[dict] = mapped_column(JSON, default=dict)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Parts of a long SMS (Vonage sends them one by one): joined before acting.
    concat_ref: Mapped[str | None] = mapped_column(String(64))
    concat_part: Mapped[int | None] = mapped_column(Integer)
    concat_total: Mapped[int | None] = mapped_column(Integer)
    # The SMS we answered with, if any.
    reply_message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))

    usager: Mapped[Usager | None] = relationship()
    rdv: Mapped[Rdv | None] = relationship()
    reply_message: Mapped[Message | None] = relationship()


class ApiToken(TimestampMixin, db.Model):
    """A bearer token for the JSON API; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    organisation: Mapped[Organisation] = relationship()

    @staticmethod
    def hash(token: str) -> str:
        # Tokens are 256-bit random: a fast hash is enough, no salt needed.
        return hashlib.sha256(token.encode()).hexdigest()

    @classmethod
    def issue(cls, organisation_id: int, name: str) -> tuple[ApiToken, str]:
        token = "lapin_" + secrets.token_urlsafe(32)
        return cls(organisation_id=organisation_id, name=name, token_hash=cls.hash(token)), token


class WebhookEndpoint(TimestampMixin, db.Model):
    """A URL of an organisation that receives signed events (Standard Webhooks).

    ``events`` is a comma list of event types (:data:`gateway.events.EVENT_TYPES`);
    ``secret`` (``whsec_`` + base64) signs every request and is shown once, at creation.
    ``failing_since`` is the first failure since the last success: after a day
    of failures the endpoint is disabled (:mod:`scheduler.webhook_delivery`).
    """

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[str] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(String(100))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled_reason: Mapped[str | None] = mapped_column(String(300))

    organisation: Mapped[Organisation] = relationship()

    @property
    def event_types(self) -> list[str]:
        return [e for e in (self.events or "").split(",") if e]


class WebhookEvent(db.Model):
    """Something that happened to an organisation, written in the transaction of the change.

    ``webhook_id`` is the ``webhook-id`` header (the same on every attempt and
    replay, so receivers can drop duplicates); ``rdv_id`` orders deliveries.
    """

    __tablename__ = "webhook_events"
    __table_args__ = (Index("ix_webhook_events_org_at", "organisation_id", "occurred_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    webhook_id: Mapped[str] = mapped_column(String(40), unique=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    type: Mapped[str] = mapped_column(String(40))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    rdv_id: Mapped[int | None] = mapped_column(Integer)
    data: Mapped[dict] = mapped_column(JSON)


class WebhookOutbox(db.Model):
    """One event to deliver to one endpoint: the outbox row, written with the event.

    ``status``: ``pending`` (due at ``next_attempt_at``), ``sending`` (claimed
    by a delivery job at ``claimed_at``), ``delivered``, ``failed`` (the retry
    schedule is exhausted).
    """

    __tablename__ = "webhook_outbox"
    __table_args__ = (
        # The dispatcher's query: due rows only.
        Index(
            "ix_webhook_outbox_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
        # Order per rdv: is an earlier row of the same rdv and endpoint still undelivered?
        Index(
            "ix_webhook_outbox_chain",
            "endpoint_id",
            "rdv_id",
            "id",
            postgresql_where=text("status IN ('pending', 'sending')"),
            sqlite_where=text("status IN ('pending', 'sending')"),
        ),
        Index(
            "ix_webhook_outbox_in_flight",
            "claimed_at",
            postgresql_where=text("status = 'sending'"),
            sqlite_where=text("status = 'sending'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_events.id", ondelete="CASCADE"), index=True
    )
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    rdv_id: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    event: Mapped[WebhookEvent] = relationship()
    endpoint: Mapped[WebhookEndpoint] = relationship()


class WebhookDelivery(db.Model):
    """One delivery attempt (SPEC section 5): event, attempt number, answer status, time."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_endpoint_at", "endpoint_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    outbox_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_outbox.id", ondelete="CASCADE"), index=True
    )
    event_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_events.id", ondelete="CASCADE"), index=True
    )
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer)  # None: no answer (timeout, refused)
    error: Mapped[str | None] = mapped_column(String(300))
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime)

    event: Mapped[WebhookEvent] = relationship()


class VerificationCode(db.Model):
    """An online booking waiting for its code (:mod:`gateway.online`): the slot it holds,
    the usager's details, the hashed code and its tries.

    The slot is held while ``status`` is ``pending`` and ``expires_at`` is ahead:
    bookings and other holds of the agent skip it. ``public_id`` names the row in
    the pages' URLs; the code itself is only stored as an HMAC (``code_hash``).
    """

    __tablename__ = "verification_codes"
    __table_args__ = (
        # Holds that may block a slot: pending rows of one agent, by start.
        Index(
            "ix_verification_codes_holds",
            "agent_id",
            "starts_at",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
        # "At most 3 codes per number per hour".
        Index("ix_verification_codes_recipient", "recipient", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    motif_id: Mapped[int] = mapped_column(ForeignKey("motifs.id"))
    lieu_id: Mapped[int] = mapped_column(ForeignKey("lieux.id"))
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    phone: Mapped[str | None] = mapped_column(String(20))
    email: Mapped[str | None] = mapped_column(String(254))
    notify_sms: Mapped[bool] = mapped_column(Boolean, default=True)
    notify_email: Mapped[bool] = mapped_column(Boolean, default=True)
    channel: Mapped[str] = mapped_column(String(8))
    recipient: Mapped[str] = mapped_column(String(254))
    code_hash: Mapped[str] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # pending -> used | exhausted | superseded | expired
    # The usager asks to be told of an earlier slot (gateway.waitlist): copied to the rdv.
    waitlist: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    status: Mapped[str] = mapped_column(String(16), default="pending")
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))
    rdv_id: Mapped[int | None] = mapped_column(ForeignKey("rdvs.id"))

    organisation: Mapped[Organisation] = relationship()
    motif: Mapped[Motif] = relationship()
    lieu: Mapped[Lieu] = relationship()
    message: Mapped[Message | None] = relationship()
    rdv: Mapped[Rdv | None] = relationship()


class FreedSlot(db.Model):
    """A slot that became free (an rdv cancelled or moved away), for the waiting list.

    ``next_offer_at`` is when :mod:`gateway.waitlist` should next try to offer
    it (NULL: nothing left to do); ``filled_at``/``filled_via`` record how it
    was taken again when the gateway saw it (``waitlist`` or ``move``); a
    booking into it is found by the statistics from the rdvs themselves.
    """

    __tablename__ = "freed_slots"
    __table_args__ = (
        Index("ix_freed_slots_org_freed", "organisation_id", "freed_at"),
        Index(
            "ix_freed_slots_due",
            "next_offer_at",
            postgresql_where=text("next_offer_at IS NOT NULL"),
            sqlite_where=text("next_offer_at IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    motif_id: Mapped[int] = mapped_column(ForeignKey("motifs.id"))
    lieu_id: Mapped[int] = mapped_column(ForeignKey("lieux.id"))
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    freed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    freed_by_usager: Mapped[bool] = mapped_column(Boolean, default=False)
    source_rdv_id: Mapped[int | None] = mapped_column(ForeignKey("rdvs.id"))
    next_offer_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    filled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    filled_via: Mapped[str | None] = mapped_column(String(16))
    filled_rdv_id: Mapped[int | None] = mapped_column(ForeignKey("rdvs.id"))

    organisation: Mapped[Organisation] = relationship()
    motif: Mapped[Motif] = relationship()
    lieu: Mapped[Lieu] = relationship()
    agent: Mapped[Agent] = relationship()


class WaitlistOffer(db.Model):
    """A freed slot offered to one waiting usager, taken through ``/o/<code>``.

    ``status``: ``offered``, ``taken`` (this usager took it), ``lost`` (someone
    else took the slot first), ``expired`` (the slot started, went out of
    reach, or the waiting rdv changed).
    """

    __tablename__ = "waitlist_offers"
    __table_args__ = (Index("ix_waitlist_offers_usager_at", "usager_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    freed_slot_id: Mapped[int] = mapped_column(ForeignKey("freed_slots.id"), index=True)
    rdv_id: Mapped[int] = mapped_column(ForeignKey("rdvs.id"), index=True)
    usager_id: Mapped[int] = mapped_column(ForeignKey("usagers.id"))
    code: Mapped[str] = mapped_column(String(32), unique=True, default=new_cancel_code)
    status: Mapped[str] = mapped_column(String(16), default="offered")
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    freed_slot: Mapped[FreedSlot] = relationship()
    rdv: Mapped[Rdv] = relationship()
    usager: Mapped[Usager] = relationship()


def ends_at_for(starts_at: datetime, duration_minutes: int) -> datetime:
    return starts_at + timedelta(minutes=duration_minutes)
