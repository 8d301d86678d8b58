#!/usr/bin/python3
"""model_ref.py - the Mamba and S4D models of libcommon/model_{mamba,s4d}.c written again in plain
PyTorch (float64, autograd), straight from ../shared/REFERENCE.md sections 3, 7, 8: the trusted
reference for the whole-model loss and gradients.

    /usr/bin/python3 tests/ref/model_ref.py CASE.ssm [TOL]

CASE.ssm (written by tests/unit/test_model_ref.c) holds `config` (attributes: model=mamba|s4d|s4,
sizes), every parameter under its checkpoint name, `tokens` (batch, L) i32 or `features`
(batch, L, d_input) f32, `targets` i32, the C loss `loss` and the C gradients `grad.NAME`.
Prints one line per tensor with the relative error ||c - torch|| / ||torch|| and exits 1 if any
exceeds TOL (default 1e-4).  Debian's python3-torch (CPU) is enough.
"""
import os, sys
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ssm_stream  # noqa: E402

torch.set_default_dtype(torch.float64)


def load(path):
    out = {}
    with open(path, 'rb') as f:
        for name, code, attrs, arr in ssm_stream.frames(f):
            if code in (3, 4):                       # complex -> (..., 2) real pairs
                arr = np.stack([arr.real, arr.imag], -1)
            out[name] = (attrs, np.array(arr))
    return out


def rmsnorm(x, w, eps):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w


def mamba(P, c, tokens, feats):
    dm, nl, N = int(c['d_model']), int(c['n_layers']), int(c['d_state'])
    di, K, R = int(c['expand']) * dm, int(c['d_conv']), int(c['dt_rank'])
    eps = float(c.get('norm_eps', 1e-5))
    h = P['embedding.weight'][tokens] if tokens is not None else feats @ P['encoder.weight'].T + P['encoder.bias']
    Bsz, L = h.shape[0], h.shape[1]
    for i in range(nl):
        p = 'layers.%d.mixer.' % i
        xn = rmsnorm(h, P['layers.%d.norm.weight' % i], eps)
        xz = xn @ P[p + 'in_proj.weight'].T
        x, z = xz[..., :di], xz[..., di:]
        xc = F.conv1d(F.pad(x.transpose(1, 2), (K - 1, 0)), P[p + 'conv1d.weight'], P[p + 'conv1d.bias'],
                      groups=di).transpose(1, 2)
        u = F.silu(xc)
        dbc = u @ P[p + 'x_proj.weight'].T
        dt, Bm, Cm = dbc[..., :R], dbc[..., R:R + N], dbc[..., R + N:]
        delta = F.softplus(dt @ P[p + 'dt_proj.weight'].T + P[p + 'dt_proj.bias'])   # x > 20: x
        A = -torch.exp(P[p + 'A_log'])                                             # (di, N)
        s = torch.zeros(Bsz, di, N)
        ys = []
        for t in range(L):
            s = torch.exp(delta[:, t, :, None] * A) * s + delta[:, t, :, None] * Bm[:, t, None, :] * u[:, t, :, None]
            ys.append((s * Cm[:, t, None, :]).sum(-1) + P[p + 'D'] * u[:, t])
        y = torch.stack(ys, 1) * F.silu(z)
        h = h + y @ P[p + 'out_proj.weight'].T
    hf = rmsnorm(h, P['norm_f.weight'], eps)
    if int(c.get('n_classes', 0)) > 0:
        return hf.mean(1) @ P['head.weight'].T + P['head.bias']
    W = P['lm_head.weight'] if 'lm_head.weight' in P else P['embedding.weight']
    return hf @ W.T


def s4_kernel(P, p, L):
    """S4's kernel (model=s4) the slow, dense way, independent of the Cauchy/Woodbury path:
    the full N = 2M complex system in the eigenbasis, A = diag([Lambda; conj Lambda]) - P P^*,
    bilinear Abar, Bbar; the checkpoint's C is C-tilde = C (I - Abar^L), so the true
    C = Ct (I - Abar^L)^{-1} and K_l = Re(C Abar^l Bbar) (real up to rounding)."""
    dt = torch.exp(P[p + 'ssm.log_dt'])                                                  # (H)
    lam = torch.complex(-torch.exp(P[p + 'ssm.Lambda_real_log']), P[p + 'ssm.Lambda_imag'])  # (H, M)
    cx = lambda x: torch.complex(x[..., 0], x[..., 1])
    Pm, B, Ct = cx(P[p + 'ssm.P']), cx(P[p + 'ssm.B']), cx(P[p + 'ssm.C'])             # (H,R,M), (H,M)
    full = lambda x: torch.cat([x, x.conj()], -1)
    Pf, Bf, Cf, lf = full(Pm), full(B), full(Ct), full(lam)                              # N = 2M
    N = lf.shape[-1]
    Id = torch.eye(N, dtype=torch.complex128)
    A = torch.diag_embed(lf) - torch.einsum('hrn,hrk->hnk', Pf, Pf.conj())             # (H, N, N)
    back = Id - dt[:, None, None] / 2 * A
    Abar = torch.linalg.solve(back, Id + dt[:, None, None] / 2 * A)
    Bbar = torch.linalg.solve(back, (dt[:, None] * Bf)[..., None])[..., 0]             # (H, N)
    AL = torch.linalg.matrix_power(Abar, L)
    C = torch.linalg.solve((Id - AL).transpose(-1, -2), Cf[..., None])[..., 0]          # C (I - A^L) = Ct
    ks, x = [], Bbar
    for _ in range(L):
        ks.append((C * x).sum(-1).real)
        x = (Abar @ x[..., None])[..., 0]
    return torch.stack(ks, -1)                                                           # (H, L)


