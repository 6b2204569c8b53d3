"""Downloading untrusted images from the local API server: limits, formats, bombs, retries, address refusals."""

import hashlib
import io
import socket
import time

import pytest
from PIL import Image
from requests_hardened.ip_filter import InvalidIPAddress, filter_host

from chat.images.download import DecompressionBomb, DownloadFailed, ImageRejected, ImageTooLarge, image_download
from core.outbound_http import OutboundPolicy, outbound_session

LIMITS = {"max_bytes": 200_000, "max_pixels": 50_000_000}


def download(url, **policy):
    policy = {"allow_private_networks": True, "retries": 2, "backoff_factor": 0.01, **policy}
    return image_download(session=outbound_session(OutboundPolicy(**policy)), url=url, **LIMITS)


def test_a_jpeg_is_downloaded_hashed_and_measured(photo_api):
    image = download(photo_api.image_url(7))
    expected = photo_api.image_bytes(7)
    assert image.file.read() == expected
    assert image.sha256 == hashlib.sha256(expected).hexdigest()
    assert (image.byte_size, image.content_type, image.extension) == (len(expected), "image/jpeg", "jpg")
    assert (image.width, image.height) == Image.open(io.BytesIO(expected)).size


def test_an_html_page_is_not_an_image(photo_api):
    photo_api.set_photo_fault(3, "not-image")
    with pytest.raises(ImageRejected, match="not an image"):
        download(photo_api.image_url(3))


def test_a_missing_image_is_a_failed_download_with_its_status(photo_api):
    photo_api.set_photo_fault(3, "missing")
    with pytest.raises(DownloadFailed, match="HTTP 404"):
        download(photo_api.image_url(3))


def test_an_oversized_body_is_refused_on_its_content_length_before_reading_it(photo_api):
    photo_api.set_photo_fault(3, "oversized", size=5_000_000)
    started = time.monotonic()
    with pytest.raises(ImageTooLarge, match="Content-Length 5000000 exceeds 200000"):
        download(photo_api.image_url(3))
    assert time.monotonic() - started < 2


def test_an_oversized_body_without_content_length_is_cut_off_while_streaming(photo_api):
    photo_api.set_photo_fault(3, "oversized-chunked", size=5_000_000)
    with pytest.raises(ImageTooLarge, match="more than 200000 bytes"):
        download(photo_api.image_url(3))


def test_a_decompression_bomb_raises_instead_of_warning(photo_api):
    photo_api.set_photo_fault(3, "bomb", width=8000, height=8000)  # a few KB of PNG, 64 M pixels
    with pytest.raises(DecompressionBomb, match="8000x8000 = 64000000 pixels exceeds 50000000"):
        download(photo_api.image_url(3))


def test_formats_outside_jpeg_png_webp_gif_are_refused(photo_api, tmp_path):
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="BMP")
    bmp = buffer.getvalue()
    photo_api.image_bytes = lambda photo_id: bmp
    with pytest.raises(ImageRejected, match="not an image"):
        download(photo_api.image_url(1))


@pytest.mark.parametrize(
    "pillow_format, content_type", [("PNG", "image/png"), ("WEBP", "image/webp"), ("GIF", "image/gif")]
)
def test_png_webp_and_gif_are_kept_with_their_own_content_type(photo_api, pillow_format, content_type):
    buffer = io.BytesIO()
    Image.new("RGB", (20, 10), "red").save(buffer, format=pillow_format)
    photo_api.image_bytes = lambda photo_id: buffer.getvalue()
    image = download(photo_api.image_url(1))
    assert (image.content_type, image.width, image.height) == (content_type, 20, 10)


def test_a_truncated_png_is_refused(photo_api):
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "blue").save(buffer, format="PNG")
    photo_api.image_bytes = lambda photo_id: buffer.getvalue()[:-30]
    with pytest.raises(ImageRejected, match="corrupt PNG"):
        download(photo_api.image_url(1))


