"""Each loss against numbers worked out by hand.

Two pairs, beta = 0.5 unless stated. Policy/reference log-probs are chosen so
that the DPO log-ratio margin h = (c - rc) - (r - rr) is +1 for pair 1 and -1
for pair 2:  pair 1: (-1 + 1.5) - (-2 + 1.5) = 0.5 + 0.5 = 1;  pair 2: -0.5 - 0.5 = -1.
"""

import math

import pytest
import torch
from torch.testing import assert_close

from trainer.core.losses import LOSSES, PairLogps, PairRefs, get_loss, pair_loss, personalized_loss

C = torch.tensor([-1.0, -2.0])
R = torch.tensor([-2.0, -1.0])
REF = PairRefs(torch.tensor([-1.5, -1.5]), torch.tensor([-1.5, -1.5]), torch.tensor([1.0, 4.0]),
               torch.tensor([4.0, 1.0]))


def test_the_table_holds_the_four_losses():
    assert set(LOSSES) == {"dpo", "ipo", "simpo", "hinge"}
    with pytest.raises(ValueError, match="unknown loss 'kto'"):
        get_loss("kto")


def test_dpo_is_minus_log_sigmoid_of_beta_times_margin():
    loss, rc, rr = pair_loss("dpo", PairLogps(C, R), REF, beta=0.5)
    # -log sigmoid(0.5) = log(1 + e^-0.5) = 0.474077;  -log sigmoid(-0.5) = log(1 + e^0.5) = 0.974077
    assert_close(loss, torch.tensor([0.474077, 0.974077]), atol=1e-6, rtol=0)
    assert_close(rc, torch.tensor([0.25, -0.25]))  # 0.5 * (c - rc)
    assert_close(rr, torch.tensor([-0.25, 0.25]))  # 0.5 * (r - rr)


def test_ipo_regresses_the_margin_onto_one_over_two_beta():
    loss, _, _ = pair_loss("ipo", PairLogps(C, R), REF, beta=0.5)
    # target 1 / (2 * 0.5) = 1:  (1 - 1)^2 = 0,  (-1 - 1)^2 = 4
    assert_close(loss, torch.tensor([0.0, 4.0]))


def test_hinge_is_relu_of_one_minus_beta_margin():
    loss, _, _ = pair_loss("hinge", PairLogps(C, R), REF, beta=0.5)
    assert_close(loss, torch.tensor([0.5, 1.5]))  # relu(1 - 0.5), relu(1 + 0.5)


def test_simpo_is_reference_free_and_length_normalised():
    # averages: chosen -1/1 = -1 and -2/4 = -0.5; rejected -2/4 = -0.5 and -1/1 = -1
    # logits 2 * (-1 + 0.5) - 0.5 = -1.5 and 2 * (-0.5 + 1) - 0.5 = 0.5
    loss, rc, rr = pair_loss("simpo", PairLogps(C, R), REF, beta=2.0, gamma=0.5)
    assert_close(loss, torch.tensor([1.701413, 0.474077]), atol=1e-6, rtol=0)  # log(1+e^1.5), log(1+e^-0.5)
    assert_close(rc, torch.tensor([-2.0, -1.0]))
    assert_close(rr, torch.tensor([-1.0, -2.0]))
    other_ref = PairRefs(torch.tensor([9.0, 9.0]), torch.tensor([-9.0, -9.0]), REF.chosen_lengths,
                         REF.rejected_lengths)
    assert_close(pair_loss("simpo", PairLogps(C, R), other_ref, beta=2.0, gamma=0.5)[0], loss)


def test_rewards_are_detached():
    c = C.clone().requires_grad_()
    loss, rc, rr = pair_loss("dpo", PairLogps(c, R), REF, beta=0.5)
    assert loss.requires_grad and not rc.requires_grad and not rr.requires_grad


def test_personalized_loss_mixes_the_personal_and_generic_terms():
    # personal: the DPO numbers above, mean (0.474077 + 0.974077) / 2 = 0.724077
    # generic: policy equal to the reference -> margin 0 -> log 2 = 0.693147 for both pairs
    generic = PairLogps(REF.chosen.clone(), REF.rejected.clone())
    loss, m = personalized_loss("dpo", PairLogps(C, R), generic, REF, alpha=0.5, beta=0.5)
    assert_close(loss, torch.tensor(0.5 * 0.724077 + 0.5 * math.log(2)), atol=1e-6, rtol=0)
    assert_close(m["loss/personal"], torch.tensor(0.724077), atol=1e-6, rtol=0)
    assert_close(m["loss/generic"], torch.tensor(0.693147), atol=1e-6, rtol=0)
    assert_close(m["rewards/accuracies"], torch.tensor(0.5))  # pair 1 right, pair 2 wrong
    assert_close(m["rewards/margins"], torch.tensor(0.0))  # (0.5 + -0.5) / 2
    assert_close(m["logps/chosen"], torch.tensor(-1.5))
    assert not any(v.requires_grad for v in m.values())


def test_alpha_zero_is_plain_dpo_and_needs_no_personal_term():
    loss, m = personalized_loss("dpo", None, PairLogps(C, R), REF, alpha=0.0, beta=0.5)
    assert_close(loss, torch.tensor(0.724077), atol=1e-6, rtol=0)
    assert "loss/personal" not in m
    with pytest.raises(ValueError):
        personalized_loss("dpo", None, PairLogps(C, R), REF, alpha=0.5, beta=0.5)
