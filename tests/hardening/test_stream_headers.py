"""The reply stream takes a garbled Last-Event-ID without an error, and its keep-alive keeps the per-person
count of open streams alive."""

import asyncio
import concurrent.futures

from asgiref.sync import async_to_sync
from django.test import AsyncRequestFactory

from users.conversations import relay, streams
from users.models import Conversation, Reply, Turn


def test_a_garbled_last_event_id_resends_from_the_start_instead_of_failing():
    assert streams.last_event_id("1712-3") == (1712, 3)
    assert streams.last_event_id("1712") == (1712, 0)
    for garbled in ("abc", "1-2-3", "-5-1", "", None, "99999-x", "0x10-1"):
        assert streams.last_event_id(garbled) == (0, 0), garbled


def test_a_finished_reply_asked_with_a_garbled_last_event_id_is_sent_whole(owner):
    turn = Turn.objects.create(conversation=Conversation.objects.create(user=owner), index=0, user_message="Hi")
    reply = Reply.objects.create(turn=turn, position=0, status=Reply.Status.DONE, content="All done here")
    request = AsyncRequestFactory().get(f"/replies/{reply.pk}/stream", HTTP_LAST_EVENT_ID="not-an-id")

    async def user():
        return owner

    request.auser = user

    async def read():
        response = await relay.reply_stream(request, reply.pk)
        return response.status_code, b"".join([part async for part in response]).decode()

    status, body = async_to_sync(read)()
    assert status == 200 and "event: done" in body and "All done here" in body


def test_a_keepalive_renews_the_expiry_of_the_persons_open_streams(test_redis, settings):
    async def run():
        client = relay.async_client()  # made in the loop that uses it
        try:
            assert await relay._register(7, "conn-a") == 1
            await client.expire(relay._open_key(7), 2)  # as if the stream had been open for almost a minute
            await relay._still_open(client, 7, "conn-a")
            return await client.ttl(relay._open_key(7)), await client.zcard(relay._open_key(7))
        finally:
            await client.aclose()

    test_redis.delete(relay._open_key(7))
    # A loop of its own in a thread of its own: no database here, and the suite's browser tests leave
    # Playwright's loop running in the main thread, where async_to_sync refuses to run.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        ttl, count = pool.submit(asyncio.run, run()).result(timeout=30)
    assert ttl > relay.OPEN_STALE_SECONDS - 5 and count == 1
