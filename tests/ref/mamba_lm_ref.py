#!/usr/bin/python3
"""mamba_lm_ref.py - an independent reference of the Mamba language model (REFERENCE.md section 8),
written from the formulas in PyTorch float64 with plain loops over time, and a maker of tiny
published-style checkpoints to import.

    mamba_lm_ref.py DIR [--layout hf|state-spaces] [--dtype f32|bf16|f16] [--seed S] [--length L]

writes into DIR:
    state_dict.ssm         the state dict under the published names (backbone.embeddings.weight or
                           backbone.embedding.weight, backbone.layers.{i}.mixer.*, ...) as a tensor
                           stream, plus lm_head.weight (a copy of the embedding, as state-spaces
                           pytorch_model.bin files hold it)
    model.safetensors      the same tensors as a safetensors file (u64 LE header length, JSON
                           header, raw data)
    config.json            transformers MambaConfig keys, or state-spaces keys
    ref.ssm                tokens (L) i32 and logits (L, vocab) f32: the reference's output

The reference computes in float64 from the stored (possibly bf16-rounded) weights.
"""
import argparse, json, math, os, struct, sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ssm_stream  # noqa: E402

D_MODEL, N_LAYERS, D_STATE, D_CONV, EXPAND, VOCAB = 24, 2, 5, 4, 2, 37   # vocab padded to 40


def rmsnorm(x, w, eps):
    """x (L, d) -> x / sqrt(mean(x^2) + eps) * w"""
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * w


def softplus(x):
    return torch.where(x > 20, x, torch.log1p(torch.exp(x)))


def silu(x):
    return x * torch.sigmoid(x)


def mamba_block(h, p, cfg):
    """One mixer on h (L, d_model); p maps short names to float64 tensors."""
    L = h.shape[0]
    di, N, K, R = cfg['d_inner'], cfg['d_state'], cfg['d_conv'], cfg['dt_rank']
    xz = h @ p['in_proj.weight'].T                      # (L, 2 di)
    x, z = xz[:, :di], xz[:, di:]
    w = p['conv1d.weight'][:, 0, :]                      # (di, K)
    xc = torch.zeros(L, di, dtype=torch.float64)
    for t in range(L):                                   # causal depthwise conv, zeros before t = 0
        acc = p['conv1d.bias'].clone()
        for k in range(K):
            s = t - (K - 1) + k
            if s >= 0:
                acc = acc + w[:, k] * x[s]
        xc[t] = acc
    u = silu(xc)
    dbc = u @ p['x_proj.weight'].T                       # (L, R + 2N)
    dt, B, C = dbc[:, :R], dbc[:, R:R + N], dbc[:, R + N:]
    delta = softplus(dt @ p['dt_proj.weight'].T + p['dt_proj.bias'])   # (L, di)
    A = -torch.exp(p['A_log'])                           # (di, N)
    state = torch.zeros(di, N, dtype=torch.float64)
    y = torch.zeros(L, di, dtype=torch.float64)
    for t in range(L):
        state = torch.exp(delta[t][:, None] * A) * state + delta[t][:, None] * B[t][None, :] * u[t][:, None]
        y[t] = state @ C[t] + p['D'] * u[t]
    y = y * silu(z)
    return y @ p['out_proj.weight'].T


def mamba_lm(tokens, weights, cfg, embed_name):
    E = weights[embed_name]
    h = E[tokens]
    for i in range(cfg['n_layers']):
        pre = 'backbone.layers.%d.' % i
        p = {k[len(pre) + 6:]: v for k, v in weights.items() if k.startswith(pre + 'mixer.')}
        h = h + mamba_block(rmsnorm(h, weights[pre + 'norm.weight'], cfg['eps']), p, cfg)
    hf = rmsnorm(h, weights['backbone.norm_f.weight'], cfg['eps'])
    return hf @ E.T


