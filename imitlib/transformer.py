"""The student: a GPT-style causal transformer over a learner's recorded steps, readable on one screen.

One token per environment step. Token ``t`` adds three embeddings: the observation at ``t`` (an encoder per
observation kind, reading the bytes exactly as :mod:`imitlib.history` stores them), the *previous* action and
the *previous* reward (a "none" action and reward 0 on the first step of an episode and of a context window), plus a
learned position. The head at token ``t`` predicts the action taken at ``t``. So a context of K episodes is K times
the episode length in tokens, as in Algorithm Distillation's across-episode contexts (Laskin et al. 2022), with
(observation, previous action, previous reward) folded into one token rather than three.

Incremental decoding: :class:`KVCache` keeps every layer's keys and values, so a rollout computes one new token
per step instead of re-running the whole context.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

OBS_KINDS = ("darkroom", "minatar", "ale")


@dataclass(frozen=True)
class TransformerConfig:
    """Architecture. Defaults are Algorithm Distillation's Dark Room model (embedding 64, 4 layers, 4 heads)."""

    obs_kind: str = "darkroom"  # "darkroom" (a cell index), "minatar" (bit-packed bool frame), "ale" (uint8 frame)
    obs_shape: tuple[int, ...] = (1,)  # darkroom (1,); minatar (10, 10, C); ale (84, 84)
    n_cells: int = 81  # darkroom: grid cells
    n_actions: int = 5
    block_size: int = 80  # longest context in tokens (= steps)
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 64
    dropout: float = 0.1
    attn_dropout: float = 0.5

    def __post_init__(self) -> None:
        if self.obs_kind not in OBS_KINDS:
            raise ValueError(f"obs_kind must be one of {OBS_KINDS}, got {self.obs_kind!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")
        object.__setattr__(self, "obs_shape", tuple(int(s) for s in self.obs_shape))


def observation_encoder(cfg: TransformerConfig) -> nn.Module:
    """Stored observation bytes ``(N, bytes)`` -> ``(N, n_embd)``."""
    if cfg.obs_kind == "darkroom":
        return CellEmbedding(cfg.n_cells, cfg.n_embd)
    if cfg.obs_kind == "minatar":
        h, w, c = cfg.obs_shape
        conv = nn.Sequential(nn.Conv2d(c, 16, 3), nn.ReLU(), nn.Flatten(),
                             nn.Linear(16 * (h - 2) * (w - 2), cfg.n_embd))
        return MinAtarEncoder(cfg.obs_shape, conv)
    conv = nn.Sequential(nn.Conv2d(1, 32, 8, 4), nn.ReLU(), nn.Conv2d(32, 64, 4, 2), nn.ReLU(),
                         nn.Conv2d(64, 64, 3, 1), nn.ReLU(), nn.Flatten(), nn.Linear(3136, cfg.n_embd))
    return AtariEncoder(cfg.obs_shape, conv)


class CellEmbedding(nn.Module):
    """Dark Room: the cell index (one stored byte) looks up a vector."""

    def __init__(self, n_cells: int, n_embd: int) -> None:
        super().__init__()
        self.table = nn.Embedding(n_cells, n_embd)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.table(obs[:, 0].long())


class MinAtarEncoder(nn.Module):
    """MinAtar: unpack the bit-packed ``(H, W, C)`` frame, then a small conv (the DQN's own first layer)."""

    def __init__(self, shape: tuple[int, ...], conv: nn.Module) -> None:
        super().__init__()
        self.shape, self.conv = shape, conv
        self.register_buffer("bits", torch.arange(7, -1, -1, dtype=torch.uint8), persistent=False)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        h, w, c = self.shape
        bits = (obs[:, :, None] >> self.bits) & 1
        frames = bits.reshape(obs.shape[0], -1)[:, : h * w * c].reshape(-1, h, w, c)
        return self.conv(frames.permute(0, 3, 1, 2).float())


class AtariEncoder(nn.Module):
    """ALE: the newest 84x84 grey frame, scaled to [0, 1], through the Nature-DQN conv stack."""

    def __init__(self, shape: tuple[int, ...], conv: nn.Module) -> None:
        super().__init__()
        self.shape, self.conv = shape, conv

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.conv(obs.reshape(-1, 1, *self.shape).float() / 255.0)


class KVCache:
    """Keys and values of every layer for the tokens seen so far, preallocated to ``block_size``."""

    def __init__(self, cfg: TransformerConfig, batch: int, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32) -> None:
        shape = (cfg.n_layer, batch, cfg.n_head, cfg.block_size, cfg.n_embd // cfg.n_head)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.length = 0  # tokens cached (the same for every layer once a forward pass is complete)

    def reset(self) -> None:
        self.length = 0


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: TransformerConfig, layer: int) -> None:
        super().__init__()
        self.n_head, self.layer, self.attn_dropout = cfg.n_head, layer, cfg.attn_dropout
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, cache: KVCache | None) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in self.qkv(x).split(c, 2))
        mask, causal = None, True
        if cache is not None:
            past = cache.length
            cache.k[self.layer, :, :, past:past + t] = k
            cache.v[self.layer, :, :, past:past + t] = v
            k, v = cache.k[self.layer, :, :, :past + t], cache.v[self.layer, :, :, :past + t]
            if past:  # new queries see every cached key plus the new ones up to themselves
                causal = False
                mask = torch.ones(t, past + t, dtype=torch.bool, device=x.device).tril(past) if t > 1 else None
        if self.training and self.attn_dropout and x.device.type == "cpu" and cache is None:
            y = _causal_attention_with_dropout(q, k, v, self.attn_dropout)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                               dropout_p=self.attn_dropout if self.training else 0.0)
        return self.drop(self.proj(y.transpose(1, 2).reshape(b, t, c)))


