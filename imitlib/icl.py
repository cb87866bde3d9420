"""In-context learning as gradient descent (von Oswald et al. 2022), on the paper's own toy problem.

Each task is a linear regression ``y = w . x`` with ``w ~ N(0, I_d)`` and ``x ~ U(-1, 1)^d`` (d = 10). A sequence
holds N = 10 context pairs as tokens ``(x_i, y_i)`` and one query token ``(x_q, 0)``; the model must predict
``y_q``. Two learners:

* **Gradient descent.** Start from ``W = 0`` and take ``steps`` steps of size ``eta`` on the context's squared
  loss ``1/(2N) sum_i (W x_i - y_i)^2``; predict ``W x_q``. One step gives ``eta/N sum_i y_i x_i . x_q``.
* **Linear self-attention (LSA).** ``layers`` layers of attention *without softmax*, each adding to every token
  ``e_j <- e_j + P/N sum_i (V e_i)(K e_i)^T (Q e_j)`` (sums over context tokens only), read out from the query
  token's ``y`` slot. One such layer can represent one GD step exactly; the question is whether *training* finds
  that solution.

Comparisons (:func:`compare`): query loss of each; how closely the trained model's predictions follow GD's
(mean squared difference), and whether it *responds to its input* as GD does (cosine similarity of the
sensitivities dy/dx_q, averaged over tasks) — the paper's alignment measures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class ICLConfig:
    """The task distribution and the training budget of the LSA models."""

    dim: int = 10
    n_context: int = 10
    train_steps: int = 5_000
    batch_size: int = 2_048
    lr: float = 1e-3
    eval_tasks: int = 10_000
    seed: int = 0


def sample_tasks(cfg: ICLConfig, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` tasks as token sequences ``(n, N + 1, d + 1)`` (query last, its y slot 0) and query targets ``(n,)``."""
    w = torch.randn(n, cfg.dim, generator=generator)
    x = torch.rand(n, cfg.n_context + 1, cfg.dim, generator=generator) * 2 - 1
    y = torch.einsum("nd,ntd->nt", w, x)
    tokens = torch.cat([x, y[..., None]], -1)
    tokens[:, -1, -1] = 0.0
    return tokens, y[:, -1]


def gd_predict(tokens: torch.Tensor, eta: float, steps: int = 1) -> torch.Tensor:
    """Prediction for the query after ``steps`` steps of gradient descent from ``W = 0`` on the context."""
    x, y, xq = tokens[:, :-1, :-1], tokens[:, :-1, -1], tokens[:, -1, :-1]
    w = torch.zeros_like(xq)
    for _ in range(steps):
        residual = torch.einsum("nd,ntd->nt", w, x) - y
        w = w - eta * torch.einsum("nt,ntd->nd", residual, x) / x.shape[1]
    return (w * xq).sum(-1)


def tune_gd(cfg: ICLConfig, steps: int = 1, grid: np.ndarray | None = None) -> float:
    """The step size with the lowest query loss on fresh tasks (a grid search: the loss is smooth in eta)."""
    tokens, target = sample_tasks(cfg, cfg.eval_tasks, torch.Generator().manual_seed(cfg.seed + 17))
    grid = np.geomspace(0.01, 10, 200) if grid is None else grid
    losses = [float(((gd_predict(tokens, float(eta), steps) - target) ** 2).mean()) for eta in grid]
    return float(grid[int(np.argmin(losses))])


class LinearSelfAttention(nn.Module):
    """One LSA layer: every token gets ``P/N sum_{i in context} (V e_i)(K e_i)^T (Q e_j)``, no softmax."""

    def __init__(self, dim: int, init_std: float = 0.02) -> None:
        super().__init__()
        self.q, self.k, self.v, self.p = (nn.Parameter(torch.randn(dim, dim) * init_std) for _ in range(4))

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        context = e[:, :-1]
        keys, values = context @ self.k.T, context @ self.v.T
        scores = (e @ self.q.T) @ keys.transpose(1, 2) / context.shape[1]  # (n, tokens, context)
        return e + (scores @ values) @ self.p.T


class LSAModel(nn.Module):
    """``layers`` LSA layers; the prediction is minus the query token's y slot (as in the paper's construction,
    where a GD step *subtracts* the prediction from the slot that started at 0)."""

    def __init__(self, dim: int, layers: int = 1) -> None:
        super().__init__()
        self.layers = nn.ModuleList(LinearSelfAttention(dim) for _ in range(layers))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        e = tokens
        for layer in self.layers:
            e = layer(e)
        return -e[:, -1, -1]


def train_lsa(cfg: ICLConfig, layers: int = 1) -> tuple[LSAModel, np.ndarray]:
    """Train an LSA model on fresh tasks every step (Adam); return it and its loss curve."""
    torch.manual_seed(cfg.seed + layers)
    model = LSAModel(cfg.dim + 1, layers)
    optim = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + layers)
    losses = np.zeros(cfg.train_steps)
    for step in range(cfg.train_steps):
        tokens, target = sample_tasks(cfg, cfg.batch_size, gen)
        loss = 0.5 * ((model(tokens) - target) ** 2).mean()
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses[step] = loss.item()
    return model.eval(), losses


def sensitivity(predict: object, tokens: torch.Tensor) -> torch.Tensor:
    """d prediction / d x_q for every task ``(n, d)``: how a learner's answer moves with the query."""
    tokens = tokens.clone().requires_grad_(True)
    out = predict(tokens)  # type: ignore[operator]
    (grad,) = torch.autograd.grad(out.sum(), tokens)
    return grad[:, -1, :-1]


def compare(cfg: ICLConfig, model: nn.Module, eta: float, steps: int = 1) -> dict[str, float]:
    """Query losses of the model, of GD (``steps`` steps of size ``eta``) and of predicting 0, on fresh tasks;
    the mean squared difference of their predictions, and the cosine similarity of their sensitivities."""
    tokens, target = sample_tasks(cfg, cfg.eval_tasks, torch.Generator().manual_seed(cfg.seed + 99))
    with torch.no_grad():
        ours, gd = model(tokens), gd_predict(tokens, eta, steps)
    s_model = sensitivity(model, tokens)
    s_gd = sensitivity(lambda t: gd_predict(t, eta, steps), tokens)
    cos = torch.nn.functional.cosine_similarity(s_model, s_gd, dim=-1)
    return {
        "loss_model": float(0.5 * ((ours - target) ** 2).mean()),
        "loss_gd": float(0.5 * ((gd - target) ** 2).mean()),
        "loss_zero": float(0.5 * (target**2).mean()),
        "prediction_diff": float(((ours - gd) ** 2).mean()),
        "sensitivity_cosine": float(cos.mean()),
    }
