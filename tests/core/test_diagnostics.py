"""Gradient-entanglement quantities against numbers worked out by hand.

pair 1: g_w = (1, 0), g_l = (2, 0): <.,.> = 2 > ||g_w||^2 = 1 (chosen goes down), < ||g_l||^2 = 4, cosine 1
pair 2: g_w = (2, 2), g_l = (1, 0): <.,.> = 2 < 8, > ||g_l||^2 = 1 (rejected goes up), cosine 2 / (2.828427 * 1)
pair 3: g_w = (3, 0), g_l = (-1, 0): <.,.> = -3: neither, cosine -1
"""

import torch
from torch.testing import assert_close

from trainer.core.diagnostics import entanglement, summarize

G_W = torch.tensor([[1.0, 0.0], [2.0, 2.0], [3.0, 0.0]])
G_L = torch.tensor([[2.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])


def test_per_pair_quantities():
    d = entanglement(G_W, G_L)
    assert_close(d["inner"], torch.tensor([2.0, 2.0, -3.0]))
    assert_close(d["cosine"], torch.tensor([1.0, 0.707107, -1.0]), atol=1e-6, rtol=0)
    assert_close(d["norm_chosen"], torch.tensor([1.0, 2.828427, 3.0]), atol=1e-6, rtol=0)
    assert_close(d["norm_rejected"], torch.tensor([2.0, 1.0, 1.0]))
    assert_close(d["chosen_down"], torch.tensor([1.0, 0.0, 0.0]))
    assert_close(d["rejected_up"], torch.tensor([0.0, 1.0, 0.0]))


def test_summary_gives_means_and_shares():
    s = summarize(entanglement(G_W, G_L))
    assert abs(s["entanglement/inner"] - 1 / 3) < 1e-6
    assert abs(s["entanglement/share_chosen_down"] - 1 / 3) < 1e-6
    assert abs(s["entanglement/share_rejected_up"] - 1 / 3) < 1e-6
    assert abs(s["entanglement/grad_norm_rejected"] - 4 / 3) < 1e-6


def test_equal_gradients_are_on_the_boundary_not_over_it():
    g = torch.tensor([[1.0, 1.0]])
    d = entanglement(g, g)  # <g, g> = ||g||^2: the first-order change is exactly zero, not negative
    assert_close(d["chosen_down"], torch.tensor([0.0]))
    assert_close(d["cosine"], torch.tensor([1.0]))
