"""The student's speed: training tokens/s against Hugging Face GPT-2 with the identical config, and rollout
steps/s with the KV cache against recomputing the whole context at every step.

* ``train_tokens_per_s`` / ``hf_train_tokens_per_s``: one AdamW update on a batch of lab-sized windows
  (64 windows x 4 Dark Room episodes = 80 tokens), forward + backward + step, dropouts on. Both models share the
  same token embedding (cell, previous action, previous reward) and action head; only the transformer body
  differs: ours (:class:`imitlib.transformer.Student`) vs ``transformers.GPT2Model`` built with the same width,
  depth, heads, context, dropouts and exact GELU.
* ``kv_speedup``: frozen Dark Room rollouts (80 goals x 8 episodes, 4-episode context) with the cache vs without.
* ``peak_rss_gb``: this process's peak resident memory (lab-sized training included).

    pip install -r benchmarks/requirements.txt
    python benchmarks/transformer_speed.py      # last line: one JSON object
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from imitlib.imitation import darkroom_rollout
from imitlib.scale import get_scale
from imitlib.transformer import Student, TransformerConfig


class HFStudent(nn.Module):
    """Our token embedding and head around Hugging Face's GPT-2 body (which adds its own positions)."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        from transformers import GPT2Config, GPT2Model

        ours = Student(cfg)
        self.obs_enc, self.act_emb, self.rew_emb, self.head = ours.obs_enc, ours.act_emb, ours.rew_emb, ours.head
        self.body = GPT2Model(GPT2Config(
            vocab_size=1, n_positions=cfg.block_size, n_embd=cfg.n_embd, n_layer=cfg.n_layer, n_head=cfg.n_head,
            resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout, attn_pdrop=cfg.attn_dropout, activation_function="gelu",
            bos_token_id=0, eos_token_id=0,
        ))

    def forward(self, obs: torch.Tensor, prev_action: torch.Tensor, prev_reward: torch.Tensor) -> torch.Tensor:
        b, t = prev_action.shape
        x = (self.obs_enc(obs.reshape(b * t, -1)).view(b, t, -1) + self.act_emb(prev_action)
             + self.rew_emb(prev_reward[..., None]))
        return self.head(self.body(inputs_embeds=x).last_hidden_state)


def train_step_seconds(models: dict[str, nn.Module], batch: int, tokens: int, repeats: int) -> dict[str, float]:
    """Fastest AdamW update of each model on the same random batch, the models timed alternately."""
    g = torch.Generator().manual_seed(0)
    obs = torch.randint(0, 81, (batch, tokens, 1), generator=g, dtype=torch.uint8)
    prev_action = torch.randint(0, 6, (batch, tokens), generator=g)
    prev_reward = torch.rand(batch, tokens, generator=g)
    target = torch.randint(0, 5, (batch, tokens), generator=g)
    optims = {k: torch.optim.AdamW(m.parameters(), lr=3e-4) for k, m in models.items()}
    best = {k: float("inf") for k in models}
    for _ in range(repeats):
        for name, model in models.items():
            model.train()
            start = time.perf_counter()
            loss = F.cross_entropy(model(obs, prev_action, prev_reward).reshape(-1, 5), target.reshape(-1))
            optims[name].zero_grad()
            loss.backward()
            optims[name].step()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def rollout_steps_per_s(model: Student, goals: np.ndarray, episodes: int, repeats: int) -> dict[str, float]:
    """Environment steps per second of frozen rollouts with and without the KV cache (alternating)."""
    best = {"cache": float("inf"), "recompute": float("inf")}
    for _ in range(repeats):
        for mode in best:
            start = time.perf_counter()
            darkroom_rollout(model, goals, episodes, context_episodes=4, seed=0, use_cache=mode == "cache")
            best[mode] = min(best[mode], time.perf_counter() - start)
    return {mode: len(goals) * episodes * 20 / s for mode, s in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: stable on a shared 2-core box)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    s = get_scale("lab").student
    cfg = TransformerConfig(block_size=80, n_layer=s.n_layer, n_head=s.n_head, n_embd=s.n_embd)
    torch.manual_seed(0)
    ours, hf = Student(cfg), HFStudent(cfg)
    n_ours, n_hf = ours.n_params(), sum(p.numel() for p in hf.parameters())
    secs = train_step_seconds({"ours": ours, "hf": hf}, s.batch_size, cfg.block_size, args.repeats)
    tokens = s.batch_size * cfg.block_size
    roll = rollout_steps_per_s(ours.eval(), np.arange(80), episodes=8, repeats=max(2, args.repeats // 2))
    result = {
        "train_tokens_per_s": round(tokens / secs["ours"]),
        "hf_train_tokens_per_s": round(tokens / secs["hf"]),
        "train_ratio": round(secs["hf"] / secs["ours"], 2),
        "rollout_steps_per_s_cache": round(roll["cache"]),
        "rollout_steps_per_s_recompute": round(roll["recompute"]),
        "kv_speedup": round(roll["cache"] / roll["recompute"], 2),
        "params_ours": n_ours,
        "params_hf": n_hf,
        "batch": s.batch_size,
        "tokens_per_window": cfg.block_size,
        "threads": args.threads,
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
    }
    print(f"ours {result['train_tokens_per_s']:,} tokens/s vs GPT-2 {result['hf_train_tokens_per_s']:,} "
          f"(x{result['train_ratio']}); rollouts with KV cache x{result['kv_speedup']}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
