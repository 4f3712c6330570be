"""Towers, fusion layers and the fusion module, on plain tensors."""

import numpy as np
import pytest
import torch

from mmsk.fusion.modules import (
    FUSIONS,
    MIN_EVAL_ROWS,
    FusionModule,
    LateFusion,
    Tower,
    drop_modalities,
)


def batch(n=32, dims=(5, 4, 3), seed=0):
    g = torch.Generator().manual_seed(seed)
    out = {f"x{i}": torch.randn(n, d, generator=g) for i, d in enumerate(dims)}
    out["mask"] = torch.ones(n, len(dims), dtype=torch.bool)
    return out


def make(fusion, **kwargs):
    params = dict(dims=[5, 4, 3], n_outputs=3, fusion=fusion, hidden_units=8, dropout=0.1)
    return FusionModule(**{**params, **kwargs}).eval()


@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize("norm", ["batch", "layer", None])
def test_output_shape_and_gradients(fusion, norm):
    module = make(fusion, norm=norm, n_layers=2).train()
    out = module(**batch())
    assert out.shape == (32, 3)
    out.sum().backward()
    grads = [p.grad for p in module.parameters() if p.requires_grad]
    assert all(g is not None for g in grads[:4])


@pytest.mark.parametrize("fusion", FUSIONS)
def test_a_missing_modality_has_no_influence(fusion):
    module = make(fusion)
    b = batch()
    b["mask"][:, 1] = False
    b["mask"][::2, 2] = False
    out = module(**b)
    scrambled = dict(b, x1=torch.randn(32, 4) * 100)
    scrambled["x2"] = b["x2"].clone()
    scrambled["x2"][::2] = 1e3
    torch.testing.assert_close(module(**scrambled), out)


@pytest.mark.parametrize("fusion", FUSIONS)
def test_eval_output_of_a_row_does_not_depend_on_the_batch(fusion):
    # As in predict (eval mode, no autograd). Tiny batches are zero-padded to
    # MIN_EVAL_ROWS, so BLAS takes the same path as for a big batch; what is
    # left is float32 rounding from the row's position in the batch.
    module = make(fusion)
    b = batch(n=40)
    with torch.no_grad():
        full = module(**b)
        for i in [0, 7, 39]:
            one = module(**{k: v[i : i + 1] for k, v in b.items()})
            torch.testing.assert_close(one[0], full[i], rtol=0, atol=1e-6)
        part = module(**{k: v[: MIN_EVAL_ROWS - 3] for k, v in b.items()})
    assert part.shape == (MIN_EVAL_ROWS - 3, 3)
    torch.testing.assert_close(part, full[: MIN_EVAL_ROWS - 3], rtol=0, atol=1e-6)


def test_late_fusion_with_one_present_modality_is_that_head():
    late = LateFusion(2, 4, n_outputs=2, hidden_units=8, dropout=0.0).eval()
    hs = [torch.randn(5, 4), torch.randn(5, 4)]
    present = torch.tensor([[True, False]] * 5)
    torch.testing.assert_close(late(hs, present), late.heads[0](hs[0]))


def test_drop_modalities_keeps_one_present_per_row():
    torch.manual_seed(0)
    present = torch.rand(2000, 4) > 0.3
    present[:, 0] |= ~present.any(dim=1)
    kept = drop_modalities(present, 0.5)
    assert not (kept & ~present).any()  # only drops, never adds
    assert kept.any(dim=1).all()
    assert 0.35 < kept.sum() / present.sum() < 0.65
    assert torch.equal(drop_modalities(present, 0.0), present)
    assert (drop_modalities(present, 1.0).sum(dim=1) == 1).all()


def test_modality_dropout_only_while_training():
    module = make("concat", modality_dropout=0.9)
    b = batch()
    torch.testing.assert_close(module(**b), module(**b))  # eval: deterministic, no drops
    module.train()
    torch.manual_seed(0)
    a = module(**b)
    torch.manual_seed(1)
    assert not torch.allclose(a, module(**b))


def test_tower_standardises_and_zeroes_missing_rows():
    mean, scale = np.array([1.0, 2.0]), np.array([2.0, 4.0])
    tower = Tower(
        2, hidden_units=4, embed_dim=3, n_layers=1, dropout=0.0, norm=None, mean=mean, scale=scale
    )
    x = torch.tensor([[1.0, 2.0], [5.0, 6.0], [9.0, 9.0]])
    present = torch.tensor([True, True, False])
    expected_in = torch.tensor([[0.0, 0.0], [2.0, 1.0], [0.0, 0.0]])
    torch.testing.assert_close(tower(x, present), tower.mlp(expected_in))


def test_concat_learns_its_missing_embedding():
    module = make("concat").train()
    b = batch()
    b["mask"][:5, 0] = False
    module(**b).sum().backward()
    assert module.fusion.missing.grad[0].abs().sum() > 0
    assert module.fusion.missing.grad[1].abs().sum() == 0  # never missing here


def test_unknown_fusion_is_an_error():
    with pytest.raises(ValueError, match="fusion must be one of"):
        FusionModule(dims=[2], n_outputs=2, fusion="early")
