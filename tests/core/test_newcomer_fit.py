"""A newcomer placed among the seen people from their answers alone: the basis of the seen people's offsets, the
posterior after each rating, and the choice of the next question (adaptive against random), on simulated
newcomers whose true coordinates are known."""

import random
import statistics

import pytest
import torch

from trainer.core.onboarding import Basis, basis_from_offsets
from trainer.core.placement import ADAPTIVE, RANDOM, Answer, PoolPair, estimate, next_question, prior, simulate


def test_the_basis_finds_the_directions_the_seen_people_differ_along():
    g = torch.Generator().manual_seed(0)
    mean = torch.randn(10, 8, generator=g)
    first, second = torch.randn(80, generator=g), torch.randn(80, generator=g)
    first, second = first / first.norm(), second - (second @ first) * first / first.norm() ** 2
    second = second / second.norm()
    coords = torch.randn(30, 2, generator=g) * torch.tensor([3.0, 1.0])
    offsets = mean.flatten() + coords @ torch.stack([first, second])
    basis = basis_from_offsets(offsets.reshape(30, 10, 8), k=6)
    assert basis.k == 2  # the other directions carry nothing
    span = basis.directions.float()
    for planted in (first, second):  # the two directions span the planted plane
        assert float((span @ planted).norm()) == pytest.approx(1.0, abs=1e-4)
    assert abs(float(span[0] @ first)) > 0.99  # the wider direction first
    assert basis.spread.tolist() == pytest.approx([coords[:, 0].std().item(), coords[:, 1].std().item()], rel=0.15)
    assert torch.allclose(basis.mean.float(), offsets.mean(0), atol=1e-5)
    assert basis_from_offsets(offsets[:1].reshape(1, 10, 8)).k == 0  # one person spans no direction


def world(seed: int, k: int = 4, pairs: int = 80):
    rng = random.Random(seed)
    spread = torch.tensor([2.0, 1.5, 1.0, 0.5][:k], dtype=torch.float64)
    basis = Basis(torch.zeros(16, dtype=torch.float64), torch.eye(k, 16, dtype=torch.float64), spread)
    pool = {f"p{i:03d}": PoolPair(f"p{i:03d}", rng.gauss(0, 0.5), tuple(rng.gauss(0, 1) for _ in range(k)))
            for i in range(pairs)}
    return basis, pool


def newcomer(basis: Basis, rng: random.Random) -> torch.Tensor:
    return torch.tensor([rng.gauss(0, float(s)) for s in basis.spread], dtype=torch.float64)


def true_margin(pair: PoolPair, w: torch.Tensor) -> float:
    return pair.margin + float(torch.tensor(pair.slope, dtype=torch.float64) @ w)


def answer(pair: PoolPair, w: torch.Tensor, rng: random.Random) -> Answer:
    noise = rng.gauss(0, 0.3)  # a person is not perfectly consistent
    return Answer(pair.key, true_margin(pair, w) + noise > 0)


def accuracy_curve(strategy: str, seed: int, counts=(0, 3, 10)) -> dict[int, float]:
    """Mean held-out accuracy over simulated newcomers after each count of answers (``placement.simulate``)."""
    basis, pool = world(seed)
    held_out = sorted(pool)[50:]
    rng = random.Random(seed + 1)  # the newcomers and their answers: the same for both strategies
    choosing = random.Random(seed + 2)
    found = {n: [] for n in counts}
    for _ in range(300):
        w = newcomer(basis, rng)
        noise = random.Random(rng.random())
        curve = simulate(basis, pool, lambda key: answer(pool[key], w, noise).a_better,
                         lambda key: true_margin(pool[key], w) > 0, held_out, strategy=strategy, rng=choosing,
                         counts=counts)
        for n, accuracy in curve.items():
            found[n].append(accuracy)
    return {n: statistics.mean(v) for n, v in found.items()}


def test_adaptive_questions_place_a_newcomer_sooner_than_random_ones():
    adaptive = accuracy_curve(ADAPTIVE, seed=7)
    random_ = accuracy_curve(RANDOM, seed=7)
    assert adaptive[0] == random_[0]  # the same newcomers, the same prior
    assert adaptive[3] > random_[3] + 0.01
    assert adaptive[10] >= random_[10] - 0.01
    assert adaptive[10] > adaptive[3] > adaptive[0] + 0.1  # every answer teaches something
    assert adaptive[10] > 0.85


