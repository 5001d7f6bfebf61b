"""A collection candidate cut at the length limit is written on in place by the generate worker, and a row of a
batch ends when it ends, not when the batch's longest row does."""

import pytest

from trainer.core.batch_generation import END, GenerationRequest, generate_batch
from trainer.core.loop import load_base
from trainer.core.sequences import prefix_ids
from trainer.worker import serving
from users.collection import services as collection
from users.conversations import streams
from users.models import Conversation, Reply, ReplySource, Turn

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def tiny_base(settings, tiny_model_path, test_redis):
    settings.BASE_MODEL = str(tiny_model_path)
    settings.COLLECTION_MAX_NEW_TOKENS = 6
    settings.GENERATION_MAX_PENDING = 100


def candidate(owner) -> Reply:
    ReplySource.objects.get_or_create(name="plain-source", defaults={"temperature": 0.0, "top_p": 1.0})
    ReplySource.objects.filter(name="plain-source").update(temperature=0.0)
    conversation = Conversation.objects.create(user=owner, kind=Conversation.Kind.UNGUIDED)
    turn = Turn.objects.create(conversation=conversation, index=0, user_message="Tell me about tea.")
    return Reply.objects.create(turn=turn, source="plain-source")


def test_the_prompt_of_a_continuation_is_the_templated_prompt_then_the_reply_so_far(tiny_model_path):
    _, tokenizer = load_base(str(tiny_model_path))
    request = GenerationRequest([{"role": "user", "content": "Hi"}])
    prompt = serving.continued_prompt(tokenizer, request, "Tea is a drink")
    written = tokenizer.encode("Tea is a drink", add_special_tokens=False)
    opening = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True,
                                            tokenize=False)
    assert prompt[-len(written):] == written
    # After the prefix that sits before the soft prompt: the template with the assistant's turn open, not closed.
    assert tokenizer.decode(prefix_ids(tokenizer) + prompt[:-len(written)]) == opening


def test_a_cut_candidate_continued_keeps_its_text_and_writes_on(owner, monkeypatch):
    monkeypatch.setattr(collection, "reply_enqueue", lambda *, reply_id: True)
    reply = candidate(owner)
    assert serving.generate_reply(reply.pk) == Reply.Status.DONE
    reply.refresh_from_db()
    assert reply.token_count == 6 and reply.serving["cut"] is True and reply.continuable
    first = reply.content
    collection.candidate_continue(reply=reply)
    assert serving.generate_reply(reply.pk) == Reply.Status.DONE
    reply.refresh_from_db()
    assert reply.content.startswith(first) and len(reply.content) > len(first)
    assert reply.token_count == 12 and reply.serving["continued"] == 1 and "continue" not in reply.serving
    assert streams.text(reply) == reply.content  # the stream a browser follows shows the whole reply


def test_a_row_that_ends_early_is_ended_before_the_rest_of_its_batch(tiny_model_path, monkeypatch):
    import trainer.core.batch_generation as batching

    monkeypatch.setattr(batching, "_eos_ids", lambda model, tokenizer: set())  # both rows run to their caps
    lm, tokenizer = load_base(str(tiny_model_path))
    short = GenerationRequest([{"role": "user", "content": "Hi"}], max_new_tokens=2, temperature=0.0)
    long = GenerationRequest([{"role": "user", "content": "Hello"}], max_new_tokens=12, temperature=0.0)
    short_ended = []  # before each of the long row's tokens: had the short row been ended already?
    long.should_stop = lambda: short_ended.append(END in list(short.deltas.queue)) and False
    generate_batch(lm, tokenizer, [short, long])
    assert short.cut and long.tokens == 12
    assert short_ended[0] is False and all(short_ended[1:])  # ended with its second token
