from django.contrib import admin

from users.models import Conversation, Profile, Reply, ReplySource, StudyText, SyntheticPersona, Turn


class TurnInline(admin.TabularInline):
    model = Turn
    extra = 0
    fields = ("index", "user_message")


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ("id", "user", "kind", "title", "prism_id", "updated_at", "ended_at")
    list_filter = ("kind",)
    search_fields = ("title", "user__username", "prism_id")
    list_select_related = ("user",)
    raw_id_fields = ("user",)
    inlines = [TurnInline]


class ReplyInline(admin.TabularInline):
    model = Reply
    extra = 0
    fields = ("position", "source", "status", "score", "chosen", "content")


@admin.register(Turn)
class TurnAdmin(admin.ModelAdmin):
    list_display = ("id", "conversation", "index", "tied", "created_at")
    raw_id_fields = ("conversation",)
    inlines = [ReplyInline]


@admin.register(Reply)
class ReplyAdmin(admin.ModelAdmin):
    list_display = ("id", "turn", "position", "source", "status", "score", "chosen", "token_count")
    list_filter = ("status", "source", "chosen")
    raw_id_fields = ("turn",)


@admin.register(ReplySource)
class ReplySourceAdmin(admin.ModelAdmin):
    list_display = ("name", "active", "temperature", "top_p", "max_new_tokens", "model_provider")
    list_editable = ("active",)


@admin.register(Profile)
class ProfileAdmin(admin.ModelAdmin):
    list_display = ("user", "prism_user_id", "completed_at", "lm_familiarity", "age", "gender")
    search_fields = ("user__username", "prism_user_id")
    list_select_related = ("user",)
    raw_id_fields = ("user",)


@admin.register(SyntheticPersona)
class SyntheticPersonaAdmin(admin.ModelAdmin):
    list_display = ("user", "population", "group", "seed", "created_at")
    list_filter = ("population", "group")
    list_select_related = ("user",)
    raw_id_fields = ("user",)


@admin.register(StudyText)
class StudyTextAdmin(admin.ModelAdmin):
    """One row: what participants read before they take part (Markdown)."""

    list_display = ("__str__", "updated_at")

    def has_add_permission(self, request):
        return not StudyText.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False
