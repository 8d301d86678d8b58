#!/usr/bin/python3
"""selective_scan_ref.py - reference tensors for ssm-scan from PyTorch autograd (Debian python3-torch).

The scan is written here from REFERENCE.md section 7 (a plain loop over time in float64, as the
official selective_scan_ref does), and PyTorch's autograd gives the gradients of
    loss = sum(out * dy) + sum(Re(h) Re(dh) + Im(h) Im(dh)).
Complex gradients follow PyTorch: dX = dL/dRe X + i dL/dIm X (what ssm-scan writes too).

    selective_scan_ref.py cases                  the names of the test cases
    selective_scan_ref.py make CASE DIR          DIR/in.ssm (inputs, dy, dh) and DIR/want.ssm (y, h and
                                                 the gradients); prints the ssm-scan flags of the case
    selective_scan_ref.py write FILE SPEC...     a stream of random tensors for the bats tests; SPEC is
                                                 NAME:DTYPE:D0,D1,..[:nan|:neg|:pos] (DTYPE f32 f64 c64
                                                 i32; nan puts one NaN in, neg/pos makes values < 0 / > 0)
    selective_scan_ref.py check [--only N,..] WANT GOT...
                                                 compares every tensor of WANT (or only those named) with the same name in
                                                 the GOT streams: relative error ||got - want|| / ||want||
                                                 below 2e-5 (forward) / 2e-4 (gradients); exit 1 if not
Nothing is committed: the bats test generates the set at test time (seeded, so reproducible).
"""
import os, sys
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ssm_stream  # noqa: E402  (the independent stream reader/writer)

# name: (batch, D, L, N, G (0 = invariant B, C), complex, layout, softplus, D, z, delta_bias, h0, seq)
CASES = {
    'mamba':     (2, 24, 37, 16, 1, False, 'bld', True, True, True, True, True, False),
    'official':  (2, 12, 29, 5, 2, False, 'bdl', True, True, False, True, False, False),
    'plain':     (1, 3, 11, 4, 1, False, 'bdl', False, False, False, False, False, False),
    'invariant': (2, 7, 19, 6, 0, False, 'bdl', False, True, True, False, True, False),
    'complex':   (2, 9, 23, 4, 0, True, 'bdl', True, True, True, True, True, False),
    'complex-selective': (2, 8, 17, 3, 2, True, 'bld', True, True, False, True, True, True),
    'packed':    (3, 10, 41, 7, 1, False, 'bld', True, True, True, True, True, True),
}


def make_inputs(case, seed=1234):
    batch, D, L, N, G, cplx, layout, softplus, hasD, hasz, hasbias, hash0, hasseq = CASES[case]
    g = torch.Generator().manual_seed(seed)
    f64 = torch.float64
    rn = lambda *s: torch.randn(*s, generator=g, dtype=f64)
    ru = lambda lo, hi, *s: lo + (hi - lo) * torch.rand(*s, generator=g, dtype=f64)
    cx = lambda t_re, t_im: torch.complex(t_re, t_im)
    t = {}
    t['u'] = rn(batch, D, L)                                   # channel-first here, (batch, D, L)
    t['delta'] = ru(-3, 0.5, batch, D, L) if softplus else ru(0.01, 0.6, batch, D, L)
    A = -ru(0.3, 2.0, D, N)
    t['A'] = cx(A, 3 * rn(D, N)) if cplx else A
    bshape = (D, N) if G == 0 else (batch, G, N, L)
    for k in 'BC':
        t[k] = cx(rn(*bshape), rn(*bshape)) if cplx else rn(*bshape)
    if hasD: t['D'] = rn(D)
    if hasz: t['z'] = rn(batch, D, L)
    if hasbias: t['delta_bias'] = 0.3 * rn(D)
    if hash0: t['h0'] = cx(rn(batch, D, N), rn(batch, D, N)) if cplx else rn(batch, D, N)
    if hasseq:
        starts = (torch.rand(batch, L, generator=g) < 0.15).to(torch.int64)
        starts[:, 0] = 0
        t['seq_idx'] = torch.cumsum(starts, 1).to(torch.int32)
    t['dy'] = rn(batch, D, L)
    t['dh'] = cx(rn(batch, D, N), rn(batch, D, N)) if cplx else rn(batch, D, N)
    # round every float input to float32, the precision ssm-scan computes in
    for k, v in t.items():
        if v.is_floating_point(): t[k] = v.float().double()
        elif v.is_complex(): t[k] = v.to(torch.complex64).to(torch.complex128)
    return t