def safetensors_bytes(tensors):
    """tensors: list of (name, dtype string, numpy array of the raw little-endian data)."""
    header, data = {}, b''
    for name, dt, arr in tensors:
        raw = np.ascontiguousarray(arr).tobytes()
        header[name] = {'dtype': dt, 'shape': list(arr.shape), 'data_offsets': [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header).encode()
    h += b' ' * (-len(h) % 8)
    return struct.pack('<Q', len(h)) + h + data


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('dir')
    ap.add_argument('--layout', default='hf', choices=['hf', 'state-spaces'])
    ap.add_argument('--dtype', default='f32', choices=['f32', 'bf16', 'f16'])
    ap.add_argument('--seed', type=int, default=1)
    ap.add_argument('--length', type=int, default=19)
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    g = torch.Generator().manual_seed(a.seed)
    dm, N, K = D_MODEL, D_STATE, D_CONV
    di, R = EXPAND * dm, math.ceil(dm / 16)
    V = (VOCAB + 7) // 8 * 8
    embed = 'backbone.embeddings.weight' if a.layout == 'hf' else 'backbone.embedding.weight'

    def rnd(*shape, scale=1.0):
        return torch.randn(*shape, generator=g, dtype=torch.float64) * scale

    w = {embed: rnd(V, dm, scale=0.5)}
    for i in range(N_LAYERS):
        pre = 'backbone.layers.%d.' % i
        dt = torch.exp(torch.rand(di, generator=g, dtype=torch.float64) * (math.log(0.1) - math.log(0.001)) + math.log(0.001))
        w[pre + 'norm.weight'] = 1 + rnd(dm, scale=0.1)
        w[pre + 'mixer.A_log'] = torch.log(torch.arange(1, N + 1, dtype=torch.float64)).repeat(di, 1) + rnd(di, N, scale=0.1)
        w[pre + 'mixer.D'] = 1 + rnd(di, scale=0.1)
        w[pre + 'mixer.in_proj.weight'] = rnd(2 * di, dm, scale=dm ** -0.5)
        w[pre + 'mixer.conv1d.weight'] = rnd(di, 1, K, scale=0.5)
        w[pre + 'mixer.conv1d.bias'] = rnd(di, scale=0.1)
        w[pre + 'mixer.x_proj.weight'] = rnd(R + 2 * N, di, scale=di ** -0.5)
        w[pre + 'mixer.dt_proj.weight'] = rnd(di, R, scale=R ** -0.5)
        w[pre + 'mixer.dt_proj.bias'] = dt + torch.log(-torch.expm1(-dt))      # inverse softplus
        w[pre + 'mixer.out_proj.weight'] = rnd(dm, di, scale=di ** -0.5 / math.sqrt(N_LAYERS))
    w['backbone.norm_f.weight'] = 1 + rnd(dm, scale=0.1)

    # store in the requested dtype; the reference uses exactly the stored values
    tdt = {'f32': torch.float32, 'bf16': torch.bfloat16, 'f16': torch.float16}[a.dtype]
    code = {'f32': 1, 'bf16': 8, 'f16': 9}[a.dtype]
    st_name = {'f32': 'F32', 'bf16': 'BF16', 'f16': 'F16'}[a.dtype]
    stored, raw = {}, []
    for name, t in w.items():
        q = t.to(tdt)
        stored[name] = q.to(torch.float64)
        arr = q.view(torch.int16).numpy().view('<u2') if a.dtype == 'bf16' else q.numpy()
        raw.append((name, arr))
    raw.append(('lm_head.weight', raw[0][1]))

    with open(os.path.join(a.dir, 'state_dict.ssm'), 'wb') as f:
        for name, arr in raw:
            f.write(ssm_stream.frame(name, code, arr, codec=1))
    with open(os.path.join(a.dir, 'model.safetensors'), 'wb') as f:
        f.write(safetensors_bytes([(n, st_name, arr) for n, arr in raw]))

    if a.layout == 'hf':
        config = {'architectures': ['MambaForCausalLM'], 'model_type': 'mamba', 'hidden_size': dm,
                  'num_hidden_layers': N_LAYERS, 'intermediate_size': di, 'state_size': N, 'conv_kernel': K,
                  'time_step_rank': R, 'vocab_size': V, 'use_bias': False, 'use_conv_bias': True,
                  'layer_norm_epsilon': 1e-5, 'expand': EXPAND, 'tie_word_embeddings': True}
    else:
        config = {'d_model': dm, 'n_layer': N_LAYERS, 'vocab_size': VOCAB, 'ssm_cfg': {'d_state': N},
                  'rms_norm': True, 'residual_in_fp32': True, 'fused_add_norm': True, 'pad_vocab_size_multiple': 8}
    with open(os.path.join(a.dir, 'config.json'), 'w') as f:
        json.dump(config, f, indent=2)

    cfg = {'d_inner': di, 'd_state': N, 'd_conv': K, 'dt_rank': R, 'n_layers': N_LAYERS, 'eps': 1e-5}
    tokens = torch.randint(0, VOCAB, (a.length,), generator=g)
    logits = mamba_lm(tokens, stored, cfg, embed)
    with open(os.path.join(a.dir, 'ref.ssm'), 'wb') as f:
        f.write(ssm_stream.frame('tokens', 5, tokens.numpy().astype('<i4')))
        f.write(ssm_stream.frame('logits', 1, logits.numpy().astype('<f4')))


if __name__ == '__main__':
    main()
