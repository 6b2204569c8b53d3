"""core's tests use the app's users and messages as data: the app's own fixtures."""

from chat.tests.conftest import make_image, make_user

__all__ = ["make_image", "make_user"]
