"""A management command's output as log lines: each line it writes becomes one structlog event.

With LOG_FORMAT=json every line a container prints is then one JSON object, Django's own commands
(migrate, check) included; with the console format the lines stay readable.
"""

import io

import structlog


class LogLineStream(io.TextIOBase):
    """A text stream for call_command(stdout=…, stderr=…): each complete line is logged, blank lines dropped."""

    def __init__(self, logger, level: str):
        super().__init__()
        self._log = getattr(logger, level)
        self._pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        # Commands write partial lines too (migrate's "Applying x..." then " OK"): wait for the newline.
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self._emit(line)
        return len(text)

    def close(self) -> None:
        if self._pending:
            self._emit(self._pending)
            self._pending = ""
        super().close()

    def _emit(self, line: str) -> None:
        text = line.rstrip()
        if text.strip():
            self._log("command.output", text=text)


def command_output_streams(command_name: str) -> tuple[LogLineStream, LogLineStream]:
    """stdout (info) and stderr (warning) streams that log each line of command_name's output."""
    logger = structlog.get_logger(f"manage.{command_name}").bind(command=command_name)
    return LogLineStream(logger.bind(stream="stdout"), "info"), LogLineStream(logger.bind(stream="stderr"), "warning")
