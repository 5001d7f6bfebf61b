from django.contrib import admin

from users.models import Conversation, Reply, Turn


class TurnInline(admin.TabularInline):
    model = Turn
    extra = 0
    fields = ("index", "user_message")


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ("id", "user", "kind", "title", "updated_at", "ended_at")
    list_filter = ("kind",)
    search_fields = ("title", "user__username")
    inlines = [TurnInline]


class ReplyInline(admin.TabularInline):
    model = Reply
    extra = 0
    fields = ("position", "source", "status", "score", "chosen", "content")


@admin.register(Turn)
class TurnAdmin(admin.ModelAdmin):
    list_display = ("id", "conversation", "index", "created_at")
    inlines = [ReplyInline]


@admin.register(Reply)
class ReplyAdmin(admin.ModelAdmin):
    list_display = ("id", "turn", "position", "source", "status", "score", "chosen", "token_count")
    list_filter = ("status", "source", "chosen")
