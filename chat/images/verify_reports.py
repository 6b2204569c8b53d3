"""What a verify run reports: the summary the command prints, the task returns and the admin shows."""

from dataclasses import dataclass, field

# Problems kept with their details in the summary; the counts stay exact beyond it.
MAX_REPORTED = 50


@dataclass(frozen=True)
class ImageProblem:
    image_id: int | None
    key: str
    state: str
    reason: str


@dataclass
class PassCounts:
    """What one listing pass did: rows checked, how many by the listing alone, looked up (HEAD) or read (hashed)."""

    checked: int = 0
    by_listing: int = 0
    looked_up: int = 0
    read: int = 0
    unnamed: int = 0

    def as_log_fields(self, prefix: str) -> dict:
        return {f"{prefix}_{name}": value for name, value in self.__dict__.items()}


@dataclass
class ImageVerifySummary:
    where: str
    checked: int = 0
    intact: int = 0
    back_intact: int = 0
    missing: int = 0
    corrupt: int = 0
    repaired: int = 0
    repair_failed: int = 0
    lost: int = 0
    lost_before: int = 0
    orphans: int = 0
    orphans_deleted: int = 0
    orphans_too_recent: int = 0
    etags_recorded: int = 0
    seconds: float = 0.0
    # The originals' listing pass (None when a selection was checked one HEAD a row).
    originals: PassCounts | None = None
    problems: list[ImageProblem] = field(default_factory=list)
    orphan_keys: list[str] = field(default_factory=list)

    @property
    def still_wrong(self) -> int:
        """Rows found missing or corrupt by this run and not repaired (the lost among them)."""
        return self.missing + self.corrupt - self.repaired

    @property
    def clean(self) -> bool:
        """Nothing found wrong that is still wrong: every row intact (or repaired) and no orphan left."""
        return self.still_wrong == 0 and self.orphans == self.orphans_deleted

    @property
    def images_per_second(self) -> float:
        return self.checked / self.seconds if self.seconds else 0.0

    def add_problem(self, problem: ImageProblem) -> None:
        if len(self.problems) < MAX_REPORTED:
            self.problems.append(problem)

    def add_orphan(self, key: str) -> None:
        self.orphans += 1
        if len(self.orphan_keys) < MAX_REPORTED:
            self.orphan_keys.append(key)

    def as_log_fields(self) -> dict:
        return {
            "checked": self.checked,
            "intact": self.intact,
            "back_intact": self.back_intact,
            "missing": self.missing,
            "corrupt": self.corrupt,
            "repaired": self.repaired,
            "repair_failed": self.repair_failed,
            "lost": self.lost,
            "lost_before": self.lost_before,
            "orphans": self.orphans,
            "orphans_deleted": self.orphans_deleted,
            "orphans_too_recent": self.orphans_too_recent,
            "etags_recorded": self.etags_recorded,
            **(self.originals.as_log_fields("originals") if self.originals else {}),
            "seconds": round(self.seconds, 3),
            "images_per_second": round(self.images_per_second, 1),
        }
