#!/usr/bin/python3
"""scan_torch.py BATCH D L N THREADS REPEATS - the baseline of bench_scan: the selective scan as a
plain PyTorch loop over time (what the official selective_scan_ref does), float32, channel-first,
with z, D, delta_bias and softplus.  Prints "forward_ms MEDIAN" (wall-clock) and "forward_cpu_ms MIN" (CPU time of the process) on stdout."""
import sys, time
import torch
import torch.nn.functional as F

batch, D, L, N, threads, repeats = (int(a) for a in sys.argv[1:7])
torch.set_num_threads(threads)
g = torch.Generator().manual_seed(0)
u = torch.randn(batch, D, L, generator=g)
delta = torch.randn(batch, D, L, generator=g) - 1
A = -torch.rand(D, N, generator=g) - 0.5
B = torch.randn(batch, N, L, generator=g)
C = torch.randn(batch, N, L, generator=g)
Dk = torch.randn(D, generator=g)
z = torch.randn(batch, D, L, generator=g)
bias = 0.1 * torch.randn(D, generator=g)


def scan():
    dt = F.softplus(delta + bias[:, None])                          # (batch, D, L)
    dA = torch.exp(dt[..., None] * A[:, None, :])                     # (batch, D, L, N)
    dBu = (dt * u)[..., None] * B.transpose(1, 2)[:, None]            # (batch, D, L, N)
    x = torch.zeros(batch, D, N)
    ys = []
    for t in range(L):
        x = dA[:, :, t] * x + dBu[:, :, t]
        ys.append(torch.einsum('bdn,bn->bd', x, C[:, :, t]))
    y = torch.stack(ys, dim=2) + Dk[:, None] * u
    return y * F.silu(z), x


with torch.no_grad():
    scan()
    times, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        scan()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
times.sort()
print('forward_ms %.3f' % (1000 * times[len(times) // 2]))
print('forward_cpu_ms %.3f' % (1000 * min(cpu)))
