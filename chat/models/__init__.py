"""The chat app's models, one module per domain; tables and migrations are the app's as before."""

from chat.models.broadcasts import (
    UNFINISHED_BROADCAST_STATUSES,
    Broadcast,
    BroadcastChunk,
    BroadcastStatus,
    ChunkStatus,
)
from chat.models.images import VERIFIABLE_STATUSES, Image, ImageRendition, ImageStatus, RenditionsStatus
from chat.models.messaging import Chat, Message

__all__ = [
    "UNFINISHED_BROADCAST_STATUSES",
    "VERIFIABLE_STATUSES",
    "Broadcast",
    "BroadcastChunk",
    "BroadcastStatus",
    "Chat",
    "ChunkStatus",
    "Image",
    "ImageRendition",
    "ImageStatus",
    "Message",
    "RenditionsStatus",
]
