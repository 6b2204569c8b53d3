"""Writes about user accounts."""

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from core.secret_values import is_placeholder


class SuperuserPasswordRefused(ValueError):
    """The password given for a superuser is a placeholder or fails AUTH_PASSWORD_VALIDATORS."""


def superuser_ensure(*, username: str, email: str, password: str) -> bool:
    """Create the superuser unless one with that name exists; True when created. Idempotent.

    The password is checked first, every time: a placeholder or a password Django's validators
    refuse never becomes a superuser's (createsuperuser --noinput skips the validators).
    """
    user_model = get_user_model()
    candidate = user_model(**{user_model.USERNAME_FIELD: username, "email": email})
    if is_placeholder(password):
        raise SuperuserPasswordRefused(
            "DJANGO_SUPERUSER_PASSWORD is a placeholder (change-me…, dev-only…): run bin/init-env or set a real one."
        )
    try:
        validate_password(password, user=candidate)
    except ValidationError as error:
        raise SuperuserPasswordRefused(f"DJANGO_SUPERUSER_PASSWORD refused: {' '.join(error.messages)}") from error
    if user_model._default_manager.filter(**{user_model.USERNAME_FIELD: username}).exists():
        return False
    try:
        with transaction.atomic():
            user_model._default_manager.create_superuser(
                **{user_model.USERNAME_FIELD: username}, email=email, password=password
            )
    except IntegrityError:
        # Another init created it in between: the user exists, which is what was asked for.
        return False
    return True