def test_a_rating_moves_the_estimate_towards_it():
    basis, pool = world(3)
    pair = pool["p000"]
    before = prior(basis).margin(pair)[0]
    for a_better, sign in ((True, 1), (False, -1)):
        after = estimate(basis, pool, [Answer(pair.key, a_better)]).margin(pair)[0]
        assert sign * (after - before) > 0
    # and the estimate grows surer along what was asked
    _, spread_before = prior(basis).margin(pair)
    _, spread_after = estimate(basis, pool, [Answer(pair.key, True)]).margin(pair)
    assert spread_after < spread_before


def test_adaptive_choice_never_repeats_differs_from_random_and_ends_with_the_pool():
    basis, pool = world(5, pairs=12)
    rng = random.Random(0)
    w = newcomer(basis, rng)
    answers, current, chosen = [], prior(basis), []
    while (question := next_question(pool, answers, current)) is not None:
        chosen.append(question.key)
        answers.append(answer(question, w, rng))
        current = estimate(basis, pool, answers)
    assert sorted(chosen) == sorted(pool)  # each pair once, then none
    randomly = []
    answers = []
    while (question := next_question(pool, answers, prior(basis), strategy=RANDOM, rng=random.Random(len(answers)))):
        randomly.append(question.key)
        answers.append(Answer(question.key, True))
    assert randomly != chosen and sorted(randomly) == sorted(pool)
    with pytest.raises(ValueError, match="adaptive or random"):
        next_question(pool, [], prior(basis), strategy="greedy")
    skipped = frozenset(chosen[:3])  # a question skipped is never asked again either
    assert next_question(pool, [], prior(basis), skipped=skipped).key not in skipped


def test_the_offset_of_coordinates_is_the_mean_plus_the_directions():
    basis = Basis(torch.ones(4, dtype=torch.float64), torch.eye(2, 4, dtype=torch.float64),
                  torch.ones(2, dtype=torch.float64))
    assert basis.offset(torch.tensor([2.0, -1.0])).tolist() == [3.0, 0.0, 1.0, 1.0]


def test_a_pairs_precomputed_margin_and_slope_predict_the_models_own_margin_nearby(tiny_model_path):
    from trainer.core.config import TrainConfig
    from trainer.core.loop import build_model, load_base
    from trainer.core.onboarding import prepare_pool, seen_offsets
    from trainer.core.policy import encode_pairs
    from trainer.core.reference import ReferenceCache
    from users.synthetic.pairs import make_pairs
    from users.synthetic.personas import sample_population

    config = TrainConfig(max_length=96, max_prompt_length=48, seed=0)
    lm, tokenizer = load_base(str(tiny_model_path))
    core = build_model(lm, tokenizer, config, n_users=6)
    basis = basis_from_offsets(seen_offsets(core.user_model), k=3)
    assert basis.k == 3
    pairs = make_pairs(sample_population(1, seed=2), ["Tell me about rivers.", "How do I bake bread?"],
                       conversations_per_user=3, seed=3)[:3]
    keys = [f"q{i}" for i in range(len(pairs))]
    pool = prepare_pool(core, tokenizer, config, basis, pairs, keys, chunk=2)
    assert sorted(pool) == keys and all(len(p.slope) == 3 for p in pool.values())

    encoded = encode_pairs(tokenizer, pairs, None, config)
    refs = ReferenceCache()
    refs.fill(core, encoded, device="cpu")
    ref = refs.get(encoded, "cpu")
    batch = core.sequences(encoded, with_slots=True)
    generic = core.user_model.vectors_from(core.user_model.parameter_of(0)).double()

    def margins(w):  # the model's own margins with the newcomer at coordinates w
        soft = (generic + basis.offset(w).reshape(generic.shape)).float()
        with torch.no_grad():
            logps = core(batch, soft_prompt=soft.unsqueeze(0).repeat(2 * len(pairs), 1, 1)).double()
        n = len(pairs)
        return config.beta * ((logps[:n] - ref.chosen.double()) - (logps[n:] - ref.rejected.double()))

    at_origin = margins(torch.zeros(3, dtype=torch.float64))
    assert [pool[k].margin for k in keys] == pytest.approx(at_origin.tolist(), abs=1e-4)
    w = 0.05 * basis.spread.double() * torch.tensor([1.0, -1.0, 0.5], dtype=torch.float64)
    moved = margins(w) - at_origin
    predicted = torch.tensor([[*pool[k].slope] for k in keys], dtype=torch.float64) @ w
    assert moved.abs().max() > 1e-4  # the step changes the margins measurably
    assert torch.allclose(predicted, moved, rtol=0.1, atol=2e-5)  # to first order, as the pool says
