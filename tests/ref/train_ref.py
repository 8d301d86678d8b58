#!/usr/bin/python3
"""train_ref.py - replays a few training steps of ssm-train's loop in PyTorch float64: the model of
model_ref.py, cross-entropy with ignored targets, global-norm clipping, AdamW with the parameter
groups of libcommon/params.c (decay / no decay / ssm), the warmup + cosine schedule of optim.h.
Covers what the single-gradient check of model_ref.py does not: the optimizer, its groups and
weight decay, the schedule and the clipping.

    /usr/bin/python3 tests/ref/train_ref.py CASE.ssm [TOL]

CASE.ssm (written by tests/unit/test_model_ref.c): `config`, `optim` (attributes lr, ssm_lr,
weight_decay, beta1, beta2, eps, clip, warmup, total_steps, min_lr_ratio), `init.NAME` (every
parameter before step 1, with attribute group=0|1|2), `tokens` (steps, batch, L) i32 or `features`
(steps, batch, L, d_input), `targets` (steps, n) i32, the C losses `losses` (steps) f64 and the C
parameters after the last step `final.NAME`.  Prints the relative errors of every step's loss and
of every parameter's total update; exits 1 if any exceeds TOL (default 1e-4 for the losses, 10 TOL
for the updates).
"""
import math, os, sys
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model_ref import load, mamba, s4d  # noqa: E402

torch.set_default_dtype(torch.float64)


def lr_factor(o, step):
    if o['warmup'] > 0 and step < o['warmup']:
        return (step + 1) / o['warmup']
    span = o['total_steps'] - o['warmup']
    prog = min(max((step - o['warmup']) / span if span > 0 else 1.0, 0.0), 1.0)
    return o['min_lr_ratio'] + (1 - o['min_lr_ratio']) * 0.5 * (1 + math.cos(math.pi * prog))


def main():
    path = sys.argv[1]
    tol = float(sys.argv[2]) if len(sys.argv) > 2 else 1e-4
    T = load(path)
    cfg = T['config'][0]
    o = {k: float(v) for k, v in T['optim'][0].items()}
    names = [n[5:] for n in T if n.startswith('init.')]
    P = {n: torch.tensor(T['init.' + n][1].astype(np.float64), requires_grad=True) for n in names}
    group = {n: int(T['init.' + n][0]['group']) for n in names}
    init = {n: P[n].detach().clone() for n in names}
    m = {n: torch.zeros_like(P[n]) for n in names}
    v = {n: torch.zeros_like(P[n]) for n in names}
    tokens = T['tokens'][1] if 'tokens' in T else None
    feats = T['features'][1] if 'features' in T else None
    targets, losses = T['targets'][1], T['losses'][1]
    model = mamba if cfg['model'] == 'mamba' else s4d
    worst = 0.0
    for step in range(len(losses)):
        tok = torch.tensor(tokens[step].astype(np.int64)) if tokens is not None else None
        ft = torch.tensor(feats[step].astype(np.float64)) if feats is not None else None
        logits = model(P, cfg, tok, ft)
        tgt = torch.tensor(targets[step].astype(np.int64))
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=-1)
        for p in P.values():
            p.grad = None
        loss.backward()
        err = abs(float(losses[step]) - loss.item()) / abs(loss.item())
        worst = max(worst, err)
        print('step %d loss %.3g  (C %.9g, torch %.9g)' % (step + 1, err, float(losses[step]), loss.item()))
        norm = math.sqrt(sum(float((p.grad ** 2).sum()) for p in P.values()))
        scale = o['clip'] / (norm + 1e-6) if o['clip'] > 0 and norm > o['clip'] else 1.0
        f, t = lr_factor(o, step), step + 1
        with torch.no_grad():
            for n, p in P.items():
                g = p.grad * scale
                m[n] = o['beta1'] * m[n] + (1 - o['beta1']) * g
                v[n] = o['beta2'] * v[n] + (1 - o['beta2']) * g * g
                mhat, vhat = m[n] / (1 - o['beta1'] ** t), v[n] / (1 - o['beta2'] ** t)
                lr = (o['ssm_lr'] if group[n] == 2 else o['lr']) * f
                wd = o['weight_decay'] if group[n] == 0 else 0.0
                p -= lr * (mhat / (vhat.sqrt() + o['eps']) + wd * p)
    wu = 0.0
    for n, p in P.items():
        ref = (p.detach() - init[n]).reshape(-1)
        got = torch.tensor(T['final.' + n][1].astype(np.float64)).reshape(-1) - init[n].reshape(-1)
        err = (got - ref).norm().item() / max(ref.norm().item(), 1e-30)
        wu = max(wu, err)
        print('%-40s update %.3g' % (n, err))
    print('worst loss %.3g (tolerance %g), worst update %.3g (tolerance %g)' % (worst, tol, wu, 10 * tol))
    sys.exit(0 if worst <= tol and wu <= 10 * tol else 1)


if __name__ == '__main__':
    main()
