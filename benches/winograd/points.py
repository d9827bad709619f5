"""Rounding of Winograd F(4x4, 3x3) by its interpolation points, simulated in float32.

Builds the Toom-Cook matrices (A^T, G, B^T, the same convention as
shaders/conv2d/winograd/*.wgsl: points p_0..p_4 and infinity) with exact fractions, checks
each set against the direct correlation, then sums C channels' Winograd products in float32
against the float64 direct sum (random normal data) and prints the worst and mean relative
error of a tile's outputs, for each point set and row scaling, beside F(2x2, 3x3).
Needs numpy: python3 benches/winograd/points.py (benches/NOTES.md, v24).
"""
from fractions import Fraction as F
import numpy as np, itertools
def poly_mul(a,b):
    r=[F(0)]*(len(a)+len(b)-1)
    for i,x in enumerate(a):
        for j,y in enumerate(b): r[i+j]+=x*y
    return r
def mats(points, m=4, r=3, scale_b=None):
    n=m+r-1
    pts=[F(p) for p in points]
    assert len(pts)==n-1
    AT=[[pts[j]**i for j in range(n-1)]+[F(1) if i==m-1 else F(0)] for i in range(m)]
    G=[]
    for j in range(n-1):
        f=F(1)
        for l in range(n-1):
            if l!=j: f*= (pts[j]-pts[l])
        G.append([pts[j]**k/f for k in range(r)])
    G.append([F(1) if k==r-1 else F(0) for k in range(r)])
    BT=[]
    for j in range(n-1):
        p=[F(1)]
        for l in range(n-1):
            if l!=j: p=poly_mul(p,[-pts[l],F(1)])
        p=p+[F(0)]*(n-len(p))
        BT.append(p)
    p=[F(1)]
    for l in range(n-1): p=poly_mul(p,[-pts[l],F(1)])
    BT.append(p)
    return AT,G,BT
def check(AT,G,BT,m=4,r=3):
    n=m+r-1
    AT=np.array(AT,dtype=object);G=np.array(G,dtype=object);BT=np.array(BT,dtype=object)
    rng=np.random.default_rng(0)
    d=[F(int(x)) for x in rng.integers(-5,5,n)]; g=[F(int(x)) for x in rng.integers(-5,5,r)]
    want=[sum(d[i+k]*g[k] for k in range(r)) for i in range(m)]
    for conv in ['BT_d','BT_T_d']:
        for sgnflip in [False,True]:
            Bt=BT if conv=='BT_d' else BT.T
            U=G.dot(np.array(g,dtype=object)); V=Bt.dot(np.array(d,dtype=object))
            y=AT.dot(U*V)
            if list(y)==want: return conv
    return None
for pts in [[0,1,-1,2,-2],[0,1,-1,F(1,2),F(-1,2)]]:
    AT,G,BT=mats(pts)
    print(pts, check(AT,G,BT))

import math
def to_np(M, dt): return np.array([[float(x) for x in row] for row in M], dtype=dt)
def rescale(AT,G,BT, mode):
    n=len(BT)
    G=[row[:] for row in G]; BT=[row[:] for row in BT]
    for j in range(n):
        if mode=='int_bt':
            den=1
            for x in BT[j]: den=den*x.denominator//math.gcd(den,x.denominator)
            s=F(den)
        elif mode=='balance':
            mb=max(abs(x) for x in BT[j]); mg=max(abs(x) for x in G[j])
            s=F(math.sqrt(float(mg/mb))).limit_denominator(64)
        else: s=F(1)
        BT[j]=[x*s for x in BT[j]]; G[j]=[x/s for x in G[j]]
    return AT,G,BT
def err(AT,G,BT,C,trials=20,m=4,r=3):
    n=m+r-1
    A32,G32,B32=[to_np(M,np.float32) for M in (AT,G,BT)]
    rng=np.random.default_rng(1)
    worst=0; tot=0
    for t in range(trials):
        d=rng.standard_normal((C,n,n)); g=rng.standard_normal((C,r,r))*0.1
        # direct f64
        want=np.zeros((m,m))
        for i in range(m):
            for j in range(m):
                want[i,j]=np.sum(d[:,i:i+r,j:j+r]*g)
        d32=d.astype(np.float32); g32=g.astype(np.float32)
        U=np.einsum('ab,cbd,ed->cae',G32,g32,G32).astype(np.float32)
        V=np.einsum('ab,cbd,ed->cae',B32,d32,B32).astype(np.float32)
        Mm=(U*V).sum(0,dtype=np.float32)
        Y=(A32@Mm@A32.T).astype(np.float32)
        scale=np.sqrt(np.sum((d[:,:r,:r]**2))*np.sum(g**2)/C)  # rough magnitude
        e=np.abs(Y-want).max()/ (np.abs(want).max()+1e-30)
        worst=max(worst,e); tot+=e
    return worst, tot/trials
for pts in [[0,1,-1,2,-2],[0,1,-1,F(1,2),F(-1,2)],[0,1,-1,F(1,2),-2],[0,1,-1,2,F(-1,2)]]:
    for mode in ['none','int_bt','balance']:
        AT,G,BT=rescale(*mats(pts),mode)
        assert check(AT,G,BT)=='BT_d'
        print([str(p) for p in pts], mode, ['%.2e/%.2e'%err(AT,G,BT,C) for C in (16,64,256)])
AT,G,BT=mats([0,1,-1],m=2)
print('F(2x2)', ['%.2e/%.2e'%err(AT,G,BT,C,m=2) for C in (16,64,256)])
