"""The stored copy of an image as admin HTML: served by /stored-images/<pk>, never hot-linked from the source."""

from django.template.defaultfilters import truncatechars
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from chat.models import Image, ImageStatus


def stored_image_tag(image: Image | None, *, size: int) -> str:
    """An <img> of the stored copy fitted in size x size pixels, or a dash when there is none.

    With renditions, the browser picks the narrowest that fills the box at its pixel density
    (srcset/sizes): an 80 px thumbnail downloads the 320 px WebP, not a 3 MB original.
    """
    if image is None or image.status != ImageStatus.STORED or not image.file:
        return "–"
    width, height = _fit(image.width, image.height, size)
    # Prefetched by the admin's queryset (one query for a page of rows).
    renditions = list(image.renditions.all())
    if not renditions:
        return format_html(
            '<img src="{}" width="{}" height="{}" alt="{}" loading="lazy" decoding="async" style="object-fit: contain">',
            reverse("chat:stored_image", args=[image.pk]),
            width,
            height,
            truncatechars(image.title, 60),
        )
    srcset = format_html_join(
        ", ",
        "{} {}w",
        (
            (reverse("chat:stored_image_rendition", args=[image.pk, f"{rendition.sha256}.webp"]), rendition.width)
            for rendition in renditions
        ),
    )
    return format_html(
        '<img src="{}" srcset="{}" sizes="{}px" width="{}" height="{}" alt="{}" loading="lazy" decoding="async"'
        ' style="object-fit: contain">',
        reverse("chat:stored_image_rendition", args=[image.pk, f"{renditions[0].sha256}.webp"]),
        srcset,
        width,
        width,
        height,
        truncatechars(image.title, 60),
    )


def image_state_html(image: Image) -> str:
    """stored / pending / failed / missing / corrupt / lost, with the last error (the reason) when there is one."""
    colours = {
        ImageStatus.STORED: "#2e7d32",
        ImageStatus.PENDING: "#8a6d00",
        ImageStatus.FAILED: "#c62828",
        ImageStatus.MISSING: "#c62828",
        ImageStatus.CORRUPT: "#c62828",
        ImageStatus.LOST: "#6a1b9a",
    }
    label = format_html(
        '<strong style="color: {}">{}</strong>',
        colours.get(ImageStatus(image.status), "inherit"),
        image.get_status_display(),
    )
    if image.last_error:
        return format_html(
            '{}<br><small title="{}">{}</small>', label, image.last_error, truncatechars(image.last_error, 90)
        )
    return label


def _fit(width: int | None, height: int | None, size: int) -> tuple[int, int]:
    # Known dimensions reserve the right box before the image arrives (no layout shift).
    if not width or not height:
        return size, size
    scale = min(size / width, size / height, 1)
    return max(1, round(width * scale)), max(1, round(height * scale))
