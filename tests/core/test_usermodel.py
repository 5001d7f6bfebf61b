import pytest
import torch
from torch.testing import assert_close

from trainer.core.usermodel import ClusterUserModel, IndividualUserModel, UserIndex

EMB = torch.randn(500, 8)


def _is_token_row(v: torch.Tensor) -> bool:
    return bool(((EMB - v).abs().max(-1).values < 1e-6).any())  # e_0 + (row - e_0) rounds in the last bit


def test_individual_rows_are_generic_plus_offset_and_start_as_token_rows():
    m = IndividualUserModel(3, 4, 8, init_embedding=EMB, seed=1)
    e = m(torch.tensor([0, 1, 3]))  # (3, T, H)
    assert e.shape == (3, 4, 8)
    assert_close(e[0], m.generic)
    assert_close(e[1], m.generic + m.offsets[0])
    assert all(_is_token_row(v) for v in e[0]) and all(_is_token_row(v) for v in e[2])


def test_initialisation_is_seeded():
    a = IndividualUserModel(3, 4, 8, init_embedding=EMB, seed=1)(torch.arange(4))
    b = IndividualUserModel(3, 4, 8, init_embedding=EMB, seed=1)(torch.arange(4))
    c = IndividualUserModel(3, 4, 8, init_embedding=EMB, seed=2)(torch.arange(4))
    assert_close(a, b)
    assert not torch.equal(a, c)


def test_cluster_rows_are_softmax_mixtures_of_components():
    m = ClusterUserModel(2, 3, 8, n_clusters=4, init_embedding=EMB, seed=0)
    with torch.no_grad():
        m.weights[2] = torch.tensor([0.0, 100.0, 0.0, 0.0])  # all weight on component 1
    e = m(torch.tensor([0, 2]))
    assert_close(e[0], m.components.mean(0))  # zero logits -> uniform mixture
    assert_close(e[1], m.components[1])


def test_cluster_users_start_at_distinct_mixtures_and_the_generic_user_at_the_uniform_one():
    m = ClusterUserModel(3, 2, 8, n_clusters=4, init_embedding=EMB, seed=0)
    mix = m.mixture(torch.arange(4))  # (4, K)
    assert_close(mix[0], torch.full((4,), 0.25))
    assert all(not torch.allclose(mix[i], mix[j]) for i in range(4) for j in range(i + 1, 4))


@pytest.mark.parametrize("cls", [IndividualUserModel, ClusterUserModel])
def test_adding_a_user_keeps_everyone_else_and_defaults_to_generic(cls):
    m = cls(2, 3, 8, init_embedding=EMB, seed=0)
    before = m(torch.arange(3)).detach()
    row = m.add_user()
    assert row == 3 and m.n_users == 3
    after = m(torch.arange(4)).detach()
    assert_close(after[:3], before)
    assert_close(after[3], after[0])


def test_user_index_maps_unknown_users_to_generic_and_round_trips():
    idx = UserIndex(["a", "b"])
    assert (idx.row("a"), idx.row("b"), idx.row("zz"), idx.row(None)) == (1, 2, 0, 0)
    assert UserIndex.from_json(idx.to_json()).users == ["a", "b"]
    with pytest.raises(ValueError):
        idx.add("a")