def scan(t, softplus, G):
    """out, h of the selective scan; t holds channel-first tensors (B, C grouped (batch, G, N, L))."""
    u, delta, A = t['u'], t['delta'], t['A']
    batch, D, L = u.shape
    N = A.shape[1]
    if 'delta_bias' in t: delta = delta + t['delta_bias'][:, None]
    if softplus: delta = F.softplus(delta)            # threshold 20: x > 20 gives x
    dA = torch.exp(delta[..., None] * A[:, None, :])   # (batch, D, L, N)
    if G == 0:
        Bx = t['B'][None, :, None, :]                 # (1, D, 1, N)
        Cx = t['C'][None, :, None, :]
    else:
        Bx = t['B'].repeat_interleave(D // G, dim=1).transpose(2, 3)   # (batch, D, L, N)
        Cx = t['C'].repeat_interleave(D // G, dim=1).transpose(2, 3)
    dBu = delta[..., None] * Bx * u[..., None]
    x = t['h0'] if 'h0' in t else torch.zeros(batch, D, N, dtype=dA.dtype)
    ys = []
    for i in range(L):
        if 'seq_idx' in t and i > 0:
            keep = (t['seq_idx'][:, i] == t['seq_idx'][:, i - 1]).to(torch.float64)[:, None, None]
            x = x * keep
        x = dA[:, :, i] * x + dBu[:, :, i]
        Ci = Cx[:, :, 0] if G == 0 else Cx[:, :, i]
        y = (x * Ci).sum(-1)
        ys.append(2 * y.real if y.is_complex() else y)
    out = torch.stack(ys, dim=2)
    if 'D' in t: out = out + t['D'][:, None] * u
    if 'z' in t: out = out * F.silu(t['z'])
    return out, x


def to_layout(v, name, layout, G):
    """channel-first -> the case's layout (bld: (batch, L, D); selective B, C (batch, L, G, N));
    one group is written without its G axis, (batch, N, L) or (batch, L, N), as Mamba passes it."""
    if name in ('B', 'C', 'dB', 'dC') and G == 1: v = v[:, 0]
    if layout == 'bdl': return v
    if name in ('B', 'C', 'dB', 'dC') and G == 1: return v.transpose(1, 2)
    if name in ('u', 'delta', 'z', 'dy', 'y', 'du', 'ddelta', 'dz'): return v.transpose(1, 2)
    if name in ('B', 'C', 'dB', 'dC') and G > 0: return v.permute(0, 3, 1, 2)
    return v


def frame(name, v):
    a = v.detach().numpy()
    if a.dtype == np.complex128: return ssm_stream.frame(name, 3, a.astype('<c8'))
    if a.dtype == np.int32: return ssm_stream.frame(name, 5, a.astype('<i4'))
    return ssm_stream.frame(name, 1, a.astype('<f4'))


def make(case, d):
    batch, D, L, N, G, cplx, layout, softplus, *_ = CASES[case]
    t = make_inputs(case)
    leaves = {k: v.clone().requires_grad_(True) for k, v in t.items()
              if k not in ('dy', 'dh', 'seq_idx')}
    inp = dict(leaves)
    if 'seq_idx' in t: inp['seq_idx'] = t['seq_idx']
    out, h = scan(inp, softplus, G)
    dh = t['dh']
    loss = (out * t['dy']).sum() + ((h.real * dh.real + h.imag * dh.imag).sum() if h.is_complex()
                                    else (h * dh).sum())
    loss.backward()
    with open(os.path.join(d, 'in.ssm'), 'wb') as f:
        for k, v in t.items(): f.write(frame(k, to_layout(v, k, layout, G)))
    names = {'u': 'du', 'delta': 'ddelta', 'A': 'dA', 'B': 'dB', 'C': 'dC', 'D': 'dD', 'z': 'dz',
             'delta_bias': 'ddelta_bias', 'h0': 'dh0'}
    with open(os.path.join(d, 'want.ssm'), 'wb') as f:
        f.write(frame('y', to_layout(out, 'y', layout, G)))
        f.write(frame('h', h))
        for k, v in leaves.items(): f.write(frame(names[k], to_layout(v.grad, names[k], layout, G)))
    flags = ['--layout', layout] + (['--softplus'] if softplus else [])
    print(' '.join(flags))


def read_all(path):
    with open(path, 'rb') as f:
        return {name: arr for name, _, _, arr in ssm_stream.frames(f)}


def check(want_path, got_paths, only=None):
    want = read_all(want_path)
    if only: want = {k: v for k, v in want.items() if k in only}
    got = {}
    for p in got_paths: got.update(read_all(p))
    bad = 0
    for name, w in want.items():
        if name not in got:
            print('%s: missing' % name); bad += 1; continue
        gv = got[name].astype(np.complex128 if np.iscomplexobj(w) or np.iscomplexobj(got[name]) else np.float64)
        if gv.shape != w.shape:
            print('%s: shape %s, want %s' % (name, gv.shape, w.shape)); bad += 1; continue
        wv = w.astype(gv.dtype)
        err = np.linalg.norm((gv - wv).ravel()) / max(np.linalg.norm(wv.ravel()), 1e-300)
        tol = 2e-5 if name in ('y', 'h') else 2e-4
        ok = err <= tol
        bad += not ok
        print('%-12s rel err %.2e (tol %.0e) %s' % (name, err, tol, 'ok' if ok else 'FAIL'))
    return 1 if bad else 0


def write(path, specs):
    rng = np.random.default_rng(7)
    codes = {'f32': (1, '<f4'), 'f64': (2, '<f8'), 'c64': (3, '<c8'), 'i32': (5, '<i4')}
    with open(path, 'wb') as f:
        for spec in specs:
            name, dt, dims, *how = spec.split(':')
            shape = tuple(int(x) for x in dims.split(',')) if dims else ()
            code, npdt = codes[dt]
            a = rng.standard_normal(shape)
            if dt == 'c64': a = a + 1j * rng.standard_normal(shape)
            if 'neg' in how: a = -np.abs(a) - 0.1
            if 'pos' in how: a = np.abs(a) + 0.1
            if dt == 'i32': a = np.zeros(shape)
            a = a.astype(npdt)
            if 'nan' in how and a.size: a.reshape(-1)[a.size // 2] = np.nan
            f.write(ssm_stream.frame(name, code, a))


if __name__ == '__main__':
    a = sys.argv[1:]
    if a and a[0] == 'cases': print(' '.join(CASES))
    elif len(a) == 3 and a[0] == 'make': make(a[1], a[2])
    elif len(a) >= 2 and a[0] == 'write': write(a[1], a[2:])
    elif len(a) >= 5 and a[0] == 'check' and a[1] == '--only': sys.exit(check(a[3], a[4:], a[2].split(',')))
    elif len(a) >= 3 and a[0] == 'check': sys.exit(check(a[1], a[2:]))
    else: sys.exit(__doc__)
