"""SASRec in plain PyTorch (CPU), trained with full cross-entropy: a
user-sequence baseline for grurec's personalized models.

Written from the paper (Kang & McAuley, "Self-Attentive Sequential
Recommendation", ICDM 2018), not from any implementation; the loss is the
full softmax cross-entropy over all items at every position, as in Klenitskiy
& Vasilev ("Turning Dross Into Gold Loss: is BERT4Rec really better than
SASRec?", RecSys 2023), who report SASRec with it at HR@10 0.0533, NDCG@10
0.0327 on amazon-beauty; S3-Rec's table (Zhou et al., CIKM 2020) has SASRec
(its original sampled loss) at HR@10 .0605, NDCG@10 .0318 on beauty-s3rec.

Dimension names: B users per batch, L = max_len positions, d hidden size,
N items (row 0 of the item table is padding; item i is row i + 1).

Model (the paper's section III):
* Input: E = M[s_t] + P[t] for the last L items of a sequence, left-padded
  with a zero vector (row 0 of M is kept at zero); dropout on E.
* Blocks (``blocks``, default 2), each g(x) = x + Dropout(g(LayerNorm(x)))
  for g = single-head causal self-attention (Attention(xW_Q, xW_K, xW_V), a
  query attends to itself and earlier real positions) and g = the point-wise
  FFN ReLU(x W1 + b1) W2 + b2 (dropout after the ReLU); padding positions are
  zeroed after every block. A final LayerNorm on the last block's output
  (the residual stream of this pre-norm form is otherwise unnormalised).
* Scores r_t = F_t M^T over all N items with the shared item table M.
* Loss: cross-entropy over all N items at every real position (target = the
  next item), mean over the real positions of the batch; Adam (lr 1e-3,
  betas 0.9 / 0.98 as the paper).
* Early stopping on the validation HR@10 (target = the second-to-last event,
  history = everything before it); the best epoch's weights are tested
  (target = the last event, history = everything before it). Full ranking,
  history items excluded (benchmarks/_loo.py).

Usage:

    python benchmarks/torch_sasrec.py --data beauty-s3rec --threads 1 --time-budget 900
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _loo  # noqa: E402
from _machine import cpu_line  # noqa: E402


class Block(nn.Module):
    """One self-attention block: pre-LayerNorm, residual, dropout (paper Eq. 4)."""

    def __init__(self, d: int, p: float):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)  # [W_Q | W_K | W_V]
        self.ff1, self.ff2 = nn.Linear(d, d), nn.Linear(d, d)
        self.p = p

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x [B, L, d]; mask [B, 1, L, L] bool, True = may attend."""
        q, k, v = self.qkv(self.ln1(x)).unsqueeze(1).chunk(3, -1)  # [B, 1, L, d] each
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask).squeeze(1)
        x = x + F.dropout(a, self.p, self.training)
        f = self.ff2(F.dropout(F.relu(self.ff1(self.ln2(x))), self.p, self.training))
        return x + F.dropout(f, self.p, self.training)


class SASRec(nn.Module):
    def __init__(self, n_items: int, max_len: int, d: int = 64, blocks: int = 2, p: float = 0.5):
        super().__init__()
        self.item = nn.Embedding(n_items + 1, d, padding_idx=0)  # M [N + 1, d], row 0 = padding
        self.pos = nn.Embedding(max_len, d)  # P [L, d]
        self.blocks = nn.ModuleList(Block(d, p) for _ in range(blocks))
        self.ln = nn.LayerNorm(d)
        self.p, self.max_len = p, max_len
        nn.init.normal_(self.item.weight, std=d ** -0.5)
        nn.init.normal_(self.pos.weight, std=d ** -0.5)
        with torch.no_grad():
            self.item.weight[0].zero_()

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """seq [B, L] item rows (0 = padding, left) -> F [B, L, d]."""
        L = seq.shape[1]
        real = seq > 0  # [B, L]
        x = self.item(seq) + self.pos.weight[self.max_len - L:]  # positions end at the last one
        x = F.dropout(x, self.p, self.training) * real.unsqueeze(-1)
        causal = torch.ones(L, L, dtype=torch.bool).tril()
        # a query attends to earlier real positions and always to itself (so a
        # padding query has a key and no row of the softmax is empty)
        mask = (causal & real.unsqueeze(1)) | torch.eye(L, dtype=torch.bool)  # [B, L, L]
        mask = mask.unsqueeze(1)
        for b in self.blocks:
            x = b(x, mask) * real.unsqueeze(-1)
        return self.ln(x)

    def scores(self, h: torch.Tensor) -> torch.Tensor:
        """h [..., d] -> scores over the N items [..., N] (the padding row left out)."""
        return h @ self.item.weight[1:].t()


def left_pad(seqs: list, L: int) -> torch.Tensor:
    """Item indices -> [len(seqs), L] rows (index + 1), the last L of each, left-padded with 0."""
    out = np.zeros((len(seqs), L), np.int64)
    for i, s in enumerate(seqs):
        s = s[-L:]
        if len(s):
            out[i, L - len(s):] = s + 1
    return torch.from_numpy(out)


