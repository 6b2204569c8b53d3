from django.contrib import admin
from django.template.defaultfilters import truncatechars

from chat.admin.image_preview import stored_image_tag
from chat.admin.pagination import EstimatedCountPaginator
from chat.models import Message


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["id", "chat_user", "text_excerpt", "image_thumbnail", "image", "created_at"]
    list_select_related = ["chat__user", "image"]
    list_filter = [("image", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["chat__user__username", "text"]
    raw_id_fields = ["chat", "image"]
    readonly_fields = ["image_preview", "created_at"]
    paginator = EstimatedCountPaginator
    show_full_result_count = False

    @admin.display(description="User", ordering="chat__user__username")
    def chat_user(self, message):
        return message.chat.user

    @admin.display(description="Text")
    def text_excerpt(self, message):
        return truncatechars(message.text, 80)

    @admin.display(description="Picture")
    def image_thumbnail(self, message):
        # message.image comes with the row (list_select_related): no query per row.
        return stored_image_tag(message.image, size=60)

    @admin.display(description="Stored copy")
    def image_preview(self, message):
        return stored_image_tag(message.image, size=480)
