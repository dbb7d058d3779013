"""The French label of every code the UI shows: one place, so no raw code reaches a page.

Codes stay English in the database and the API (SPEC names); pages, exports
and statistics show these labels. Every vocabulary of the code has its table
here, and ``tests/gateway/test_labels.py`` checks that each value has a label:
a new status, kind, action or channel without one fails the suite.

The templates get these tables as globals (:func:`gateway.web.init_app`).
"""

from __future__ import annotations

# Rdv.status (gateway.models.RDV_STATUSES).
STATUS_LABELS = {
    "unknown": "À venir",
    "seen": "Venu",
    "noshow": "Absent (lapin)",
    "excused": "Annulé par l'usager",
    "revoked": "Annulé par le service",
}

# Message.status (providers.status.ALL_STATUSES).
MESSAGE_STATUS_LABELS = {
    "scheduled": "Programmé",
    "queued": "En file",
    "sending": "Envoi en cours",
    "sent": "Envoyé",
    "delivered": "Reçu",
    "undelivered": "Non distribué",
    "failed": "Échec",
    "cancelled": "Annulé",
    "skipped": "Non envoyé",
}

# Message.kind (gateway.models.MESSAGE_KINDS, and SPEC section 5's additions).
KIND_LABELS = {
    "confirmation": "Confirmation",
    "reminder": "Rappel",
    "second_reminder": "Second rappel",
    "moved": "Déplacement",
    "cancelled": "Annulation",
    "reply": "Réponse",
    "agent_alert": "Alerte agent",
    "verification": "Code de vérification",
    "waitlist_offer": "Proposition de créneau (liste d'attente)",
}

# Message.channel (gateway.models.CHANNELS).
CHANNEL_LABELS = {
    "sms": "SMS",
    "email": "E-mail",
}

# InboundSms.action (the ACTION_* values of webhooks.inbound).
INBOUND_ACTION_LABELS = {
    "processing": "en cours de traitement",
    "cancelled": "rendez-vous annulé",
    "already_cancelled": "rendez-vous déjà annulé",
    "too_late": "trop tard pour annuler par SMS",
    "confirmed": "venue confirmée",
    "opted_out": "SMS désactivés (STOP)",
    "opted_in": "SMS réactivés (START)",
    "forwarded": "transmis à l'agent",
    "no_rdv": "aucun rendez-vous à venir",
    "unknown_number": "numéro inconnu",
    "part": "partie d'un SMS long (jointe à la première)",
}

# Rdv.cancelled_via (gateway.models.CANCELLED_VIA), in a sentence: "annulé par …".
VIA_LABELS = {
    "agent": "un agent",
    "link": "le lien d'annulation",
    "sms": "une réponse SMS",
    "api": "l'API",
}

# The same, as column headings (statistics).
VIA_COLUMN_LABELS = {
    "link": "Lien d'annulation",
    "sms": "Réponse SMS",
    "agent": "Agent",
    "api": "API",
}

# Rdv.booked_via (SPEC section 5), in a sentence: "pris par …".
BOOKED_VIA_LABELS = {
    "agent": "un agent",
    "online": "en ligne",
    "api": "l'API",
}

# Why a message was not sent (scheduled -> cancelled or skipped), as shown on the timeline.
SKIP_REASON_LABELS = {
    "rdv_cancelled": "rdv annulé",
    "rdv_moved": "rdv déplacé",
    "too_late": "trop tard : le rdv a commencé",
    "no_recipient": "pas de destinataire",
    "sms_opted_out": "numéro désinscrit des SMS (STOP)",
    "no_sms_consent": "pas de consentement SMS",
    "no_email_consent": "pas de consentement e-mail",
    "replaced_by_reply": "remplacé par la réponse au SMS ANNULER",
    "code_unusable": "code plus utilisable",
    # The no-show loop (scheduler.jobs.no_show_loop_verdict, gateway.waitlist).
    "confirmed_by_oui": "l'usager a confirmé par OUI : second rappel inutile",
    "no_past_noshow": "aucune absence passée : second rappel réservé aux usagers déjà absents",
    "slot_taken": "créneau déjà repris",
    "slot_too_soon": "créneau trop proche : délai minimum de proposition dépassé",
    "offer_closed": "proposition close",
}

# The outcome of an rdv on a usager's history (gateway.history.outcome).
OUTCOME_LABELS = {
    "upcoming": "À venir",
    "unrecorded": "Passé, issue non saisie",
    "seen": "Venu",
    "noshow": "Absent (lapin)",
    "excused": "Annulé par l'usager",
    "revoked": "Annulé par le service",
}

# WaitlistOffer.status (gateway.waitlist).
WAITLIST_OFFER_STATUS_LABELS = {
    "offered": "proposé",
    "taken": "pris",
    "lost": "pris par un autre usager",
    "expired": "expiré",
}
