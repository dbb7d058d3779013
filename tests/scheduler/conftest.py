"""Fixtures for the sending pipeline tests: a fixed clock, backends, sample messages."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import select

from gateway.booking import book
from gateway.extensions import db
from gateway.models import Message, Usager
from gateway.timeutil import utcnow
from scheduler.jobs import provider_for

PARIS = ZoneInfo("Europe/Paris")
# A weekday morning, outside quiet hours, far from DST changes.
MORNING = datetime(2030, 3, 5, 10, 0, tzinfo=PARIS)
TWILIO_URL = "https://twilio.test/2010-04-01/Accounts/AC123/Messages.json"
TWILIO_SETTINGS = {
    "TWILIO_ACCOUNT_SID": "AC123",
    "TWILIO_AUTH_TOKEN": "secret",
    "TWILIO_FROM": "+33700000000",
    "TWILIO_API_BASE_URL": "https://twilio.test",
}


@pytest.fixture
def clock():
    """The clock at ``MORNING`` (still ticking), for the job's own ``utcnow()``."""
    with time_machine.travel(MORNING, tick=True) as traveller:
        yield traveller


@pytest.fixture
def backend(app_config, redis_url, request):
    """Parametrised indirectly: ``embedded``, or ``redis`` when TEST_REDIS_URL is set."""
    name = getattr(request, "param", "embedded")
    app_config["SIMULATOR_RECEIPTS"] = False
    if name == "redis":
        if not redis_url:
            pytest.skip("TEST_REDIS_URL not set: no Redis server for this test")
        app_config["REDIS_URL"] = redis_url
        from redis import Redis

        Redis.from_url(redis_url).flushdb()
    return name


def sms_usager(world, phone="+33611111111", email=None, **kwargs) -> Usager:
    usager = Usager(
        organisation_id=world.org.id,
        first_name="Ana",
        last_name="Silva",
        phone=phone,
        email=email,
        notify_email=False,
        **kwargs,
    )
    db.session.add(usager)
    db.session.commit()
    return usager


def book_for(world, usager, days=3, hour=10, now=None):
    """Book an rdv ``days`` after the clock, at ``hour`` (Paris); returns the rdv."""
    now = now or utcnow()
    start = (now.astimezone(PARIS) + timedelta(days=days)).replace(
        hour=hour, minute=0, second=0, microsecond=0
    )
    return book(
        world.org,
        motif_id=world.motif.id,
        lieu_id=world.lieu.id,
        agent_id=world.agent.id,
        usager_ids=[usager.id],
        starts_at=start,
        now=now,
    )


def book_many(world, count: int, series: int) -> None:
    """Book ``count`` usagers (numbers ``+336<series>…``), one rdv each, six a day
    from three days after the clock, so that every confirmation is due now."""
    for i in range(count):
        book_for(
            world,
            sms_usager(world, phone=f"+336{series:03d}{i:03d}12"),
            days=3 + i // 6,
            hour=(9, 10, 11, 14, 15, 16)[i % 6],
        )


def messages(**filters) -> list[Message]:
    db.session.expire_all()
    query = select(Message).order_by(Message.id)
    for key, value in filters.items():
        query = query.where(getattr(Message, key) == value)
    return list(db.session.scalars(query))


def simulator_outbox(app, channel="sms") -> list:
    return provider_for(app, channel, "simulator").outbox
