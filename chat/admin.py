"""The admin, registered by each domain (Django imports this module when it autodiscovers admins)."""

from chat.broadcasts import admin as broadcasts_admin
from chat.images import admin as images_admin
from chat.messaging import admin as messaging_admin

__all__ = ["broadcasts_admin", "images_admin", "messaging_admin"]
