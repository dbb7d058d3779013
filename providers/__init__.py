"""SMS and email provider adapters behind one interface.

Data in, result out: this package imports nothing else of Lapin's (no Flask,
no database). Each provider module keeps its own status map, receipt parsing
and webhook signature check next to its adapter.
"""

from .base import (
    EmailProvider,
    InboundSms,
    OutboundEmail,
    OutboundSms,
    PermanentProviderError,
    ProviderError,
    Receipt,
    SendResult,
    SmsProvider,
    TransientProviderError,
    mask_email,
    mask_phone,
)
from .registry import email_provider, sms_provider
from .simulator import SimulatorEmail, SimulatorSms
from .sms_text import count_segments, is_gsm7, to_gsm7
from .smtp import SmtpEmail, build_ics
from .status import (
    ALL_STATUSES,
    CANCELLED,
    DELIVERED,
    FAILED,
    FINAL_STATUSES,
    QUEUED,
    SCHEDULED,
    SENDING,
    SENT,
    SKIPPED,
    UNDELIVERED,
    UNSENT_STATUSES,
    can_transition,
)
from .twilio import TwilioSms
from .vonage import VonageSms

__all__ = [
    "ALL_STATUSES",
    "CANCELLED",
    "DELIVERED",
    "FAILED",
    "FINAL_STATUSES",
    "QUEUED",
    "SCHEDULED",
    "SENDING",
    "SENT",
    "SKIPPED",
    "UNDELIVERED",
    "UNSENT_STATUSES",
    "EmailProvider",
    "InboundSms",
    "OutboundEmail",
    "OutboundSms",
    "PermanentProviderError",
    "ProviderError",
    "Receipt",
    "SendResult",
    "SimulatorEmail",
    "SimulatorSms",
    "SmsProvider",
    "SmtpEmail",
    "TransientProviderError",
    "TwilioSms",
    "VonageSms",
    "build_ics",
    "can_transition",
    "count_segments",
    "email_provider",
    "is_gsm7",
    "mask_email",
    "mask_phone",
    "sms_provider",
    "to_gsm7",
]
