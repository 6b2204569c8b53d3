"""pru_app's Sentry event policy, sent by a real SDK over HTTP to the local ingest server."""

import threading

import pytest
import sentry_sdk
import structlog

from chat.broadcasts.sending import BROADCAST_OP
from chat.images.monitoring import FETCH_IMAGES_OP
from core.observability import sentry_job

from .conftest import exception_types, flush_and_wait

log = structlog.get_logger("chat.images.example")


class StorageDown(Exception):
    pass


class JobFailed(Exception):
    pass


def test_an_error_line_with_its_exception_becomes_one_event_with_the_log_fields(in_process_sentry):
    try:
        raise StorageDown("bucket unreachable")
    except StorageDown:
        log.exception("broadcast.failed", broadcast_id=7, chats=10, created=3)

    flush_and_wait(in_process_sentry, lambda server: server.events)
    [event] = in_process_sentry.events
    assert exception_types(event) == ["StorageDown"]
    assert event["level"] == "error" and event["message"] == "broadcast.failed"
    assert event["contexts"]["log"] == {"broadcast_id": 7, "chats": 10, "created": 3}
    assert event["tags"]["event"] == "broadcast.failed"


def test_an_exception_logged_then_wrapped_with_raise_from_is_reported_once(in_process_sentry):
    with pytest.raises(JobFailed), sentry_job(name="broadcast", op=BROADCAST_OP):
        try:
            raise StorageDown("bucket unreachable")
        except StorageDown as error:
            log.exception("broadcast.failed")
            raise JobFailed("broadcast 7 failed") from error

    flush_and_wait(in_process_sentry, lambda server: server.transactions)
    assert len(in_process_sentry.events) == 1
    assert "StorageDown" in exception_types(in_process_sentry.events[0])[-1]


def test_the_same_exception_captured_twice_is_one_event_and_two_different_ones_are_two(in_process_sentry):
    first = StorageDown("one")
    for _ in range(2):
        try:
            raise first
        except StorageDown:
            sentry_sdk.capture_exception()
            log.exception("image_fetch.aborted")
    try:
        raise StorageDown("another")
    except StorageDown:
        sentry_sdk.capture_exception()

    flush_and_wait(in_process_sentry, lambda server: len(server.events) >= 2)
    sentry_sdk.flush(timeout=2)
    assert len(in_process_sentry.events) == 2


def test_failed_photo_is_a_warning_event_and_other_warnings_are_breadcrumbs(in_process_sentry):
    log.warning("image_fetch.failed", source_url="http://photos.test/3.jpeg", reason="http 404")
    log.warning("image_fetch.retrying", source_url="http://photos.test/4.jpeg", attempt=2)
    log.info("image_fetch.stored", image_id=5, key="images/5.jpeg", bytes=100, ms=3)
    log.error("image_fetch.aborted", reason="photo api down")

    flush_and_wait(in_process_sentry, lambda server: len(server.events) >= 2)
    sentry_sdk.flush(timeout=2)
    failed, aborted = in_process_sentry.events
    assert failed["level"] == "warning" and failed["message"] == "image_fetch.failed"
    assert failed["contexts"]["log"] == {"source_url": "http://photos.test/3.jpeg", "reason": "http 404"}
    assert aborted["level"] == "error" and aborted["message"] == "image_fetch.aborted"
    crumbs = [crumb["message"] for crumb in aborted["breadcrumbs"]["values"]]
    # The failed photo is an event of its own, not also a crumb on the next one.
    assert crumbs == ["image_fetch.retrying", "image_fetch.stored"]
    retry_crumb = aborted["breadcrumbs"]["values"][0]
    assert retry_crumb["level"] == "warning" and retry_crumb["data"]["attempt"] == 2


def test_django_structlog_request_and_task_lines_are_left_to_the_framework_integrations(in_process_sentry):
    request_logger = structlog.get_logger("django_structlog.middlewares.request")
    task_logger = structlog.get_logger("django_structlog.celery.receivers")
    try:
        raise StorageDown("in a view")
    except StorageDown:
        request_logger.exception("request_failed", code=500, request="GET /x")
        task_logger.error("task_failed", error="boom")
    log.error("sentinel.failed")

    flush_and_wait(in_process_sentry, lambda server: server.events)
    sentry_sdk.flush(timeout=2)
    assert [event["message"] for event in in_process_sentry.events] == ["sentinel.failed"]


