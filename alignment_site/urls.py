from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path

from trainer import views as trainer_views
from users.views import accounts, chat, stream

urlpatterns = [
    path("", accounts.home, name="home"),
    path("signup/", accounts.signup, name="signup"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("chat/", chat.chat_list, name="chat_list"),
    path("chat/new/", chat.chat_new, name="chat_new"),
    path("chat/<int:conversation_id>/", chat.chat_detail, name="chat_detail"),
    path("chat/<int:conversation_id>/send/", chat.chat_send, name="chat_send"),
    path("replies/<int:reply_id>/stream/", stream.reply_stream, name="reply_stream"),
    path("replies/<int:reply_id>/stop/", chat.reply_stop, name="reply_stop"),
    path("replies/<int:reply_id>/retry/", chat.reply_retry, name="reply_retry"),
    path("staff/status/", trainer_views.status, name="status"),
    path("admin/", admin.site.urls),
]
