"""Heatmap targets, loss and sub-pixel reading of points."""

from __future__ import annotations

import numpy as np
import torch

from spinemodels.heatmaps import gaussian_heatmaps, heatmap_loss, read_points


def test_points_are_read_sub_pixel_exact_from_a_gaussian():
    points = torch.tensor([[[10.3, 20.7], [31.25, 5.5], [0.9, 62.1]]])  # (1, 3, 2) row, col
    maps = gaussian_heatmaps(points, (40, 64), sigma=2.5)
    found, confidence = read_points(torch.log(maps), sigma=2.5)
    assert torch.allclose(found, points, atol=0.01)
    assert (confidence[0, :2] > 0.99).all()  # a point near the border loses some mass outside the window


def test_heatmap_loss_is_zero_at_the_target_and_ignores_invalid_maps():
    points = torch.tensor([[[8.0, 9.0], [20.0, 3.0]]])
    target_logits = torch.log(gaussian_heatmaps(points, (32, 32), sigma=2.0))
    valid = torch.tensor([[True, False]])
    assert float(heatmap_loss(target_logits, points, valid, 2.0)) < 1e-5
    wrong = target_logits.clone()
    wrong[0, 1] = 0.0  # an invalid map may be anything
    assert float(heatmap_loss(wrong, points, valid, 2.0)) < 1e-5
    wrong[0, 0] = 0.0
    assert float(heatmap_loss(wrong, points, valid, 2.0)) > 1.0


def test_slice_targets_cover_real_slices_only_and_the_expected_slice_is_read_back():
    from spinemodels.tasks.slice_finder import expected_slices, soft_targets

    mask = torch.tensor([[True] * 6 + [False] * 2])
    target = torch.tensor([[0, 3, 5, 2, 2]])
    soft = soft_targets(target, mask, sigma=0.75)  # (1, 8, 5)
    assert torch.allclose(soft.sum(1), torch.ones(1, 5))
    assert (soft[0, 6:] == 0).all() and (soft.argmax(1) == target).all()
    chosen, confidence = expected_slices(soft)
    assert (chosen == target).all() and (confidence > 0.4).all()
    onehot = soft_targets(target, mask, sigma=0)
    assert (onehot.max(1).values == 1).all()


def test_levels_are_decoded_head_to_foot():
    from spinemodels.heatmaps import peak_candidates
    from spinemodels.inference.stage_one_networks import ordered_levels

    # two peaks per map; level 2's strongest peak sits on level 3's spot (a level mix-up)
    rows = [[10.0, 70.0], [30.0, 90.0], [70.0, 50.0], [70.0, 10.0], [90.0, 50.0]]
    candidates = []
    for strong, weak in rows:
        maps = gaussian_heatmaps(torch.tensor([[strong, 20.0], [weak, 20.0]]), (100, 40), sigma=2.0)
        prob = 0.9 * maps[0] + 0.1 * maps[1]
        candidates.append(peak_candidates(torch.log(prob).double().numpy(), sigma=2.0, k=2))
    assert np.allclose([level[0][0][0] for level in candidates], [r[0] for r in rows], atol=0.05)
    height = lambda rc: -rc[0]  # noqa: E731  rows run toward the feet, 1 mm per row
    chosen = ordered_levels(candidates, height)
    assert chosen == (0, 0, 1, 0, 0)  # level 2 takes its weaker peak at row 50
