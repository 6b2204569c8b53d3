"""The photo API client against the local API server over HTTP: validation at the edge, retries, refusals."""

import pytest

from chat.images.photo_api import PhotoApiBadResponse, PhotoApiClient, PhotoApiUnavailable, parse_page
from core.outbound_http import OutboundPolicy, outbound_session

FAST_RETRIES = {"retries": 2, "backoff_factor": 0.01}


def client_for(photo_api, **policy):
    policy = {"allow_private_networks": True, **FAST_RETRIES, **policy}
    return PhotoApiClient(list_url=photo_api.url, session=outbound_session(OutboundPolicy(**policy)))


def test_a_page_is_parsed_into_photos_with_their_fields(photo_api):
    page = client_for(photo_api).page(offset=10, limit=5)
    assert [photo.photo_id for photo in page.photos] == [11, 12, 13, 14, 15]
    first = page.photos[0]
    assert first.url == photo_api.image_url(11)
    assert first.title == "Photo number 11" and first.description.startswith("A generated test photo")
    assert first.user_id == 11 % 40 + 1
    assert page.total_photos == 30 and page.rejected == []


def test_a_page_past_the_end_is_empty(photo_api):
    assert client_for(photo_api).page(offset=30, limit=10).entry_count == 0


def test_missing_or_null_fields_become_empty_and_are_not_trusted_as_text(photo_api):
    photo_api.photo_overrides[2] = {"title": None, "description": 42, "user": "seven"}
    photo_api.photo_overrides[3] = {"title": "x" * 900}
    photos = client_for(photo_api).page(offset=0, limit=3).photos
    assert (photos[1].title, photos[1].description, photos[1].user_id) == ("", "", None)
    assert len(photos[2].title) == 500


def test_entries_without_a_usable_id_or_url_are_rejected_with_a_reason_and_the_rest_kept(photo_api):
    photo_api.photo_overrides[1] = {"url": "file:///etc/passwd"}
    photo_api.photo_overrides[2] = {"id": None}
    photo_api.photo_overrides[3] = {"url": "javascript:alert(1)"}
    photo_api.photo_overrides[4] = {"url": None}
    page = client_for(photo_api).page(offset=0, limit=6)
    assert [photo.photo_id for photo in page.photos] == [5, 6]
    reasons = [entry.reason for entry in page.rejected]
    assert "scheme 'file' is not allowed" in reasons[0]
    assert "invalid id None" in reasons[1]
    assert "scheme 'javascript' is not allowed" in reasons[2]
    assert "URL is not a string" in reasons[3]
    assert page.entry_count == 6


def test_ids_too_large_for_the_database_and_urls_with_control_characters_are_rejected(photo_api):
    photo_api.photo_overrides[1] = {"id": 2**64}
    photo_api.photo_overrides[2] = {"url": "http://photos.example/a\x00b.jpeg"}
    photo_api.photo_overrides[3] = {"url": "http://photos.example/a b.jpeg"}
    photo_api.photo_overrides[4] = {"user": -(2**70)}
    page = client_for(photo_api).page(offset=0, limit=4)
    assert [photo.photo_id for photo in page.photos] == [4] and page.photos[0].user_id is None
    assert "invalid id" in page.rejected[0].reason
    assert all("spaces or control characters" in entry.reason for entry in page.rejected[1:])


def test_a_page_of_garbage_is_a_bad_response_naming_what_came_back(photo_api):
    photo_api.set_page_fault(0, "garbage")
    with pytest.raises(PhotoApiBadResponse, match=r"not JSON .*Gateway says hi"):
        client_for(photo_api).page(offset=0, limit=10)


def test_a_page_without_photos_is_a_bad_response(photo_api):
    photo_api.set_page_fault(0, "missing-fields")
    with pytest.raises(PhotoApiBadResponse, match="no 'photos' list"):
        client_for(photo_api).page(offset=0, limit=10)


@pytest.mark.parametrize(
    "body, message",
    [
        ([1, 2], "is a JSON list, not an object"),
        ({"success": False, "message": "quota"}, "API says 'quota'"),
        ({"photos": {"id": 1}}, "no 'photos' list"),
    ],
)
def test_json_that_is_not_a_page_is_refused(body, message):
    with pytest.raises(PhotoApiBadResponse, match=message):
        parse_page(body, offset=0, limit=10)


def test_server_errors_are_retried_then_the_page_comes_through(photo_api):
    photo_api.set_page_fault(0, "server-error", times=2, status=503)
    page = client_for(photo_api).page(offset=0, limit=3)
    assert len(page.photos) == 3
    assert len(photo_api.page_requests()) == 3


def test_a_page_that_keeps_failing_is_unavailable_after_the_retries(photo_api):
    photo_api.set_page_fault(0, "server-error", status=502)
    with pytest.raises(PhotoApiUnavailable, match="HTTP 502"):
        client_for(photo_api).page(offset=0, limit=3)
    assert len(photo_api.page_requests()) == 1 + FAST_RETRIES["retries"]


def test_too_many_requests_is_retried(photo_api):
    photo_api.set_page_fault(0, "server-error", times=1, status=429)
    assert len(client_for(photo_api).page(offset=0, limit=2).photos) == 2


def test_an_api_on_a_private_address_is_refused_by_default_before_any_request(photo_api):
    with pytest.raises(PhotoApiUnavailable, match="refused to connect to a private address"):
        client_for(photo_api, allow_private_networks=False).page(offset=0, limit=2)
    assert photo_api.requests() == []


def test_nothing_listens_means_unavailable_not_a_crash():
    from devservers.s3 import free_port

    session = outbound_session(OutboundPolicy(allow_private_networks=True, retries=0, connect_timeout=1))
    client = PhotoApiClient(list_url=f"http://127.0.0.1:{free_port()}/v1/sample-data/photos", session=session)
    with pytest.raises(PhotoApiUnavailable, match="ConnectionError"):
        client.page(offset=0, limit=1)


def test_a_page_larger_than_the_limit_is_refused_without_reading_it_all(photo_api, monkeypatch):
    import chat.images.photo_api

    monkeypatch.setattr(chat.images.photo_api, "MAX_PAGE_BYTES", 2_000)
    with pytest.raises(PhotoApiBadResponse, match="larger than 2000 bytes"):
        client_for(photo_api).page(offset=0, limit=30)
    assert len(client_for(photo_api).page(offset=0, limit=2).photos) == 2
