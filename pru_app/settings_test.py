"""Test settings: the production module with safe local defaults for anything unset."""

import os

os.environ.setdefault("DJANGO_SECRET_KEY", "test-only-key-not-a-secret-0123456789abcdefghijklmnopqrstuvwxyz")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/pru_app")
os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,testserver")
os.environ.setdefault("DJANGO_SECURE_SSL_REDIRECT", "false")
os.environ.setdefault("DJANGO_SESSION_COOKIE_SECURE", "false")
os.environ.setdefault("DJANGO_CSRF_COOKIE_SECURE", "false")
os.environ.setdefault("IMAGE_FETCH_ALLOW_PRIVATE_NETWORKS", "true")
os.environ.setdefault("LOG_FORMAT", "json")

from pru_app.settings import *

# Hashing speed is not what these tests measure.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}
