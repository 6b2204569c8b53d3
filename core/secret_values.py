"""Secrets that are not secret: values copied from .env.example, or shaped like a placeholder."""

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

# .env.example and deploy/compose/minio.env.example write every secret this way; bin/init-env
# replaces them with random values. Lower-cased prefixes.
PLACEHOLDER_PREFIXES = ("change-me", "changeme", "dev-only", "replace-me", "insecure")


class PlaceholderSecret(ValueError):
    """A secret is empty, copied from an example file, or a placeholder; the message names the keys."""


def env_secret(key: str) -> str:
    """A secret exactly as set: django-environ would read a leading "$" as a reference to another key."""
    return os.environ.get(key, "")


def is_placeholder(value: str) -> bool:
    """True for a value shaped like a placeholder (change-me…, dev-only…), whatever its case."""
    return value.strip().lower().startswith(PLACEHOLDER_PREFIXES)


def example_values(paths: Iterable[Path]) -> dict[str, str]:
    """KEY=value pairs of the example env files that exist (comments and blank lines skipped)."""
    values: dict[str, str] = {}
    for path in paths:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                key, _, value = line.partition("=")
                values[key.strip()] = value.strip()
    return values


def placeholder_keys(secrets: Mapping[str, str | None], *, examples: Mapping[str, str]) -> list[str]:
    """The keys among secrets whose (non-empty) value is a placeholder or the example file's own value."""
    refused = []
    for key, value in secrets.items():
        if not value:
            continue
        if is_placeholder(value) or (examples.get(key) and value == examples[key]):
            refused.append(key)
    return refused


def refuse_placeholder_secrets(secrets: Mapping[str, str | None], *, examples: Mapping[str, str]) -> None:
    """Raise PlaceholderSecret naming every key whose value must not be used as a secret."""
    refused = placeholder_keys(secrets, examples=examples)
    if refused:
        raise PlaceholderSecret(
            f"{', '.join(refused)}: a value copied from .env.example or a placeholder (change-me…, dev-only…) "
            "is not a secret. Run bin/init-env to generate random values, or set your own."
        )