def test_server_errors_are_retried_with_backoff_then_the_image_comes_through(photo_api):
    photo_api.set_photo_fault(4, "server-error", times=2, status=503)
    image = download(photo_api.image_url(4))
    assert image.byte_size == len(photo_api.image_bytes(4))
    assert photo_api.image_requests().count("/public/sample-photos/4.jpeg") == 3


def test_an_image_that_keeps_failing_is_a_failed_download_after_the_retries(photo_api):
    photo_api.set_photo_fault(4, "server-error", times=10, status=500)
    with pytest.raises(DownloadFailed, match="HTTP 500"):
        download(photo_api.image_url(4))
    assert len(photo_api.image_requests()) == 3


def test_redirects_are_followed(photo_api):
    photo_api.set_photo_fault(5, "redirect")
    assert download(photo_api.image_url(5)).byte_size == len(photo_api.image_bytes(5))


@pytest.mark.parametrize(
    "url", ["ftp://127.0.0.1/x.jpeg", "file:///etc/passwd", "http:///nohost.jpeg", "data:image/png;base64,AA"]
)
def test_only_http_and_https_urls_are_fetched(url):
    with pytest.raises(DownloadFailed, match=r"not allowed|no host"):
        download(url)


def test_a_loopback_address_is_refused_with_default_settings_before_any_connection():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.3)
    port = listener.getsockname()[1]
    try:
        with pytest.raises(DownloadFailed, match=r"refused: 127\.0\.0\.1 is a private"):
            download(f"http://127.0.0.1:{port}/1.jpeg", allow_private_networks=False)
        with pytest.raises(TimeoutError):
            listener.accept()  # nobody ever connected
    finally:
        listener.close()


def test_a_name_that_resolves_to_loopback_is_refused_after_dns_resolution(photo_api):
    url = photo_api.image_url(1).replace("127.0.0.1", "localhost")
    with pytest.raises(DownloadFailed, match="refused"):
        download(url, allow_private_networks=False)
    assert photo_api.requests() == []


@pytest.mark.parametrize(
    "location",
    [
        "http://10.20.30.40:8080/x.jpeg",
        "http://169.254.169.254/latest/meta-data/",
        "http://192.168.1.1/x.jpeg",
        "http://[::ffff:172.16.0.1]/x.jpeg",
        "http://100.64.0.1/x.jpeg",
        "http://240.0.0.1/x.jpeg",
    ],
)
def test_a_redirect_to_a_private_address_is_refused_at_the_filter_before_connecting(photo_api, location):
    # Loopback allowed (requests-hardened's own switch) so the first hop reaches the local
    # server; the redirect target is refused by the filter on its resolved address.
    photo_api.set_photo_fault(6, "redirect-to", location=location)
    started = time.monotonic()
    with pytest.raises(DownloadFailed, match="refused"):
        download(photo_api.image_url(6), allow_private_networks=False, allow_loopback=True, connect_timeout=5)
    # Connecting to an unroutable address would take the whole connect timeout.
    assert time.monotonic() - started < 2
    assert photo_api.image_requests() == ["/public/sample-photos/6.jpeg"]


@pytest.mark.parametrize(
    "host", ["10.0.0.1", "172.31.255.255", "192.168.0.10", "169.254.169.254", "0.0.0.0", "::1", "fd00::1"]
)
def test_the_ip_filter_refuses_private_link_local_and_reserved_addresses(host):
    with pytest.raises(InvalidIPAddress):
        filter_host(host, 80, allow_loopback=False)


def test_the_ip_filter_lets_a_public_address_through():
    assert filter_host("93.184.216.34", 80, allow_loopback=False) == "93.184.216.34"


def test_pillows_own_bomb_limit_is_an_error_not_a_warning_even_above_our_cap(photo_api):
    photo_api.set_photo_fault(3, "bomb")  # 144 M pixels: above Pillow's 89 M warning threshold
    session = outbound_session(OutboundPolicy(allow_private_networks=True))
    with pytest.raises(DecompressionBomb, match="could be decompression bomb"):
        image_download(session=session, url=photo_api.image_url(3), max_bytes=200_000, max_pixels=10**9)
