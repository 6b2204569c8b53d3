"""Run another management command with its output as log lines (the compose start scripts use it).

    python manage.py logged migrate --noinput

Each line the command writes becomes one log event (`command.output`, with `command`, `stream` and
`text`): one JSON object per line with LOG_FORMAT=json, as README promises for every container. A
failure is logged (`command.failed`) and exits non-zero, as the command itself would.
"""

import argparse
import sys

import structlog
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from core.command_logging import command_output_streams


class Command(BaseCommand):
    help = "Run a management command with each line of its output logged (JSON with LOG_FORMAT=json)."

    def add_arguments(self, parser):
        parser.add_argument("command_name", help="the management command to run")
        parser.add_argument("arguments", nargs=argparse.REMAINDER, help="its arguments")

    def handle(self, *args, command_name, arguments, **options):
        stdout, stderr = command_output_streams(command_name)
        try:
            call_command(command_name, *arguments, stdout=stdout, stderr=stderr, no_color=True)
        except CommandError as error:
            structlog.get_logger(f"manage.{command_name}").error(
                "command.failed", command=command_name, error=f"{type(error).__name__}: {error}"
            )
            sys.exit(error.returncode or 1)
        finally:
            stdout.close()
            stderr.close()
