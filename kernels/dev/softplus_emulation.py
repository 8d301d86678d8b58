# kernels/dev/softplus_emulation.py - run with /usr/bin/python3 after exporting tools.sh's large-case inputs
# (ssm-tensor rand as in tests/cuda/tools.sh, then `ssm-tensor export --format npy --dir /tmp/sb/tools/in`).
# Emulates the first fast softplus (ln2 * lg2(1 + ex2(x log2 e)) in float32, MUFU errors left out:
# only the rounding of 1 + e to float32) on tools.sh's large case, then runs the scan in double with
# that delta and compares y with the double reference elementwise (|a-b| <= 1e-5 + 1e-4 |b|).
import numpy as np, sys
T='/tmp/sb/tools'
L=lambda n: np.load(f'{T}/in/{n}.npy')
u=L('u').astype(np.float64); draw=L('delta').astype(np.float64); A=L('A').astype(np.float64)
B=L('B').astype(np.float64)[:,0]; C=L('C').astype(np.float64)[:,0]; z=L('z').astype(np.float64); bias=L('delta_bias').astype(np.float64)
x=(draw+bias[None,:,None]).astype(np.float32)
exact=np.where(x>20, x.astype(np.float64), np.log1p(np.exp(x.astype(np.float64))))
e=np.exp2((x*np.float32(1.4426950408889634)).astype(np.float32).astype(np.float64)).astype(np.float32)
s=(np.float32(1)+e).astype(np.float32)
old=np.where(x>20, x, (np.float32(0.6931471805599453)*np.log2(s.astype(np.float64)).astype(np.float32))).astype(np.float64)
rel=np.abs(old-exact)/exact
print('softplus input range %.2f .. %.2f; old softplus relative error: median %.2e, max %.2e, share > 1e-5: %.3f'%(x.min(), x.max(), np.median(rel), rel.max(), (rel>1e-5).mean()))
def scan(dl):
    b,D,Ln=u.shape; h=np.zeros((b,D,A.shape[1])); y=np.empty_like(u)
    for t in range(Ln):
        a=np.exp(dl[:,:,t,None]*A[None]); h=a*h+(dl[:,:,t]*u[:,:,t])[:,:,None]*B[:,None,:,t]
        y[:,:,t]=np.einsum('bdn,bn->bd',h,C[:,:,t])
    return y*z*(1/(1+np.exp(-z)))
yref=scan(exact); yold=scan(old)
r=np.abs(yold-yref)/(1e-5+1e-4*np.abs(yref)); i=np.argmax(r)
print('y with the old softplus (rounding of 1+e only) vs exact: normwise %.2e, worst elementwise ratio %.3g (ref %.4g), elements over: %d of %d'%(np.linalg.norm(yold-yref)/np.linalg.norm(yref), r.flat[i], yref.flat[i], (r>1).sum(), r.size))
