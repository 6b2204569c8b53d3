from chat.admin import broadcast_admin, chat_admin, image_admin, message_admin, token_admin  # noqa: F401
