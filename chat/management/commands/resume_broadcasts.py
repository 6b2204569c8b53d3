"""Finish broadcasts a crash or an outage left unfinished: `manage.py resume_broadcasts [--id N]`."""

from django.core.management.base import BaseCommand, CommandError

from chat.broadcasts.sending import BroadcastError, broadcast_resume, broadcasts_unfinished
from chat.models import Broadcast


class Command(BaseCommand):
    help = (
        "Run again the failed chunks and the chunks whose runner was lost of every unfinished broadcast "
        "(or of --id N): queued for the workers when a broker is configured, in this process otherwise."
    )

    def add_arguments(self, parser):
        parser.add_argument("--id", type=int, dest="broadcast_id", help="Resume this broadcast only.")

    def handle(self, *args, broadcast_id=None, **options):
        if broadcast_id is not None:
            try:
                broadcasts = [Broadcast.objects.get(pk=broadcast_id)]
            except Broadcast.DoesNotExist:
                raise CommandError(f"There is no broadcast #{broadcast_id}.") from None
        else:
            broadcasts = list(broadcasts_unfinished())
        if not broadcasts:
            self.stdout.write("No unfinished broadcast.")
            return
        unfinished = []
        for broadcast in broadcasts:
            try:
                outcome = broadcast_resume(broadcast=broadcast)
            except BroadcastError as error:
                unfinished.append(broadcast.pk)
                self.stderr.write(str(error))
                continue
            resumed = outcome.broadcast
            if outcome.broker_unavailable:
                unfinished.append(resumed.pk)
                self.stderr.write(
                    f"Broadcast #{resumed.pk}: the broker is unavailable; run this again once it is back."
                )
            elif outcome.queued:
                self.stdout.write(f"Broadcast #{resumed.pk}: queued again for the workers.")
            else:
                self.stdout.write(
                    f"Broadcast #{resumed.pk}: {resumed.status}, {resumed.created_count} messages created, "
                    f"{resumed.skipped_count} already there, {resumed.chat_count} chats."
                )
                if resumed.status != "succeeded":
                    unfinished.append(resumed.pk)
        if unfinished:
            raise CommandError(f"Not finished: {', '.join(f'#{pk}' for pk in unfinished)}.")
