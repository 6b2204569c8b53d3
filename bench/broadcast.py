#!/usr/bin/env python
"""Benchmark: the original per-pair loop versus the set-based broadcast service, on PostgreSQL.

Usage: .venv/bin/python bench/broadcast.py [--original-chats 10000] [--chats 10000 100000] [--images 10]

Creates (and drops) its own database, pru_bench by default. Prints messages/second, the growth of the
process's resident memory during each broadcast, and the ratio to the original in the same run.
"""

import argparse
import os
import sys
import threading
import time
from pathlib import Path

import psutil

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--original-chats", type=int, default=10_000, help="chats for the original loop (0 skips it)")
    parser.add_argument("--chats", type=int, nargs="+", default=[10_000, 100_000], help="chat counts for the service")
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--database", default="pru_bench")
    parser.add_argument("--server", default="postgres://postgres@127.0.0.1:5432")
    return parser.parse_args()


class PeakRss:
    """Samples the process's RSS in a thread; growth = peak during the block minus RSS before it."""

    def __init__(self, interval=0.005):
        self.process = psutil.Process()
        self.interval = interval

    def __enter__(self):
        self.before = self.process.memory_info().rss
        self.peak = self.before
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(self.interval)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)

    @property
    def growth_mb(self):
        return (self.peak - self.before) / 1024 / 1024


def recreate_database(server, name):
    import psycopg2

    admin = psycopg2.connect(f"{server}/postgres")
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cursor.execute(f'CREATE DATABASE "{name}"')
    admin.close()


def seed(*, chats, images):
    """chats users (each with a chat) and images images, in set-based SQL."""
    from django.db import connection

    from chat.models import Image

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE chat_message, chat_broadcast_images, chat_broadcast, chat_chat, chat_image, auth_user CASCADE")
        cursor.execute(
            """
            INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email, is_staff, is_active, date_joined)
            SELECT '!', false, 'bench' || n, '', '', '', false, true, now() FROM generate_series(1, %s) AS n
            """,
            [chats],
        )
        cursor.execute("INSERT INTO chat_chat (user_id, created_at) SELECT id, now() FROM auth_user")
        cursor.execute("ANALYZE")
    Image.objects.bulk_create(
        Image(photo_id=n, source_url=f"https://photos.example/{n}.jpeg", title=f"Photo {n}", description=f"A photo, number {n}.")
        for n in range(1, images + 1)
    )
    return list(Image.objects.order_by("pk").values_list("pk", flat=True))


def original_broadcast(image_ids):
    """The original admin action: two queries per chat × image pair."""
    from chat.models import Chat, Image, Message

    images = list(Image.objects.filter(pk__in=image_ids))
    created = 0
    for chat in Chat.objects.all():
        for image in images:
            if not Message.objects.filter(chat=chat, image=image).exists():
                Message.objects.create(chat=chat, image=image, text=image.description)
                created += 1
    return created


def service_broadcast(image_ids):
    from chat.services.broadcasts import broadcast_images_to_all_chats

    return broadcast_images_to_all_chats(image_ids=image_ids).created_count


def measure(label, function, image_ids, expected):
    with PeakRss() as memory:
        started = time.perf_counter()
        created = function(image_ids)
        seconds = time.perf_counter() - started
    assert created == expected, f"{label}: created {created}, expected {expected}"
    rate = created / seconds
    print(f"{label:<34} {created:>10,} msgs {seconds:>9.2f} s {rate:>12,.0f} msgs/s  RSS +{memory.growth_mb:6.1f} MB", flush=True)
    return rate


def main():
    args = parse_args()
    os.environ["DATABASE_URL"] = f"{args.server}/{args.database}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pru_app.settings_test")
    os.environ["LOG_LEVEL"] = "WARNING"
    recreate_database(args.server, args.database)

    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    print(f"PostgreSQL database {args.database}; {args.images} images; constraints and foreign keys in place.\n")

    baseline = None
    if args.original_chats:
        image_ids = seed(chats=args.original_chats, images=args.images)
        baseline = measure(f"original loop, {args.original_chats:,} chats", original_broadcast, image_ids, args.original_chats * args.images)
    for chats in args.chats:
        image_ids = seed(chats=chats, images=args.images)
        rate = measure(f"service, {chats:,} chats", service_broadcast, image_ids, chats * args.images)
        if baseline:
            print(f"{'':<34} {rate / baseline:,.0f}x the original loop", flush=True)
        again_started = time.perf_counter()
        assert service_broadcast(image_ids) == 0
        print(f"{'':<34} re-send (all skipped) {time.perf_counter() - again_started:.2f} s", flush=True)

    from django.db import connections

    connections.close_all()
    recreate_database(args.server, args.database)


if __name__ == "__main__":
    main()