def training_pairs(train, L: int):
    """Per user with 2 or more training events: inputs = the last L + 1 events
    but the last, targets = the same shifted by one; both [U, L] rows, 0 = padding."""
    off, items = train.offsets, train.items.astype(np.int64)
    seqs = [items[off[u]:off[u + 1]] for u in range(train.n_sessions) if off[u + 1] - off[u] >= 2]
    inp = left_pad([s[-L - 1:-1] for s in seqs], L)
    tgt = left_pad([s[-L:] for s in seqs], L)
    return inp, tgt


def score_fn(model: SASRec, L: int):
    @torch.no_grad()
    def score(hist):
        model.eval()
        h = model(left_pad(hist, L))[:, -1]  # the last position's output [b, d]
        return model.scores(h).numpy()
    return score


def run(name: str, max_len: int, d: int, blocks: int, dropout: float, lr: float, batch_size: int,
        max_epochs: int, patience: int, time_budget: float, seed: int, root=None) -> dict:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    data = _loo.leave_one_out(name, root)
    N = data.n_items
    model = SASRec(N, max_len, d, blocks, dropout)
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.98))
    inp, tgt = training_pairs(data.train, max_len)
    U = len(inp)
    best, best_state, best_epoch, bad, history = -1.0, None, 0, 0, []
    train_s, t_start = 0.0, time.perf_counter()
    for epoch in range(1, max_epochs + 1):
        model.train()
        t0 = time.perf_counter()
        order = torch.from_numpy(rng.permutation(U))
        loss_sum, n_pos = 0.0, 0
        for s in range(0, U, batch_size):
            idx = order[s:s + batch_size]
            x, y = inp[idx], tgt[idx]  # [B, L]
            real = y > 0
            h = model(x)[real]  # [P, d]: only the real positions are scored
            loss = F.cross_entropy(model.scores(h), y[real] - 1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                model.item.weight[0].zero_()
            loss_sum += loss.item() * len(h)
            n_pos += len(h)
        dt = time.perf_counter() - t0
        train_s += dt
        v = _loo.evaluate(score_fn(model, max_len), data.valid, N, cutoffs=(10,))
        history.append(dict(epoch=epoch, loss=loss_sum / n_pos, seconds=dt, valid_hr10=v["hr@10"],
                            valid_ndcg10=v["ndcg@10"]))
        print(f"{name} epoch {epoch}: loss {loss_sum / n_pos:.4f}  {dt:.1f} s  "
              f"valid HR@10 {v['hr@10']:.4f} NDCG@10 {v['ndcg@10']:.4f}", flush=True)
        if v["hr@10"] > best:
            best, best_epoch, bad = v["hr@10"], epoch, 0
            best_state = {k: t.clone() for k, t in model.state_dict().items()}
        else:
            bad += 1
        elapsed = time.perf_counter() - t_start
        if bad >= patience:
            stop = f"early stop (no better valid HR@10 for {patience} epochs)"
            break
        if elapsed + elapsed / epoch > time_budget:
            stop = f"time budget {time_budget:.0f} s (next epoch would pass it)"
            break
    else:
        stop = f"max_epochs {max_epochs}"
    model.load_state_dict(best_state)
    test = _loo.evaluate(score_fn(model, max_len), data.test, N, cutoffs=(10, 20))
    return dict(data=name, n_users=data.test.n_sessions, n_items=N,
                train_events=int(data.train.n_events), epochs=len(history), best_epoch=best_epoch,
                stop=stop, train_seconds=train_s, wall_seconds=time.perf_counter() - t_start,
                valid_hr10=best, test=test, history=history)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="SASRec with full cross-entropy, leave-one-out.")
    p.add_argument("--data", nargs="+", choices=_loo.DATASETS, default=["beauty-s3rec"])
    p.add_argument("--max-len", type=int, default=0, help="0 = 50, 200 for ml-100k")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--blocks", type=int, default=2)
    p.add_argument("--dropout", type=float, default=-1, help="-1 = 0.5, 0.2 for ml-100k (the paper's)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=200, help="at most this many epochs")
    p.add_argument("--patience", type=int, default=5)
    p.add_argument("--time-budget", type=float, default=900, help="seconds per data set (wall)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    for name in args.data:
        ml = args.max_len or (200 if name == "ml-100k" else 50)
        dr = args.dropout if args.dropout >= 0 else (0.2 if name == "ml-100k" else 0.5)
        r = run(name, ml, args.hidden, args.blocks, dr, args.lr, args.batch_size, args.epochs,
                args.patience, args.time_budget, args.seed)
        r.update(max_len=ml, dropout=dr, hidden=args.hidden, blocks=args.blocks, lr=args.lr,
                 batch_size=args.batch_size, threads=args.threads, seed=args.seed,
                 torch=torch.__version__)
        t = r["test"]
        print(cpu_line())
        print(f"{name}: SASRec full CE  HR@10 {t['hr@10']:.4f}  NDCG@10 {t['ndcg@10']:.4f}  "
              f"HR@20 {t['hr@20']:.4f}  NDCG@20 {t['ndcg@20']:.4f}  ({t['n_users']} users, "
              f"{t['n_target_in_history']} targets in history)  epochs {r['epochs']} "
              f"(best {r['best_epoch']}, {r['stop']})  training {r['train_seconds']:.0f} s  "
              f"threads {args.threads}")
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
