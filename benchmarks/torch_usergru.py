"""A personalized GRU over user histories in plain PyTorch (CPU): the twin of
``grurec.UserGRU``, as a PyTorch user would write it.

GRU4Rec's training algorithm (benchmarks/torch_gru4rec.py, whose pieces it
reuses: parameters, initialisation, negative sampler, GRU cell, losses,
Adagrad with momentum) generalised from one-step to truncated
back-propagation through time over T-step windows of user sequences. With
``bptt=1`` it is GRU4Rec's algorithm (tests/test_torch_usergru.py checks
the two twins against each other).

Dimension names: T steps per window (``bptt``), B slots (live users),
V valid (t, b) positions of a window (V <= T B), H_l hidden size of layer l,
I input size, N items, S sampled negatives, C = V + S candidates.

* Data: each user's events in time order form one sequence (the users are
  the "sessions" of grurec.SessionData, in the order of their first event);
  with ``max_len`` = L > 0 only each user's last L events are used; users
  with fewer than 2 events have nothing to predict and are left out.
* Session-parallel slots over users (the scheduler of cpp/core/slots.cpp):
  B slots; each window takes the next T (input, target) pairs of every
  slot's user (input = item i, target = item i + 1). A slot whose user has
  fewer than T pairs left gets padding positions at the end of the window
  (no input row, no loss, no gradient; the slot's state stays at its last
  real step). After the window a slot whose user has no pair left takes the
  next unused user with its state reset to zero (every layer), or, when no
  user is left, retires: the last slot moves into it and the batch shrinks.
* Forward over the window from the carried states (detached: gradients flow
  through the T steps of the window, not into the carried state). The input
  modes are GRU4Rec's (shared table, separate embedding, one-hot), with
  ``dropout_p_embed`` on the input. Hidden dropout on every layer's output at
  every step, carried: the dropped output is what the next layer and the
  scoring read and the state the layer continues from. The state carried to
  the next window is the last step's (dropped) state. Layer by layer: the
  input product of a layer is one [T B, I] x [I, 3H] product, only the
  recurrent products run step by step (torch.nn.GRU cannot carry the dropped
  output as its state, so the cell is torch_gru4rec.gru_cell).
* Loss at every valid position p (row p of R[V, C]): candidates = the
  window's V valid targets (in-batch negatives for each other) + S negatives
  drawn once per window with probability ~ popularity^sample_alpha, shared
  by every position; row p's target is column p; cross-entropy with logQ
  correction, BPR-max or TOP1-max exactly as torch_gru4rec.loss_rows. The
  loss is the sum over the V rows divided by batch_size * T (the configured
  batch size, also in the shrinking windows at the end of an epoch).
* Adagrad with momentum: dense for the GRU weights, on the touched rows only
  for the item tables (candidates; inputs of valid positions in the shared
  mode; padding touches no row).

Usage:

    python benchmarks/torch_usergru.py --data beauty-s3rec --bptt 8 --epochs 10 --threads 1
    python benchmarks/torch_usergru.py --data amazon-beauty --events 200000   # speed only
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _loo  # noqa: E402
import torch_gru4rec as tg  # noqa: E402
from _machine import cpu_line  # noqa: E402


def user_sequences(data, max_len: int = 0) -> tg.Sessions:
    """User sequences -> the twins' ``Sessions``: a grurec SessionData (its
    vocabulary kept), a torch_gru4rec ``Sessions`` or a DataFrame (SessionId =
    user, ItemId, Time); users with fewer than 2 events dropped, each user
    cut to the last ``max_len`` events (0 = all)."""
    if isinstance(data, tg.Sessions):
        sd = data
    elif hasattr(data, "offsets") and hasattr(data, "item_ids"):  # grurec.SessionData
        sd = tg.Sessions(np.asarray(data.offsets, np.int64), np.asarray(data.items, np.int64),
                         np.asarray(data.item_ids))
    else:
        sd = tg.prepare(data)
    lengths = np.diff(sd.offsets)
    keep = lengths >= 2
    if max_len > 0:
        start = np.maximum(sd.offsets[:-1], sd.offsets[1:] - max_len)
    else:
        start = sd.offsets[:-1]
    start, end = start[keep], sd.offsets[1:][keep]
    n = end - start
    ev = np.repeat(start - np.r_[0, np.cumsum(n)[:-1]], n) + np.arange(n.sum())
    return tg.Sessions(np.r_[0, np.cumsum(n)].astype(np.int64), sd.items[ev], sd.item_ids)


class TorchUserGRU(tg.TorchGRU4Rec):
    """GRU4Rec's hyperparameters plus ``bptt`` (T, steps per window) and
    ``max_len`` (each user's last events used for training, 0 = all)."""

    def __init__(self, *, bptt: int = 1, max_len: int = 0, **kw):
        super().__init__(**kw)
        if int(bptt) < 1:
            raise ValueError(f"bptt: must be >= 1, got {bptt!r}")
        if int(max_len) != 0 and int(max_len) < 2:
            raise ValueError(f"max_len: must be 0 (all events) or >= 2, got {max_len!r}")
        self.bptt, self.max_len = int(bptt), int(max_len)

    def fit(self, data, sampler_factory=None) -> "TorchUserGRU":
        return super().fit(user_sequences(data, self.max_len), sampler_factory)

    # -------------------------------------------------------------- slots
    def _epoch(self, sd: tg.Sessions, sampler, lq_in, lq_s) -> tuple[int, float]:
        offsets, items = sd.offsets, sd.items
        T, n_users = self.bptt, sd.n_sessions
        B = min(self.batch_size, n_users)
        user = np.arange(B)  # slot -> user
        pos = offsets[:B].copy()  # slot -> position of its next input event
        next_user = B
        steps = np.arange(T)[:, None]  # [T, 1]
        states = [torch.zeros(B, H) for H in self.layers]
        events, loss_sum = 0, 0.0
        while B > 0:
            p = pos[None, :B] + steps  # [T, B]
            valid = p + 1 < offsets[user[:B] + 1][None, :]
            inp = np.where(valid, items[np.where(valid, p, 0)], -1)  # [T, B], -1 = padding
            tgt = np.where(valid, items[np.where(valid, p + 1, 0)], -1)
            neg = sampler.draw(self.n_sample) if sampler is not None else None
            states, loss = self._train_window(inp, tgt, neg, states, lq_in, lq_s)
            if not np.isfinite(loss):
                raise FloatingPointError(f"loss became {loss} after {events} events")
            loss_sum += loss
            events += int(valid.sum())
            # Advance (cpp/core/slots.cpp): finished slots take the next user
            # (state reset) or retire, the last slot moving into the retired one.
            moves, reset = [], []
            b = 0
            while b < B:
                pos[b] += T
                live = pos[b] + 1 < offsets[user[b] + 1]
                if not live and next_user < n_users:
                    user[b], pos[b] = next_user, offsets[next_user]
                    next_user += 1
                    live = True
                    reset.append(b)
                if live:
                    b += 1
                    continue
                B -= 1
                if b == B:
                    break
                user[b], pos[b] = user[B], pos[B]  # not yet advanced: b is visited again
                moves.append((B, b))
            for src, dst in moves:
                for h in states:
                    h[dst] = h[src]
            if reset:
                r = torch.tensor(reset)
                for h in states:
                    h.index_fill_(0, r, 0.0)
            states = [h[:B] for h in states]
            self._slots_moved(moves, reset, B)
        return events, loss_sum

    def _slots_moved(self, moves: list, reset: list, B: int) -> None:
        """After a window: slot src moved into dst for (src, dst) in moves,
        the slots in reset took a new user, B slots remain (torch_narm.py
        moves its attention memory along)."""

    # -------------------------------------------------------------- one window
    def _train_window(self, inp: np.ndarray, tgt: np.ndarray, neg: Optional[torch.Tensor],
                      states: list, lq_in, lq_s, valid: Optional[np.ndarray] = None
                      ) -> tuple[list, float]:
        """Forward, backward and update for one window. inp, tgt [T, B] item
        indices; valid [T, B] bool (default inp >= 0: -1 marks padding), the
        items at padding positions are never read; neg [S] or None; states
        the detached states [B, H_l]. Returns the carried states and the sum
        of the V row losses (the update uses that sum over batch_size * T)."""
        p, mode = self.params, self.mode
        T, B = inp.shape
        valid = inp >= 0 if valid is None else np.asarray(valid, bool)  # [T, B]
        vpos = np.flatnonzero(valid.ravel())  # [V] valid positions, t-major
        V = len(vpos)
        vidx = torch.from_numpy(vpos)
        inp_v = torch.from_numpy(inp.ravel()[vpos].astype(np.int64))  # [V]
        tgt_v = torch.from_numpy(tgt.ravel()[vpos].astype(np.int64))  # [V]
        cand = tgt_v if neg is None else torch.cat([tgt_v, neg])  # [C]
        C = len(cand)
        rows_y, inv_y, Wy_r, col, Wy_c, by_c, dense, sparse = self._output_rows(cand, inp_v)

        # ---- forward: inputs of the valid positions, zero rows for padding
        pe, ph = self.dropout_p_embed, self.dropout_p_hidden
        if mode == 0:
            rows_in, inv_in = torch.unique(inp_v, return_inverse=True)
            W0_r = p["W_ih0"].index_select(0, rows_in).requires_grad_()  # [R_in, 3H_0]
            sparse["W_ih0"] = (rows_in, W0_r)
            a0 = W0_r.index_select(0, inv_in)  # [V, 3H_0]
            if pe > 0:
                a0 = a0 * F.dropout(torch.ones(V, 1), pe, True)
            a0 = a0.new_zeros(T * B, a0.shape[1]).index_copy(0, vidx, a0)  # [T B, 3H_0]
            x = None
        else:
            if mode == 2:
                x = Wy_r.index_select(0, inv_y[C:])  # [V, H_L]
            else:
                rows_in, inv_in = torch.unique(inp_v, return_inverse=True)
                E_r = p["emb"].index_select(0, rows_in).requires_grad_()
                sparse["emb"] = (rows_in, E_r)
                x = E_r.index_select(0, inv_in)  # [V, E]
            if pe > 0:
                x = F.dropout(x, pe, True)
            x = x.new_zeros(T * B, x.shape[1]).index_copy(0, vidx, x)  # [T B, I]
        all_valid = bool(valid.all())
        keep = [torch.from_numpy(valid[t]).unsqueeze(1) for t in range(T)]  # [B, 1] each
        new_states = []
        for l, H in enumerate(self.layers):
            if x is None:
                gi = a0 + dense["b0"]
            else:
                gi = torch.addmm(dense[f"b{l}"], x, dense[f"W_ih{l}"])  # [T B, 3H]
            gi = gi.view(T, B, 3 * H)
            h, outs = states[l], []
            for t in range(T):
                h_new = tg.gru_cell(gi[t], h, dense[f"W_hh{l}"], H, dense.get(f"bh{l}"))
                if ph > 0:
                    h_new = F.dropout(h_new, ph, True)
                h = h_new if all_valid else torch.where(keep[t], h_new, h)
                outs.append(h)
            x = torch.stack(outs).view(T * B, H)  # [T B, H]
            new_states.append(h.detach())
        if self.loss != "cross-entropy" and C < 2:
            return new_states, 0.0  # nothing to rank the target against (see the GRU4Rec twin)
        out = self._readout(x, T, B, vidx, dense)  # [V, H_L]
        R = torch.addmm(by_c, out, Wy_c.t()).index_select(1, col)  # [V, U] -> [V, C]
        qcorr = None
        if lq_in is not None:
            qcorr = lq_in.index_select(0, tgt_v) if neg is None else torch.cat(
                [lq_in.index_select(0, tgt_v), lq_s.index_select(0, neg)])
        row_sum = tg.loss_rows(self.loss, R, qcorr, self.elu_param, self.bpreg).sum()
        loss = row_sum / (self.batch_size * T)

        # ---- backward and update
        loss.backward()
        self._update(dense, sparse)
        return new_states, row_sum.item()

    def _readout(self, x: torch.Tensor, T: int, B: int, vidx: torch.Tensor,
                 dense: dict) -> torch.Tensor:
        """The query of every valid position [V, H_L] from the last layer's
        outputs x [T B, H_L] (t-major): the output itself (torch_narm.py adds
        an attention readout)."""
        return x.index_select(0, vidx)

    # -------------------------------------------------------------- inference
    @torch.inference_mode()
    def final_states(self, histories: list) -> torch.Tensor:
        """Last layer's state [len(histories), H_L] after each history (item
        indices, oldest first; only the last ``max_len`` when set), no dropout."""
        if self.max_len > 0:
            histories = [h[-self.max_len:] for h in histories]
        n = np.array([len(h) for h in histories])
        Tm = int(n.max()) if len(n) else 0
        seq = np.zeros((len(histories), Tm), np.int64)
        for i, h in enumerate(histories):
            seq[i, :len(h)] = h
        states = [torch.zeros(len(histories), H) for H in self.layers]
        for t in range(Tm):
            new = self.step(states, torch.from_numpy(seq[:, t]))
            live = torch.from_numpy(n > t).unsqueeze(1)
            states = [torch.where(live, a, b) for a, b in zip(new, states)]
        return states[-1]

    def score(self, histories: list) -> np.ndarray:
        """Scores [len(histories), N] of every item after each history."""
        with torch.inference_mode():
            h = self.final_states(histories)
            return torch.addmm(self.params["b_y"], h, self.params["W_y"].t()).numpy()


# ------------------------------------------------------------------ command line

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="The UserGRU twin: GRU4Rec's algorithm over user "
                                "histories with truncated BPTT, leave-one-out evaluation.")
    p.add_argument("--data", choices=_loo.DATASETS, default="beauty-s3rec")
    p.add_argument("--bptt", type=int, default=8)
    p.add_argument("--max-len", type=int, default=0, help="each user's last events (0 = all)")
    p.add_argument("--layers", type=int, nargs="+", default=[100])
    p.add_argument("--loss", choices=tg.LOSSES, default="cross-entropy")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--n-sample", type=int, default=2048)
    p.add_argument("--sample-alpha", type=float, default=0.5)
    p.add_argument("--logq", type=float, default=1.0)
    p.add_argument("--bpreg", type=float, default=1.0)
    p.add_argument("--elu-param", type=float, default=0.0)
    p.add_argument("--embedding", type=int, default=0,
                   help="0 = shared (constrained) embedding; >0 = a separate table of that size; "
                   "-1 = one-hot input")
    p.add_argument("--dropout-p-embed", type=float, default=0.0)
    p.add_argument("--dropout-p-hidden", type=float, default=0.2)
    p.add_argument("--learning-rate", type=float, default=0.05)
    p.add_argument("--momentum", type=float, default=0.3)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--events", type=int, default=0,
                   help="speed only: train one pass over the first users holding this many "
                   "training pairs, no evaluation")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = _loo.leave_one_out(args.data)
    cfg = dict(layers=args.layers, loss=args.loss, batch_size=args.batch_size,
               n_sample=args.n_sample, sample_alpha=args.sample_alpha, logq=args.logq,
               bpreg=args.bpreg, elu_param=args.elu_param, embedding=max(args.embedding, 0),
               constrained_embedding=args.embedding == 0, dropout_p_embed=args.dropout_p_embed,
               dropout_p_hidden=args.dropout_p_hidden, learning_rate=args.learning_rate,
               momentum=args.momentum, n_epochs=args.epochs, num_threads=args.threads,
               random_state=args.seed)
    model = TorchUserGRU(bptt=args.bptt, max_len=args.max_len, **cfg)
    train = user_sequences(data.train, args.max_len)
    if args.events > 0:
        pairs = np.cumsum(np.diff(train.offsets) - 1)
        n = min(int(np.searchsorted(pairs, args.events)) + 1, train.n_sessions)
        train = tg.Sessions(train.offsets[:n + 1], train.items[:train.offsets[n]], train.item_ids)
        model.n_epochs = 1
    model.fit(train)
    events = sum(h["events"] for h in model.history)
    seconds = sum(h["seconds"] for h in model.history)
    out = dict(data=args.data, params=dict(cfg, bptt=args.bptt, max_len=args.max_len),
               train_users=train.n_sessions, train_pairs=events // max(len(model.history), 1),
               n_items=data.n_items, threads=args.threads, train_seconds=seconds,
               events_per_s=events / seconds if seconds > 0 else 0.0, history=model.history,
               torch=torch.__version__)
    print(cpu_line())
    print(f"{args.data} UserGRU twin (torch, bptt {args.bptt}, layers {args.layers}, {args.loss}): "
          f"{out['events_per_s']:,.0f} events/s over {len(model.history)} epoch(s), "
          f"{seconds:.1f} s training, {args.threads} thread(s), loss {model.history[-1]['loss']:.4f}")
    if args.events == 0:
        t0 = time.perf_counter()
        out["test"] = _loo.evaluate(model.score, data.test, data.n_items, cutoffs=(10, 20))
        out["eval_seconds"] = time.perf_counter() - t0
        t = out["test"]
        print(f"{args.data}: HR@10 {t['hr@10']:.4f}  NDCG@10 {t['ndcg@10']:.4f}  "
              f"HR@20 {t['hr@20']:.4f}  NDCG@20 {t['ndcg@20']:.4f}  ({t['n_users']} users)")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