def _causal_attention_with_dropout(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, p: float) -> torch.Tensor:
    """Causal attention with dropout on the attention weights, written out: on CPU, 3-4x cheaper than
    ``scaled_dot_product_attention``'s dropout path (its Bernoulli sampling dominates a small model's update)."""
    t = q.shape[-2]
    scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
    scores = scores.masked_fill(~torch.ones(t, t, dtype=torch.bool, device=q.device).tril(), float("-inf"))
    keep = torch.rand(scores.shape, device=q.device) >= p
    return (scores.softmax(-1) * keep * (1.0 / (1.0 - p))) @ v


class Block(nn.Module):
    """Pre-norm transformer block: attention then MLP, each added to the residual stream."""

    def __init__(self, cfg: TransformerConfig, layer: int) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(cfg.n_embd), nn.LayerNorm(cfg.n_embd)
        self.attn = CausalSelfAttention(cfg, layer)
        self.mlp = nn.Sequential(nn.Linear(cfg.n_embd, 4 * cfg.n_embd), nn.GELU(),
                                 nn.Linear(4 * cfg.n_embd, cfg.n_embd), nn.Dropout(cfg.dropout))

    def forward(self, x: torch.Tensor, cache: KVCache | None) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), cache)
        return x + self.mlp(self.ln2(x))


class Student(nn.Module):
    """Causal transformer: (observation, previous action, previous reward) tokens -> action logits per token."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.obs_enc = observation_encoder(cfg)
        self.act_emb = nn.Embedding(cfg.n_actions + 1, cfg.n_embd)  # index n_actions: no previous action
        self.rew_emb = nn.Linear(1, cfg.n_embd)
        self.pos_emb = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.head = nn.Linear(cfg.n_embd, cfg.n_actions)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear | nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)

    def forward(self, obs: torch.Tensor, prev_action: torch.Tensor, prev_reward: torch.Tensor,
                cache: KVCache | None = None, hidden: bool = False) -> torch.Tensor | tuple[torch.Tensor, list]:
        """``obs (B, T, bytes)``, ``prev_action (B, T)``, ``prev_reward (B, T)`` -> logits ``(B, T, n_actions)``.

        With ``cache``, the T tokens continue the cached ones (and are appended to the cache). With
        ``hidden=True`` also return the residual stream after the embedding and after every block.
        """
        self._check(obs, prev_action, prev_reward, cache)
        b, t = prev_action.shape
        past = 0 if cache is None else cache.length
        pos = torch.arange(past, past + t, device=prev_action.device)
        x = (self.obs_enc(obs.reshape(b * t, -1)).view(b, t, -1) + self.act_emb(prev_action.long())
             + self.rew_emb(prev_reward.float()[..., None]) + self.pos_emb(pos))
        x = self.drop(x)
        states = [x]
        for block in self.blocks:
            x = block(x, cache)
            states.append(x)
        if cache is not None:
            cache.length = past + t
        logits = self.head(self.ln_f(x))
        return (logits, states) if hidden else logits

    def _check(self, obs: torch.Tensor, prev_action: torch.Tensor, prev_reward: torch.Tensor,
               cache: KVCache | None) -> None:
        """Shape errors that name the problem and the fix."""
        if prev_action.dim() != 2 or prev_reward.shape != prev_action.shape:
            raise ValueError(f"prev_action and prev_reward must both be (batch, time); got "
                             f"{tuple(prev_action.shape)} and {tuple(prev_reward.shape)}")
        if obs.dim() != 3 or obs.shape[:2] != prev_action.shape:
            raise ValueError(f"obs must be (batch, time, bytes) matching prev_action {tuple(prev_action.shape)}; "
                             f"got {tuple(obs.shape)} (add a trailing byte dimension for Dark Room cells)")
        past = 0 if cache is None else cache.length
        if past + prev_action.shape[1] > self.cfg.block_size:
            raise ValueError(f"{past} cached + {prev_action.shape[1]} new tokens exceed block_size "
                             f"{self.cfg.block_size}: shorten the context or build the model with a larger block_size")

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def step_inputs(action: torch.Tensor, reward: torch.Tensor, first: torch.Tensor,
                n_actions: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Previous action and reward for every step of ``(B, T)`` windows; "none" and 0 where ``first`` marks the
    first step of an episode, and on the first step of every window."""
    none = torch.full_like(action[:, :1], n_actions)
    prev_action = torch.cat([none, action[:, :-1]], 1)
    prev_reward = torch.cat([torch.zeros_like(reward[:, :1]), reward[:, :-1]], 1)
    prev_action = torch.where(first, torch.full_like(prev_action, n_actions), prev_action)
    return prev_action, torch.where(first, torch.zeros_like(prev_reward), prev_reward)


def first_steps(terminated: torch.Tensor, truncated: torch.Tensor) -> torch.Tensor:
    """Which steps start an episode, from the done flags of the step before (the window's first step: True)."""
    done = terminated | truncated
    return torch.cat([torch.ones_like(done[:, :1]), done[:, :-1]], 1)

