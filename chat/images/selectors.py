"""Who may see stored images."""


def staff_may_view_images(user) -> bool:
    """Active staff who may see images or the messages that carry them."""
    return bool(
        user.is_active and user.is_staff and (user.has_perm("chat.view_image") or user.has_perm("chat.view_message"))
    )
