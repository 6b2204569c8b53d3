"""/stored-images/<pk> and its renditions: a stored image for staff in the admin."""

from django.http import Http404, HttpResponseForbidden
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_GET

from chat.images.rendition_names import rendition_sha256_from_name
from chat.images.selectors import staff_may_view_images
from chat.images.serving import stored_image_response, stored_rendition_response
from chat.models import Image, ImageRendition, ImageStatus


@require_GET
def stored_image(request, pk: int):
    """The stored copy of an image; 403 without a staff session, 404 when nothing is stored."""
    if not staff_may_view_images(request.user):
        return HttpResponseForbidden("Stored images are for staff only.", content_type="text/plain")
    image = get_object_or_404(Image.objects.only("file", "content_type", "status"), pk=pk, status=ImageStatus.STORED)
    return stored_image_response(image)


@require_GET
def stored_image_rendition(request, pk: int, file_name: str):
    """A rendition (<sha256>.webp) of a stored image; 403 without a staff session, 404 when there is none such."""
    if not staff_may_view_images(request.user):
        return HttpResponseForbidden("Stored images are for staff only.", content_type="text/plain")
    sha256 = rendition_sha256_from_name(file_name)
    if sha256 is None:
        raise Http404
    rendition = get_object_or_404(
        ImageRendition.objects.only("file", "content_type"),
        image_id=pk,
        sha256=sha256,
        image__status=ImageStatus.STORED,
    )
    return stored_rendition_response(rendition)
