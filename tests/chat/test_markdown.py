"""A reply's Markdown renders as formatting, and nothing in it can run script or carry a dangerous link."""

import pytest
from django.urls import reverse

from users.conversations.markdown import render

pytestmark = pytest.mark.django_db


def test_markdown_formats_and_html_in_the_text_stays_text():
    html = str(render("**bold**, *it*, `code`\n\n- one\n- two\n\n<script>alert(1)</script>"))
    assert "<strong>bold</strong>" in html and "<em>it</em>" in html and "<code>code</code>" in html
    assert "<ul>\n<li>one</li>" in html
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


@pytest.mark.parametrize("link", ["javascript:alert(1)", "data:text/html,<b>x</b>", "vbscript:msgbox(1)"])
def test_links_keep_only_safe_schemes(link):
    html = str(render(f"[click]({link}) and <a href=\"{link}\" onclick=\"x()\">raw</a> ![i]({link})"))
    assert "<a " not in html and "<img" not in html  # no link or image made; the raw tag is shown as text
    assert "&lt;a href=" in html
    safe = str(render("[site](https://example.org)"))
    assert 'href="https://example.org"' in safe and 'rel="noopener noreferrer nofollow"' in safe


def test_a_finished_reply_shows_formatted_on_the_chat_page(owner_client, owner, monkeypatch):
    from users.chat import services as chat
    from users.collection.services import reply_complete

    monkeypatch.setattr(chat, "reply_enqueue", lambda *, reply_id: True)
    conversation = chat.conversation_create(user=owner)
    reply = chat.chat_send(conversation=conversation, text="Format please")
    reply_complete(reply=reply, content="Use **two** steps:\n\n1. boil\n2. <b>pour</b>")
    page = owner_client.get(reverse("chat_detail", args=[conversation.pk])).content.decode()
    assert "<strong>two</strong>" in page and "<ol>" in page and "&lt;b&gt;pour&lt;/b&gt;" in page
    assert "**two**" not in page
