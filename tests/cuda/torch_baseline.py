"""torch_baseline.py - PyTorch autograd of the plain selective scan (REFERENCE.md section 7, a loop
over L), forward + backward, timed with CUDA events on the same GPU as the CUDA kernels.
Usage: python3 tests/cuda/torch_baseline.py [batch D L N dtype]...  (default: the issue's first shape)"""
import sys
import torch
import torch.nn.functional as F


def plain_scan(u, delta, A, B, C, D, z, delta_bias):
    # u, delta, z (b, d, l); A (d, n); B, C (b, n, l) [G = 1]; arithmetic in float32
    dtype_in = u.dtype
    u, delta, z, B, C = (t.float() for t in (u, delta, z, B, C))
    delta = F.softplus(delta + delta_bias[None, :, None])
    b, d, l = u.shape
    x = u.new_zeros(b, d, A.shape[1])
    dA = torch.exp(torch.einsum('bdl,dn->bdln', delta, A))
    dBu = torch.einsum('bdl,bnl,bdl->bdln', delta, B, u)
    ys = []
    for t in range(l):
        x = dA[:, :, t] * x + dBu[:, :, t]
        ys.append(torch.einsum('bdn,bn->bd', x, C[:, :, t]))
    y = torch.stack(ys, dim=2) + u * D[None, :, None]
    return (y * F.silu(z)).to(dtype_in)


def run(batch, D, L, N, dt):
    dev = 'cuda'
    dtype = {'f32': torch.float32, 'bf16': torch.bfloat16}[dt]
    g = torch.Generator(device=dev).manual_seed(0)
    r = lambda *s, lo=-1.0, hi=1.0, t=dtype: (torch.rand(*s, device=dev, generator=g) * (hi - lo) + lo).to(t).requires_grad_()
    u, delta, z = r(batch, D, L), r(batch, D, L, lo=-4, hi=0), r(batch, D, L, lo=-2, hi=2)
    B, C = r(batch, N, L), r(batch, N, L)
    A = r(D, N, lo=-8, hi=-0.5, t=torch.float32)
    Dv, bias = r(D, t=torch.float32), r(D, lo=-1, hi=0, t=torch.float32)
    dy = torch.rand(batch, D, L, device=dev, generator=g).to(dtype)
    inputs = (u, delta, A, B, C, Dv, z, bias)

    def fwd():
        return plain_scan(*inputs)

    def fwd_bwd():
        out = plain_scan(*inputs)
        torch.autograd.grad(out, inputs, dy)

    res = []
    for fn in (fwd, fwd_bwd):
        fn()
        torch.cuda.synchronize()
        ts = []
        for _ in range(3):
            e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            e0.record()
            fn()
            e1.record()
            torch.cuda.synchronize()
            ts.append(e0.elapsed_time(e1))
        res.append(sorted(ts)[1])
    print(f'torch-autograd {dt:5s} b{batch} D{D} L{L} N{N}: forward {res[0]:.2f} ms, '
          f'forward+backward {res[1]:.2f} ms, backward ~{res[1] - res[0]:.2f} ms', flush=True)


if __name__ == '__main__':
    args = sys.argv[1:]
    shapes = [args[i:i + 5] for i in range(0, len(args), 5)] or [['8', '1536', '2048', '16', 'f32']]
    for s in shapes:
        run(int(s[0]), int(s[1]), int(s[2]), int(s[3]), s[4])
