"""Creating and finding usagers."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import and_, func, or_, select

from .errors import Conflict, ValidationFailed
from .extensions import db
from .models import Organisation, Usager
from .phones import InvalidPhone, is_mobile, normalize_phone


def clean_usager_fields(data: dict) -> dict:
    """Validate usager input; return clean values or raise ValidationFailed.

    The exception carries every field error, not only the first.
    """
    errors: dict[str, str] = {}
    clean: dict = {}
    for name, label in (("first_name", "Le prénom"), ("last_name", "Le nom")):
        value = data.get(name)
        if not isinstance(value, str) or not value.strip():
            errors[name] = f"{label} est obligatoire."
        elif len(value.strip()) > 100:
            errors[name] = f"{label} est trop long (100 caractères au plus)."
        else:
            clean[name] = " ".join(value.split())
    phone = data.get("phone")
    clean["phone"] = None
    if phone not in (None, ""):
        if not isinstance(phone, str):
            errors["phone"] = "Le numéro de téléphone doit être un texte."
        else:
            try:
                clean["phone"] = normalize_phone(phone)
            except InvalidPhone as exc:
                errors["phone"] = str(exc)
    email = data.get("email")
    clean["email"] = None
    if email not in (None, ""):
        if not isinstance(email, str):
            errors["email"] = "L'adresse e-mail doit être un texte."
        else:
            try:
                clean["email"] = validate_email(
                    email.strip(), check_deliverability=False
                ).normalized
            except EmailNotValidError:
                errors["email"] = f"« {email} » n'est pas une adresse e-mail valide."
    for flag in ("notify_sms", "notify_email"):
        value = data.get(flag, True)
        if not isinstance(value, bool):
            errors[flag] = "Valeur attendue : vrai ou faux."
        else:
            clean[flag] = value
    if (
        "phone" not in errors
        and clean.get("notify_sms")
        and clean["phone"]
        and not is_mobile(clean["phone"])
    ):
        errors["phone"] = "Ce numéro n'est pas un mobile : il ne peut pas recevoir de SMS."
    if not errors and not clean["phone"] and not clean["email"]:
        errors["phone"] = "Indiquez un téléphone mobile ou une adresse e-mail."
    if errors:
        raise ValidationFailed("L'usager n'a pas pu être enregistré.", fields=errors)
    return clean


class UsagerExists(Conflict):
    """A usager with the same name and mobile or email exists (SPEC section 5)."""

    code = "usager_exists"

    def __init__(self, existing: Usager):
        super().__init__(
            f"Cet usager existe déjà (n° {existing.id}) : même nom et même mobile ou e-mail. "
            "Réutilisez-le, ou envoyez « allow_duplicate »: true pour en créer un autre.",
        )
        self.existing_id = existing.id

    def as_json(self) -> dict:
        body = super().as_json()
        body["error"]["existing_id"] = self.existing_id
        return body


def find_duplicate_usager(
    organisation: Organisation,
    first_name: str,
    last_name: str,
    phone: str | None,
    email: str | None,
) -> Usager | None:
    """The usager of ``organisation`` with the same name (case aside) and the same mobile
    (E.164) or email, if any: the person is probably already known."""
    contacts = []
    if phone:
        contacts.append(Usager.phone == phone)
    if email:
        contacts.append(func.lower(Usager.email) == email.strip().lower())
    if not contacts or not first_name or not last_name:
        return None
    return db.session.scalar(
        select(Usager)
        .where(
            Usager.organisation_id == organisation.id,
            func.lower(Usager.first_name) == " ".join(first_name.split()).lower(),
            func.lower(Usager.last_name) == " ".join(last_name.split()).lower(),
            or_(*contacts),
        )
        .order_by(Usager.id)
        .limit(1)
    )


def create_usager(organisation: Organisation, data: dict, commit: bool = True) -> Usager:
    """Create a usager of ``organisation`` from raw input (form or JSON)."""
    usager = Usager(
        organisation_id=organisation.id, sms_opted_out=False, **clean_usager_fields(data)
    )
    db.session.add(usager)
    if commit:
        db.session.commit()
    return usager


def search_usagers(organisation: Organisation, query: str, limit: int = 20) -> list[Usager]:
    """Usagers whose name or phone matches ``query`` (a phone in any French form works)."""
    text = (query or "").strip()
    if not text:
        return []
    conditions = []
    try:
        conditions.append(Usager.phone == normalize_phone(text))
    except InvalidPhone:
        pass
    words = [w.replace("%", "").replace("_", "") for w in text.split()[:4]]
    # Every word must match the first or last name: "léa dupont" finds Léa Dupont only.
    conditions.append(
        and_(
            *(
                or_(Usager.first_name.ilike(f"%{w}%"), Usager.last_name.ilike(f"%{w}%"))
                for w in words
            )
        )
    )
    return list(
        db.session.scalars(
            select(Usager)
            .where(Usager.organisation_id == organisation.id, or_(*conditions))
            .order_by(Usager.last_name, Usager.first_name)
            .limit(limit)
        )
    )