def s4d(P, c, tokens, feats):
    H, nl = int(c['d_model']), int(c['n_layers'])
    h = P['embedding.weight'][tokens] if tokens is not None else feats @ P['encoder.weight'].T + P['encoder.bias']
    L = h.shape[1]
    ar = torch.arange(L, dtype=torch.float64)
    for i in range(nl):
        p = 'layers.%d.' % i
        xn = F.layer_norm(h, (H,), P[p + 'norm.weight'], P[p + 'norm.bias'], 1e-5)
        if c['model'] == 's4':
            Kern = s4_kernel(P, p, L)
        else:
            dt = torch.exp(P[p + 'ssm.log_dt'])                                           # (H)
            A = torch.complex(-torch.exp(P[p + 'ssm.A_real_log']), P[p + 'ssm.A_imag'])  # (H, M)
            B = torch.complex(P[p + 'ssm.B'][..., 0], P[p + 'ssm.B'][..., 1])
            C = torch.complex(P[p + 'ssm.C'][..., 0], P[p + 'ssm.C'][..., 1])
            dtA = dt[:, None] * A
            Bbar = (torch.exp(dtA) - 1) / A * B                                           # ZOH
            Kern = 2 * torch.real(((C * Bbar)[:, :, None] * torch.exp(dtA[:, :, None] * ar)).sum(1))   # (H, L)
        idx = ar[:, None] - ar[None, :]                                               # t - s
        T = torch.where(idx >= 0, Kern[:, idx.clamp(min=0).long()], torch.zeros(()))  # (H, L, L)
        y = torch.einsum('hts,bsh->bth', T, xn) + P[p + 'ssm.D'] * xn
        g = F.gelu(y)
        o = g @ P[p + 'out_proj.weight'].T + P[p + 'out_proj.bias']
        h = h + o[..., :H] * torch.sigmoid(o[..., H:])
    if int(c.get('n_classes', 0)) > 0:
        pooled = h[:, -1] if c.get('pool') == 'last' else h.mean(1)
        return pooled @ P['decoder.weight'].T + P['decoder.bias']
    return h @ P['decoder.weight'].T + P['decoder.bias']


def main():
    path = sys.argv[1]
    tol = float(sys.argv[2]) if len(sys.argv) > 2 else 1e-4
    T = load(path)
    cfg = T['config'][0]
    skip = {'config', 'tokens', 'features', 'targets', 'loss'}
    P = {n: torch.tensor(a.astype(np.float64), requires_grad=True)
         for n, (_, a) in T.items() if n not in skip and not n.startswith('grad.')}
    tokens = torch.tensor(T['tokens'][1].astype(np.int64)) if 'tokens' in T else None
    feats = torch.tensor(T['features'][1].astype(np.float64)) if 'features' in T else None
    targets = torch.tensor(T['targets'][1].astype(np.int64))
    logits = (mamba if cfg['model'] == 'mamba' else s4d)(P, cfg, tokens, feats)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-1)
    loss.backward()
    worst = abs(float(T['loss'][1]) - loss.item()) / abs(loss.item())
    print('%-40s %.3g  (C %.9g, torch %.9g)' % ('loss', worst, float(T['loss'][1]), loss.item()))
    for n, t in P.items():
        if ('grad.' + n) not in T:
            print('missing grad.' + n)
            worst = float('inf')
            continue
        g = torch.tensor(T['grad.' + n][1].astype(np.float64)).reshape(t.shape)
        ref = t.grad
        err = (g - ref).norm().item() / max(ref.norm().item(), 1e-30)
        worst = max(worst, err)
        print('%-40s %.3g' % (n, err))
    print('worst %.3g (tolerance %g)' % (worst, tol))
    sys.exit(0 if worst <= tol else 1)


if __name__ == '__main__':
    main()
