"""Every page, grouped by the package that serves it; a URL's name is its view function's name."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path

from trainer.views import onboarding, personalization, queue, runs, status
from users.accounts import views as accounts
from users.accounts.forms import AdminLoginForm, LoginForm
from users.chat.views import chat, compare
from users.collection import views as collect
from users.conversations import relay
from users.conversations import views as replies
from users.dataset import views as dataset
from users.newcomer import views as newcomer
from users.survey import views as survey

admin.site.login_form = AdminLoginForm  # the admin's login is throttled like the site's

urlpatterns = [
    # accounts
    path("", accounts.home, name="home"),
    path("signup/", accounts.signup, name="signup"),
    path("study/", accounts.study_intro, name="study_intro"),
    path("login/", auth_views.LoginView.as_view(authentication_form=LoginForm), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("survey/", survey.survey, name="survey"),
    path("welcome/questions/", newcomer.onboarding, name="onboarding"),
    path("welcome/questions/answer/", newcomer.onboarding_answer, name="onboarding_answer"),
    path("me/data/", accounts.my_data, name="my_data"),
    # the participant's chat, blind comparisons and the side panel
    path("chat/", chat.chat_list, name="chat_list"),
    path("chat/new/", chat.chat_new, name="chat_new"),
    path("chat/<int:conversation_id>/", chat.chat_detail, name="chat_detail"),
    path("chat/<int:conversation_id>/send/", chat.chat_send, name="chat_send"),
    path("chat/<int:conversation_id>/rename/", chat.chat_rename, name="chat_rename"),
    path("chat/<int:conversation_id>/delete/", chat.chat_delete, name="chat_delete"),
    path("replies/<int:reply_id>/rate/", chat.reply_rate, name="reply_rate"),
    path("replies/<int:reply_id>/regenerate/", chat.reply_regenerate, name="reply_regenerate"),
    path("me/panel/", chat.personal_panel, name="personal_panel"),
    path("compare/", compare.compare_home, name="compare_home"),
    path("compare/new/", compare.compare_start, name="compare_start"),
    path("compare/<int:conversation_id>/", compare.compare_detail, name="compare_detail"),
    path("compare/<int:conversation_id>/rate/", compare.compare_rate, name="compare_rate"),
    # any reply: its token stream, stop and retry
    path("replies/<int:reply_id>/stream/", relay.reply_stream, name="reply_stream"),
    path("replies/<int:reply_id>/stop/", replies.reply_stop, name="reply_stop"),
    path("replies/<int:reply_id>/retry/", replies.reply_retry, name="reply_retry"),
    # PRISM-style collection
    path("collect/", collect.collect_home, name="collect_home"),
    path("collect/new/", collect.collect_start, name="collect_start"),
    path("collect/<int:conversation_id>/", collect.collect_detail, name="collect_detail"),
    path("collect/<int:conversation_id>/rate/", collect.collect_rate, name="collect_rate"),
    path("collect/<int:conversation_id>/send/", collect.collect_send, name="collect_send"),
    path("collect/reply/<int:reply_id>/continue/", collect.collect_continue, name="collect_continue"),
    path("collect/<int:conversation_id>/end/", collect.collect_end, name="collect_end"),
    # data downloads and the staff dataset pages
    path("data/<str:name>.jsonl", dataset.data_export, name="data_export"),
    path("staff/dataset/", dataset.dataset, name="dataset"),
    path("staff/dataset/import/", dataset.dataset_import, name="dataset_import"),
    path("staff/dataset/conversations/", dataset.browse_conversations, name="browse_conversations"),
    path("staff/dataset/pairs/", dataset.browse_pairs, name="browse_pairs"),
    path("staff/dataset/raters/", dataset.raters, name="raters"),
    # training runs and versions (staff)
    path("staff/status/", status.status, name="status"),
    path("staff/queue/", queue.queue, name="queue"),
    path("staff/runs/", runs.run_list, name="run_list"),
    path("staff/runs/new/", runs.run_new, name="run_new"),
    path("staff/runs/preview/", runs.run_preview, name="run_preview"),
    path("staff/runs/compare/", runs.run_compare, name="run_compare"),
    path("staff/runs/<int:run_id>/", runs.run_detail, name="run_detail"),
    path("staff/runs/<int:run_id>/progress/", runs.run_progress, name="run_progress"),
    path("staff/runs/<int:run_id>/metrics/", runs.run_metrics, name="run_metrics"),
    path("staff/runs/<int:run_id>/cancel/", runs.run_cancel, name="run_cancel"),
    path("staff/runs/<int:run_id>/resume/", runs.run_resume, name="run_resume"),
    path("staff/runs/<int:run_id>/activate/", runs.run_activate, name="run_activate"),
    path("staff/runs/<int:run_id>/delete/", runs.run_delete, name="run_delete"),
    path("staff/runs/<int:run_id>/download/prepare/", runs.run_download_prepare, name="run_download_prepare"),
    path("staff/runs/<int:run_id>/download/panel/", runs.run_download_panel, name="run_download_panel"),
    path("staff/runs/<int:run_id>/download/", runs.run_download, name="run_download"),
    path("staff/runs/<int:run_id>/notes/", runs.run_notes, name="run_notes"),
    path("staff/runs/<int:run_id>/onboarding/", onboarding.run_onboarding_panel, name="run_onboarding_panel"),
    path("staff/runs/<int:run_id>/onboarding/prepare/", onboarding.run_onboarding_prepare,
         name="run_onboarding_prepare"),
    path("staff/runs/<int:run_id>/evaluate/", personalization.run_evaluate, name="run_evaluate"),
    path("staff/runs/<int:run_id>/personalization.<str:fmt>", personalization.run_report_export,
         name="run_report_export"),
    path("staff/evaluations/<int:evaluation_id>/cancel/", personalization.evaluation_cancel,
         name="evaluation_cancel"),
    path("staff/runs/<int:run_id>/personalization/", personalization.personalization_progress,
         name="personalization_progress"),
    path("staff/versions/rollback/", runs.version_rollback, name="version_rollback"),
    path("admin/", admin.site.urls),
]
