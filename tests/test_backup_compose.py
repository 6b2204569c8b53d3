"""Compose runs the backup and the restore as one-shot services behind their profiles, with the same commands."""

import yaml

from deploy.local_stack import PROJECT_ROOT

COMPOSE = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())["services"]


def test_backup_and_restore_are_one_shot_services_only_in_their_profiles():
    for name, profile in (
        ("backup-database", "backup"),
        ("backup", "backup"),
        ("restore", "restore"),
        ("restore-database", "restore"),
    ):
        service = COMPOSE[name]
        assert service["profiles"] == [profile] and service["restart"] == "no", name
    # Nothing of it starts with a plain `docker compose up`.
    assert all("profiles" not in COMPOSE[name] for name in ("web", "worker", "db", "minio"))
    assert COMPOSE["backup"]["depends_on"]["backup-database"] == {"condition": "service_completed_successfully"}
    assert COMPOSE["backup"]["command"][:3] == ["python", "manage.py", "create_backup"]
    assert "--existing-dump" in COMPOSE["backup"]["command"]
    assert COMPOSE["restore"]["command"][:3] == ["python", "manage.py", "restore_backup"]
    # The dump is made by the server's own major version, never an older client.
    assert COMPOSE["backup-database"]["image"] == COMPOSE["db"]["image"] == COMPOSE["restore-database"]["image"]
    for script in ("dump-database", "restore-database"):
        text = (PROJECT_ROOT / "deploy" / "compose" / "backup" / script).read_text()
        assert "set -o errexit" in text and 'if [ -z "${BACKUP_NAME:-}" ]' in text
