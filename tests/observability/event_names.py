"""The structlog event names the code emits, found by reading the source (no import, no running)."""

import ast
from pathlib import Path

import django_structlog

from pru_app.logging_setup import GUNICORN_ACCESS_EVENT

PROJECT_ROOT = Path(__file__).resolve().parents[2]
LOG_METHODS = {"debug", "info", "warning", "warn", "error", "exception", "critical", "fatal", "msg"}


def emitted_event_names(paths) -> set[str]:
    """First string argument of every logger call (`.info("x.y", …)`, `.log(level, "x.y", …)`)."""
    names = set()
    for path in paths:
        tree = ast.parse(Path(path).read_text(), filename=str(path))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            position = 1 if node.func.attr == "log" else 0 if node.func.attr in LOG_METHODS else None
            if position is None or len(node.args) <= position:
                continue
            argument = node.args[position]
            if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                names.add(argument.value)
    return names


def project_sources() -> list[Path]:
    sources = []
    for package in ("chat", "core", "pru_app"):
        sources += [path for path in (PROJECT_ROOT / package).rglob("*.py") if "tests" not in path.parts]
    return sources


def all_emitted_event_names() -> set[str]:
    """pru_app's own events, django-structlog's request/task events and the Gunicorn access event."""
    library = Path(django_structlog.__file__).parent.rglob("*.py")
    return emitted_event_names(project_sources()) | emitted_event_names(library) | {GUNICORN_ACCESS_EVENT}
