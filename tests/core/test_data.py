import json

import pytest

from trainer.core.data import (DataError, Pair, read_pairs, require_pairs, split_as_recorded, split_forget, split_pairs,
                               write_pairs)

LINE = {"user_id": "user12", "conversation_id": "c-3", "turn": 0,
        "prompt": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "earlier chosen"},
                   {"role": "user", "content": "more?"}],
        "chosen": [{"role": "assistant", "content": "yes"}], "rejected": [{"role": "assistant", "content": "no"}],
        "score_chosen": 80, "score_rejected": 35, "profile": "likes brevity", "source": "prism"}


def test_reads_the_export_format_and_writes_it_back(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(LINE) + "\n\n")
    [pair] = read_pairs(path)
    assert pair.user_id == "user12" and pair.profile == "likes brevity" and pair.extra == {"source": "prism"}
    write_pairs(tmp_path / "q.jsonl", [pair])
    assert json.loads((tmp_path / "q.jsonl").read_text()) == LINE


def test_a_bad_line_is_reported_with_its_number(tmp_path):
    path = tmp_path / "p.jsonl"
    bad = dict(LINE, chosen=[])
    path.write_text(json.dumps(LINE) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(DataError, match=r"p.jsonl:2: chosen must be a non-empty list"):
        read_pairs(path)
    path.write_text("{not json\n")
    with pytest.raises(DataError, match=r":1: not JSON"):
        read_pairs(path)


def test_an_empty_dataset_is_refused(tmp_path):
    (tmp_path / "e.jsonl").write_text("")
    assert read_pairs(tmp_path / "e.jsonl") == []
    with pytest.raises(DataError, match="dataset is empty"):
        require_pairs([])
    with pytest.raises(DataError):
        split_pairs([])


def _pairs(users=20, convs=5):
    m = [{"role": "user", "content": "x"}]
    a = [{"role": "assistant", "content": "a"}]
    return [Pair(f"u{u}", m, a, a, conversation_id=f"u{u}-c{c}", turn=t)
            for u in range(users) for c in range(convs) for t in range(2)]


def test_split_is_by_user_first_then_by_conversation_and_seeded():
    pairs = _pairs()
    s = split_pairs(pairs, unseen_fraction=0.1, test_fraction=0.2, seed=3)
    assert len(s.unseen_users) == 2 and len(s.seen_users) == 18
    assert {p.user_id for p in s.test_unseen} == set(s.unseen_users)
    assert not {p.user_id for p in s.train} & set(s.unseen_users)
    train_convs = {p.conversation_id for p in s.train}
    assert not train_convs & {p.conversation_id for p in s.test_seen}  # a conversation never straddles
    assert {p.user_id for p in s.test_seen} <= set(s.seen_users)
    assert len(s.test_seen) == 18 * 1 * 2  # one of five conversations per seen user, two turns each
    again = split_pairs(pairs, unseen_fraction=0.1, test_fraction=0.2, seed=3)
    assert again.unseen_users == s.unseen_users and again.test_seen == s.test_seen
    assert split_pairs(pairs, seed=4).unseen_users != s.unseen_users


def test_a_user_with_one_conversation_keeps_it_for_training():
    s = split_pairs(_pairs(users=1, convs=1), unseen_fraction=0.5, test_fraction=0.5)
    assert s.seen_users == ["u0"] and len(s.train) == 2 and not s.test_seen and not s.test_unseen


def test_a_recorded_split_keeps_every_conversation_where_it_was_when_people_leave_or_rate_more():
    pairs = _pairs()
    first = split_pairs(pairs, unseen_fraction=0.1, test_fraction=0.2, seed=3)
    leaving = first.seen_users[0]
    later = [p for p in pairs if p.user_id != leaving] + _pairs(users=22, convs=6)[-24:]  # u21 is new, c5 too
    naive = split_pairs(later, unseen_fraction=0.1, test_fraction=0.2, seed=3)
    trained_on = {p.conversation_id for p in first.train}
    # Split afresh, the same seed moves conversations the run trained on into the held-out parts.
    assert trained_on & {p.conversation_id for p in naive.test_seen + naive.test_unseen}
    again = split_as_recorded(later, json.loads(json.dumps(first.keys())))
    assert again.train == [p for p in first.train if p.user_id != leaving]
    assert again.test_seen == [p for p in first.test_seen if p.user_id != leaving]
    assert again.test_unseen == first.test_unseen
    assert again.seen_users == first.seen_users and again.unseen_users == first.unseen_users


def test_forgetting_a_person_in_a_recorded_split_keeps_the_number_of_people(tmp_path):
    first = split_pairs(_pairs(users=5, convs=3), unseen_fraction=0.2, test_fraction=0.34, seed=1)
    record = tmp_path / "split.json"
    record.write_text(json.dumps(first.keys()))
    gone = first.seen_users[1]
    assert split_forget(record, gone) and not split_forget(record, gone)
    kept = json.loads(record.read_text())
    assert gone not in json.dumps(kept) and len(kept["seen_users"]) == len(first.seen_users)
    assert kept["seen_users"][1] == "(deleted 1)"


def test_plain_dpo_is_one_definition_for_the_dashboard_the_command_line_and_the_benchmarks():
    from trainer.core.config import PLAIN_DPO, TrainConfig, plain_dpo

    personal_ipo = TrainConfig(loss="ipo", user_model="cluster", alpha=0.7, lr_lora=3e-4)
    baseline = plain_dpo(personal_ipo)
    assert (baseline.loss, baseline.user_model, baseline.alpha, baseline.lr_lora) == ("dpo", "none", 0.0, 3e-4)
    assert PLAIN_DPO == {"user_model": "none", "loss": "dpo", "alpha": 0.0}
