"""What a fetch run reports: per page for progress lines, and the summary the command prints."""

from collections import Counter
from dataclasses import dataclass, field

# Failures kept with their details in the summary; the count stays exact beyond it.
MAX_REPORTED_FAILURES = 50


@dataclass(frozen=True)
class FailedPhoto:
    source_url: str | None
    photo_id: int | None
    reason: str


@dataclass
class PageReport:
    """What one page gave, for progress lines."""

    offset: int
    listed: int
    stored: int = 0
    already_stored: int = 0
    duplicates: int = 0
    failed: int = 0
    lost: int = 0


@dataclass
class ImageFetchSummary:
    source: str
    pages: int = 0
    seen: int = 0
    stored: int = 0
    already_stored: int = 0
    duplicates: int = 0
    failed: int = 0
    lost: int = 0
    bytes: int = 0
    seconds: float = 0.0
    failure_kinds: Counter = field(default_factory=Counter)
    failures: list[FailedPhoto] = field(default_factory=list)

    @property
    def photos_per_second(self) -> float:
        return self.seen / self.seconds if self.seconds else 0.0

    def add_failure(self, *, source_url, photo_id, reason, kind) -> None:
        self.failed += 1
        self.failure_kinds[kind] += 1
        if len(self.failures) < MAX_REPORTED_FAILURES:
            self.failures.append(FailedPhoto(source_url=source_url, photo_id=photo_id, reason=reason))

    def as_log_fields(self) -> dict:
        return {
            "pages": self.pages,
            "seen": self.seen,
            "stored": self.stored,
            "already_stored": self.already_stored,
            "duplicates": self.duplicates,
            "lost": self.lost,
            "failed": self.failed,
            "failure_kinds": dict(self.failure_kinds),
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "photos_per_second": round(self.photos_per_second, 1),
        }
