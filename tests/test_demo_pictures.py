"""The local photo API's demo pictures: recognisable, deterministic per id, realistic in size, cached; faults kept."""

import io

import requests
from PIL import Image

from devservers import pictures
from devservers.photo_api import PhotoApiServer


def test_a_picture_is_the_same_for_an_id_and_differs_between_ids(tmp_path, monkeypatch):
    monkeypatch.setenv("DEMO_PICTURE_CACHE", str(tmp_path))
    first = pictures.draw_picture(7, width=320)
    assert pictures.draw_picture(7, width=320) == first
    assert pictures.draw_picture(8, width=320) != first
    decoded = Image.open(io.BytesIO(first))
    assert (decoded.format, decoded.size) == ("JPEG", (320, 213))
    # Not noise: a few flat colours and the number, so neighbouring pixels mostly agree.
    grey = decoded.convert("L")
    steps = [abs(grey.getpixel((x, 100)) - grey.getpixel((x + 1, 100))) for x in range(300)]
    assert sorted(steps)[len(steps) // 2] <= 12


def test_the_demo_size_is_a_realistic_photo(tmp_path, monkeypatch):
    monkeypatch.setenv("DEMO_PICTURE_CACHE", str(tmp_path))
    data = pictures.draw_picture(1, width=pictures.DEMO_WIDTH)
    assert 1_000_000 <= len(data) <= 3_000_000
    assert Image.open(io.BytesIO(data)).size[0] >= 2000


def test_pictures_are_cached_on_disk_and_a_damaged_file_is_drawn_again(tmp_path, monkeypatch):
    monkeypatch.setenv("DEMO_PICTURE_CACHE", str(tmp_path))
    monkeypatch.setattr(pictures, "_memory", {})
    data = pictures.picture_jpeg(3, width=200)
    [cached] = tmp_path.glob("*.jpg")
    assert cached.read_bytes() == data
    cached.write_bytes(data[:100])
    monkeypatch.setattr(pictures, "_memory", {})
    assert pictures.picture_jpeg(3, width=200) == data
    assert cached.read_bytes() == data


def test_the_photo_api_serves_drawn_pictures_and_keeps_its_faults(tmp_path, monkeypatch):
    monkeypatch.setenv("DEMO_PICTURE_CACHE", str(tmp_path))
    with PhotoApiServer(photos=3, picture_width=240) as server:
        served = requests.get(server.image_url(2), timeout=10)
        assert served.status_code == 200 and served.content == pictures.picture_jpeg(2, width=240)
        server.set_photo_fault(3, "not-image")
        assert requests.get(server.image_url(3), timeout=10).content.startswith(b"<html>")
        server.set_photo_fault(1, "missing")
        assert requests.get(server.image_url(1), timeout=10).status_code == 404