def test_events_carry_the_request_id_of_the_log_context(in_process_sentry):
    with structlog.contextvars.bound_contextvars(request_id="0123abcd", broadcast_id=9):
        log.error("broadcast.failed")

    flush_and_wait(in_process_sentry, lambda server: server.events)
    [event] = in_process_sentry.events
    assert event["tags"]["request_id"] == "0123abcd" and event["tags"]["broadcast_id"] == "9"


def test_failed_photos_logged_from_many_threads_keep_their_own_fields(in_process_sentry):
    barrier = threading.Barrier(8)

    def fail(number):
        barrier.wait()
        for attempt in range(5):
            log.warning(
                "image_fetch.failed",
                source_url=f"http://photos.test/{number}-{attempt}.jpeg",
                reason=f"reason {number}-{attempt}",
            )

    threads = [threading.Thread(target=fail, args=(number,)) for number in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    flush_and_wait(in_process_sentry, lambda server: len(server.events) >= 40)
    for event in in_process_sentry.events:
        fields = event["contexts"]["log"]
        assert fields["source_url"].endswith(fields["reason"].split(" ")[1] + ".jpeg")


def test_a_job_is_a_transaction_with_its_data_and_cron_check_ins_around_it(in_process_sentry):
    with sentry_job(name="fetch_images", op=FETCH_IMAGES_OP, monitor_slug="fetch-images") as job:
        with sentry_sdk.start_span(op="photo_api.page", name="GET page 0"):
            pass
        job.set_data("stored", 3)

    flush_and_wait(in_process_sentry, lambda server: server.transactions and len(server.check_ins) >= 2)
    [transaction] = in_process_sentry.transactions
    assert transaction["transaction"] == "fetch_images"
    assert transaction["contexts"]["trace"]["op"] == FETCH_IMAGES_OP
    assert transaction["contexts"]["trace"]["data"]["stored"] == 3
    assert [span["op"] for span in transaction["spans"]] == ["photo_api.page"]
    statuses = [(check_in["monitor_slug"], check_in["status"]) for check_in in in_process_sentry.check_ins]
    assert statuses == [("fetch-images", "in_progress"), ("fetch-images", "ok")]
    assert len({check_in["check_in_id"] for check_in in in_process_sentry.check_ins}) == 1
    assert in_process_sentry.events == []


def test_a_failing_job_reports_one_error_event_and_an_error_check_in(in_process_sentry):
    with pytest.raises(StorageDown), sentry_job(name="fetch_images", op=FETCH_IMAGES_OP, monitor_slug="fetch-images"):
        raise StorageDown("storage gone")

    flush_and_wait(in_process_sentry, lambda server: server.transactions and len(server.check_ins) >= 2)
    [event] = in_process_sentry.events
    [transaction] = in_process_sentry.transactions
    assert "StorageDown" in exception_types(event)[-1]
    assert event["contexts"]["trace"]["trace_id"] == transaction["contexts"]["trace"]["trace_id"]
    assert transaction["contexts"]["trace"]["status"] == "internal_error"
    assert [check_in["status"] for check_in in in_process_sentry.check_ins] == ["in_progress", "error"]


def test_a_job_inside_a_request_transaction_stays_in_its_trace(in_process_sentry):
    with (
        sentry_sdk.start_transaction(op="http.server", name="/admin/chat/image/", sampled=True) as request,
        sentry_job(name="broadcast", op=BROADCAST_OP),
    ):
        pass

    flush_and_wait(in_process_sentry, lambda server: len(server.transactions) >= 2)
    by_name = {transaction["transaction"]: transaction for transaction in in_process_sentry.transactions}
    broadcast_trace = by_name["broadcast"]["contexts"]["trace"]
    assert broadcast_trace["trace_id"] == request.trace_id
    assert broadcast_trace["parent_span_id"] == request.span_id
