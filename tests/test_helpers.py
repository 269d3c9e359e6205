"""The small shared helpers, by known answers: Markdown tables, 8-bit conversion, Gaussian windows, stride padding,
the domain mix."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from raytrain.data.images import quantize8, to_uint8
from raytrain.methods.base import mix_probabilities
from raytrain.nn.ops import gaussian_1d, pad_to_multiple
from raytrain.tables import markdown_table


def test_markdown_table_rule_escape_and_short_rows():
    assert markdown_table(["a", "b"], [[1, "x|y"], [2]], escape=True) == ["| a | b |", "|---|---|", "| 1 | x\\|y |",
                                                                          "| 2 |  |"]  # fmt: skip
    assert markdown_table(["a"], [["x|y"]])[-1] == "| x|y |", "no escaping unless asked"


def test_uint8_rounds_clips_and_drops_a_single_channel():
    img = np.array([[[-0.1], [0.5 / 255]], [[1.2], [0.5]]], dtype=np.float32)
    assert to_uint8(img).tolist() == [[0, 0], [255, 128]]
    rgb = np.full((1, 1, 3), 0.2, dtype=np.float32)
    assert to_uint8(rgb).shape == (1, 1, 3)
    np.testing.assert_allclose(quantize8(img)[..., 0], [[0, 0], [1, 128 / 255]])


def test_gaussian_window_is_centred_normalised_and_matches_the_closed_form():
    g = gaussian_1d(5, 1.0)
    x = np.arange(-2, 3)
    want = np.exp(-0.5 * x**2) / np.exp(-0.5 * x**2).sum()
    np.testing.assert_allclose(g.numpy(), want, rtol=1e-12)
    assert g.dtype == torch.float64 and float(g.sum()) == pytest.approx(1.0)


def test_pad_to_multiple_pads_right_and_bottom_and_falls_back_to_replicate():
    x = torch.arange(6.0).view(1, 1, 2, 3)
    out = pad_to_multiple(x, 4)  # 2 -> 4 rows, 3 -> 4 columns; reflect cannot pad 2 rows of a 2-row image
    assert out.shape == (1, 1, 4, 4)
    assert out[0, 0].tolist() == [[0, 1, 2, 2], [3, 4, 5, 5], [3, 4, 5, 5], [3, 4, 5, 5]]
    big = torch.arange(25.0).view(1, 1, 5, 5)
    assert pad_to_multiple(big, 3)[0, 0, 5].tolist() == [15, 16, 17, 18, 19, 18], "reflect where the image allows"
    assert pad_to_multiple(big, 5) is big


def test_mix_probabilities_follow_the_domain_order_and_normalise():
    np.testing.assert_allclose(mix_probabilities({"target": 1, "paired": 4}, ["paired", "source", "target"]),
                               [0.8, 0.0, 0.2])  # fmt: skip
