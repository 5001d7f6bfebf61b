"""What a person reads when a reply could not be finished says what happened and what to do, in plain
words, never a raw exception."""

import redis

from trainer.worker.serving import failure_message


def test_a_lost_redis_connection_is_said_in_plain_words():
    text = failure_message(redis.exceptions.TimeoutError("Timeout reading from socket"))
    assert text == ("This reply could not be finished: the model worker lost contact with Redis, which carries "
                    "replies to your browser. What was written so far is kept. Press Retry.")


def test_running_out_of_memory_is_named():
    assert "ran out of memory" in failure_message(RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert "ran out of memory" in failure_message(MemoryError())


def test_anything_else_points_staff_to_the_log_without_the_raw_message():
    text = failure_message(ValueError("tensor shape mismatch at layer 7"))
    assert "(ValueError; staff find it in the worker's log)" in text and "layer 7" not in text
