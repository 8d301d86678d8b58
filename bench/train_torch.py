#!/usr/bin/python3
"""train_torch.py - the baseline of bench_train.sh: the same S4D and Mamba models as ssm-train,
written in plain PyTorch (float32, CPU, autograd, torch.optim.AdamW), timed over training steps.

    /usr/bin/python3 bench/train_torch.py MODEL D_MODEL N_LAYERS D_STATE BATCH L VOCAB STEPS THREADS

Prints one line: tokens_per_s.  Mamba's scan is the plain sequential loop over time (the
"PyTorch loop" of REFERENCE.md section 9); S4D convolves by FFT (torch.fft)."""
import math, sys, time
import torch
import torch.nn.functional as F

model, dm, nl, N, B, L, V, steps, threads = sys.argv[1], *map(int, sys.argv[2:])
torch.set_num_threads(threads)
torch.manual_seed(0)
P = {}


def param(name, *shape, scale=0.1):
    P[name] = (torch.randn(*shape) * scale).requires_grad_()
    return P[name]


if model == 'mamba':
    di, R, K = 2 * dm, math.ceil(dm / 16), 4
    param('emb', V, dm, scale=0.02)
    for i in range(nl):
        param(f'{i}.norm', dm).data.fill_(1)
        param(f'{i}.in', 2 * di, dm); param(f'{i}.convw', di, 1, K); param(f'{i}.convb', di)
        param(f'{i}.x', R + 2 * N, di); param(f'{i}.dtw', di, R); param(f'{i}.dtb', di)
        P[f'{i}.Alog'] = torch.log(torch.arange(1, N + 1.0)).repeat(di, 1).requires_grad_()
        P[f'{i}.D'] = torch.ones(di).requires_grad_(); param(f'{i}.out', dm, di)
    param('normf', dm).data.fill_(1)

    def forward(tok):
        h = P['emb'][tok]
        for i in range(nl):
            xn = h * torch.rsqrt((h * h).mean(-1, keepdim=True) + 1e-5) * P[f'{i}.norm']
            x, z = (xn @ P[f'{i}.in'].T).split(di, -1)
            u = F.silu(F.conv1d(F.pad(x.transpose(1, 2), (K - 1, 0)), P[f'{i}.convw'], P[f'{i}.convb'], groups=di).transpose(1, 2))
            dt, Bm, Cm = (u @ P[f'{i}.x'].T).split([R, N, N], -1)
            delta = F.softplus(dt @ P[f'{i}.dtw'].T + P[f'{i}.dtb'])
            A = -torch.exp(P[f'{i}.Alog'])
            s = torch.zeros(h.shape[0], di, N)
            ys = []
            for t in range(L):
                s = torch.exp(delta[:, t, :, None] * A) * s + (delta[:, t] * u[:, t])[:, :, None] * Bm[:, t, None, :]
                ys.append((s * Cm[:, t, None, :]).sum(-1))
            y = (torch.stack(ys, 1) + P[f'{i}.D'] * u) * F.silu(z)
            h = h + y @ P[f'{i}.out'].T
        h = h * torch.rsqrt((h * h).mean(-1, keepdim=True) + 1e-5) * P['normf']
        return h @ P['emb'].T
else:
    H, M = dm, N // 2
    param('enc', H, 1); param('encb', H)
    for i in range(nl):
        param(f'{i}.lnw', H).data.fill_(1); param(f'{i}.lnb', H)
        param(f'{i}.logdt', H); param(f'{i}.Are', H, M); param(f'{i}.Aim', H, M)
        param(f'{i}.B', H, M, 2); param(f'{i}.C', H, M, 2); param(f'{i}.D', H)
        param(f'{i}.W', 2 * H, H); param(f'{i}.b', 2 * H)
    param('dec', 10, H); param('decb', 10)

    def forward(x):
        h = x @ P['enc'].T + P['encb']
        ar = torch.arange(L, dtype=torch.float32)
        for i in range(nl):
            xn = F.layer_norm(h, (H,), P[f'{i}.lnw'], P[f'{i}.lnb'])
            A = torch.complex(-torch.exp(P[f'{i}.Are']), P[f'{i}.Aim'])
            Bc = torch.view_as_complex(P[f'{i}.B']); Cc = torch.view_as_complex(P[f'{i}.C'])
            dtA = torch.exp(P[f'{i}.logdt'])[:, None] * A
            Kern = 2 * torch.real(((Cc * (torch.exp(dtA) - 1) / A * Bc)[:, :, None] * torch.exp(dtA[:, :, None] * ar)).sum(1))
            u = xn.transpose(1, 2)
            y = torch.fft.irfft(torch.fft.rfft(u, 2 * L) * torch.fft.rfft(Kern, 2 * L), 2 * L)[..., :L]
            y = (y + P[f'{i}.D'][:, None] * u).transpose(1, 2)
            o = F.gelu(y) @ P[f'{i}.W'].T + P[f'{i}.b']
            h = h + o[..., :H] * torch.sigmoid(o[..., H:])
        return h.mean(1) @ P['dec'].T + P['decb']

opt = torch.optim.AdamW(P.values(), lr=1e-3)
tok = torch.randint(0, V, (B, L))
feat = torch.randn(B, L, 1)
tgt = torch.randint(0, V if model == 'mamba' else 10, (B, L) if model == 'mamba' else (B,))
t0 = None
for step in range(steps + 1):
    if step == 1:
        t0 = time.perf_counter()      # the first step warms up
    logits = forward(tok if model == 'mamba' else feat)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1))
    opt.zero_grad()
    loss.backward()
    opt.step()
print('%.1f' % (steps * B * L / (time.perf_counter() - t0)))
