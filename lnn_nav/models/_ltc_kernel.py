"""C++ kernel for the LTC solver: whole-sequence forward and a hand-written backward.

Why: the solver is a long chain of tiny ops (T steps x K unfolds, each over a few
hundred synapses). Under autograd each op costs dispatch time and keeps its
inputs alive; ncps's LTC spends ~100-200 ms and hundreds of MB of saved
activations on a 16 x 64 batch of a 48-neuron net. Here one C++ call runs the
whole sequence (input map, sensory and recurrent synapses, K sub-steps, output
map). For backward it keeps only a trace of the potentials and denominators of
every sub-step, (B, T, K, 2, N); the backward recomputes every synapse's sigmoid
from the traced potentials instead of storing the (B, T, K, E) activations that
autograd would keep.

Layout: the batch is cut into chunks of LANES samples (16 in float32, 8 in
float64: one 64-byte vector, written with GCC/Clang vector extensions so the
same code vectorises on any ISA), and every buffer holds one vector per row
(neuron, input or edge) with the batch in the lanes. A synapse's work is then a
handful of vector ops, and no two lanes ever write one address. The float32
sigmoid uses a branch-free exp (Cephes polynomial, about 1 ulp); float64 uses
std::exp (for gradient checks, not speed). Per-edge gradients accumulate per
lane and are summed at the end, so results do not depend on the chunking and a
sample gives bit-for-bit the same output alone or in any batch.

The source is compiled with the system C++ compiler (``$CXX``, else ``c++``,
``g++`` or ``clang++``) at first use into a shared library under the cache
directory (``$LNN_NAV_CACHE_DIR``, else ``$XDG_CACHE_HOME/lnn_nav``, else
``~/.cache/lnn_nav``; a per-user temp folder if that is not writable) and
loaded with ctypes: no torch headers, no pip build step, about two seconds of
compile. The file name carries a hash of the source, flags, compiler and CPU
model, so a ``-march=native`` build never runs on another kind of CPU.
``LNN_NAV_LTC_KERNEL=0`` disables the kernel; the
pure-PyTorch solver in ``lnn_nav.models.ltc`` is then used.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.autograd.function import once_differentiable

_SOURCE = r"""
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <thread>
#include <cstring>
#include <cmath>
#include <vector>

namespace {

// One SIMD vector of lanes (batch samples) via GCC/Clang vector extensions: the code
// is the same on every x86/ARM ISA, the compiler splits 64-byte vectors as needed.
template <typename T> struct VecOf;
template <> struct VecOf<float> { typedef float type __attribute__((vector_size(64))); };
template <> struct VecOf<double> { typedef double type __attribute__((vector_size(64))); };
typedef int32_t vi32 __attribute__((vector_size(64)));

template <typename T> using Vec = typename VecOf<T>::type;
template <typename T> constexpr int lanes() { return int(sizeof(Vec<T>) / sizeof(T)); }

template <typename T> inline Vec<T> splat(T v) { return Vec<T>{} + v; }
template <typename T> inline Vec<T> ld(const T* p) {
  Vec<T> v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <typename T> inline void st(T* p, Vec<T> v) { std::memcpy(p, &v, sizeof v); }

// sigmoid(z) = 1 / (1 + exp(-z)). float: exp without libm, branch-free: range reduction
// x = n ln2 + r with ln2 split in two (Cody-Waite), the degree-6 Cephes polynomial for
// e^r, and 2^n written into the exponent bits; about 1 ulp.
inline Vec<float> sigm(Vec<float> z) {
  typedef Vec<float> V;
  V x = -z;
  x = x < -87.0f ? splat(-87.0f) : x;
  x = x > 88.0f ? splat(88.0f) : x;
  // round to nearest through the 1.5 * 2^23 shifter
  V n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  V r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  V p = splat(1.9875691500E-4f);
  p = p * r + 1.3981999507E-3f;
  p = p * r + 8.3334519073E-3f;
  p = p * r + 4.1665795894E-2f;
  p = p * r + 1.6666665459E-1f;
  p = p * r + 5.0000001201E-1f;
  V y = p * (r * r) + r + 1.0f;
  vi32 e = (__builtin_convertvector(n, vi32) + 127) << 23;
  return 1.0f / (1.0f + y * (V)e);
}
// float64 is for gradient checks, not speed: libm exp per lane.
inline Vec<double> sigm(Vec<double> z) {
  Vec<double> s;
  for (int l = 0; l < lanes<double>(); ++l) s[l] = 1.0 / (1.0 + std::exp(-z[l]));
  return s;
}

enum Dim { kB, kT, kI, kN, kO, kEs, kE, kK, kDtB, kDtT, kThreads, kNumDims };

template <typename T>
struct Net {
  int64_t B, Tn, I, N, O, Es, E, K, dt_bs, dt_ts;
  T eps;
  const T *cm, *gleak, *vleak;
  const int64_t *ssrc, *stgt;
  const T *sw, *serev, *smu, *ssig;
  const int64_t *src, *tgt;
  const T *w, *erev, *mu, *sig;
  const T *iw, *ib, *ow, *ob;
};

template <typename T>
Net<T> make_net(const int64_t* d, double eps, void** p) {
  Net<T> n;
  n.B = d[kB]; n.Tn = d[kT]; n.I = d[kI]; n.N = d[kN]; n.O = d[kO]; n.Es = d[kEs]; n.E = d[kE];
  n.K = d[kK]; n.dt_bs = d[kDtB]; n.dt_ts = d[kDtT]; n.eps = T(eps);
  n.cm = (const T*)p[0]; n.gleak = (const T*)p[1]; n.vleak = (const T*)p[2];
  n.ssrc = (const int64_t*)p[3]; n.stgt = (const int64_t*)p[4];
  n.sw = (const T*)p[5]; n.serev = (const T*)p[6]; n.smu = (const T*)p[7]; n.ssig = (const T*)p[8];
  n.src = (const int64_t*)p[9]; n.tgt = (const int64_t*)p[10];
  n.w = (const T*)p[11]; n.erev = (const T*)p[12]; n.mu = (const T*)p[13]; n.sig = (const T*)p[14];
  n.iw = (const T*)p[15]; n.ib = (const T*)p[16]; n.ow = (const T*)p[17]; n.ob = (const T*)p[18];
  return n;
}

// NUM[tgt] += a * erev and DEN[tgt] += a, a = w * sigmoid(sig * (V[src] - mu)), for every
// edge. Runs of edges with one target (the wiring sorts edges by target) are summed in
// registers and stored once.
template <typename T>
inline void edge_sums(int64_t E, const int64_t* src, const int64_t* tgt, const T* w,
                      const T* erev, const T* mu, const T* sig, const Vec<T>* __restrict V,
                      Vec<T>* __restrict NUM, Vec<T>* __restrict DEN) {
  int64_t e = 0;
  while (e < E) {
    const int64_t j = tgt[e];
    Vec<T> an = NUM[j], ad = DEN[j];
    for (; e < E && tgt[e] == j; ++e) {
      const Vec<T> a = w[e] * sigm(sig[e] * (V[src[e]] - mu[e]));
      an += a * erev[e];
      ad += a;
    }
    NUM[j] = an;
    DEN[j] = ad;
  }
}

// Backward of edge_sums given dL/dNUM (GN) and dL/dDEN (GD) per target: recomputes each
// sigmoid from V, accumulates per-lane parameter grads (one vector per edge) and dL/dV.
template <typename T>
inline void edge_sums_backward(int64_t E, const int64_t* src, const int64_t* tgt,
                               const T* w, const T* erev, const T* mu, const T* sig,
                               const Vec<T>* __restrict V, const Vec<T>* __restrict GN,
                               const Vec<T>* __restrict GD, Vec<T>* __restrict gV,
                               Vec<T>* __restrict gw, Vec<T>* __restrict gerev,
                               Vec<T>* __restrict gmu, Vec<T>* __restrict gsig) {
  for (int64_t e = 0; e < E; ++e) {
    const int64_t s = src[e], j = tgt[e];
    const Vec<T> diff = V[s] - mu[e];
    const Vec<T> sg = sigm(sig[e] * diff);
    const Vec<T> a = w[e] * sg;
    const Vec<T> gn = GN[j];
    gerev[e] += gn * a;
    const Vec<T> ga = gn * erev[e] + GD[j];
    gw[e] += ga * sg;
    const Vec<T> gz = ga * a * (T(1) - sg);
    gsig[e] += gz * diff;
    gmu[e] -= gz * sig[e];
    gV[s] += gz * sig[e];
  }
}

template <typename V>
void zero(std::vector<V>& v) { std::fill(v.begin(), v.end(), V{}); }

// X[i] = x[b0 + l, t, i] * iw[i] + ib[i] over the chunk's lanes; padding lanes get 0.
template <typename T>
void load_inputs(const Net<T>& n, const T* x, int64_t b0, int64_t nb, int64_t t, Vec<T>* X) {
  for (int64_t i = 0; i < n.I; ++i) {
    Vec<T> v{};
    for (int l = 0; l < nb; ++l) v[l] = x[((b0 + l) * n.Tn + t) * n.I + i] * n.iw[i] + n.ib[i];
    X[i] = v;
  }
}

// rows of a (B, N) array into lane vectors; padding lanes get 0
template <typename T>
void load_rows(const Net<T>& n, const T* h, int64_t b0, int64_t nb, Vec<T>* V) {
  for (int64_t j = 0; j < n.N; ++j) {
    Vec<T> v{};
    for (int l = 0; l < nb; ++l) v[l] = h[(b0 + l) * n.N + j];
    V[j] = v;
  }
}

// dt / K per lane at step t (padding lanes: 1 / K; any positive value works)
template <typename T>
Vec<T> load_q(const Net<T>& n, const T* dt, int64_t b0, int64_t nb, int64_t t) {
  Vec<T> q = splat(T(1));
  for (int l = 0; l < nb; ++l) q[l] = dt[(b0 + l) * n.dt_bs + t * n.dt_ts];
  return q / T(n.K);
}

// Trace of one chunk: for each step t and sub-step k, the potentials after the
// sub-step (slot 0) and its denominator den + eps (slot 1), each N lane vectors.
template <typename T>
inline size_t trace_row(const Net<T>& n, int64_t t, int64_t k, int slot) {
  return ((size_t(t) * n.K + k) * 2 + slot) * n.N;
}

template <typename T>
void forward_chunk(const Net<T>& n, const T* x, const T* h0, const T* dt, T* y, T* hT,
                   T* trace, int64_t b0, int64_t nb) {
  typedef Vec<T> V;
  constexpr int L = lanes<T>();
  const int64_t N = n.N;
  std::vector<V> X(n.I), S(N), SN(N), SD(N), RN(N), RD(N), CMT(N);
  std::vector<T> GV(N);
  for (int64_t j = 0; j < N; ++j) GV[j] = n.gleak[j] * n.vleak[j];
  load_rows(n, h0, b0, nb, S.data());
  for (int64_t t = 0; t < n.Tn; ++t) {
    load_inputs(n, x, b0, nb, t, X.data());
    zero(SN); zero(SD);
    edge_sums(n.Es, n.ssrc, n.stgt, n.sw, n.serev, n.smu, n.ssig, X.data(), SN.data(), SD.data());
    const V q = load_q(n, dt, b0, nb, t);
    // cm / (dt / K): the same expression as ncps, so both round alike
    for (int64_t j = 0; j < N; ++j) CMT[j] = n.cm[j] / q;
    for (int64_t k = 0; k < n.K; ++k) {
      zero(RN); zero(RD);
      edge_sums(n.E, n.src, n.tgt, n.w, n.erev, n.mu, n.sig, S.data(), RN.data(), RD.data());
      T* tv = trace ? trace + trace_row(n, t, k, 0) * L : nullptr;
      T* td = trace ? trace + trace_row(n, t, k, 1) * L : nullptr;
      for (int64_t j = 0; j < N; ++j) {
        const V num = CMT[j] * S[j] + GV[j] + (RN[j] + SN[j]);
        const V den = (CMT[j] + n.gleak[j] + (RD[j] + SD[j])) + n.eps;
        S[j] = num / den;
        if (trace) { st(tv + j * L, S[j]); st(td + j * L, den); }
      }
    }
    if (y)
      for (int l = 0; l < nb; ++l)
        for (int64_t o = 0; o < n.O; ++o)
          y[((b0 + l) * n.Tn + t) * n.O + o] = S[o][l] * n.ow[o] + n.ob[o];
  }
  for (int l = 0; l < nb; ++l)
    for (int64_t j = 0; j < N; ++j) hT[(b0 + l) * N + j] = S[j][l];
}

template <typename T>
struct Grads {
  T *x, *h0, *dt;
  T *cm, *gleak, *vleak, *sw, *serev, *smu, *ssig, *w, *erev, *mu, *sig, *iw, *ib, *ow, *ob;
};

template <typename T>
void backward_chunk(const Net<T>& n, const T* x, const T* h0, const T* dt, const T* trace,
                    const T* gy, const T* ghT, const Grads<T>& g, int64_t b0, int64_t nb) {
  typedef Vec<T> V;
  constexpr int L = lanes<T>();
  const int64_t N = n.N, K = n.K, E = n.E, Es = n.Es, I = n.I, O = n.O;
  std::vector<V> X(I), gX(I), CMT(N), Vin(N), Vout(N), D(N);
  std::vector<V> gS(N), gSn(N), GN(N), GD(N), GBN(N), GBD(N), GCMT(N);
  // per-lane accumulators, summed over lanes at the end
  std::vector<V> a_cm(N), a_gl(N), a_vl(N), a_iw(I), a_ib(I), a_ow(O), a_ob(O);
  std::vector<V> a_w(E), a_e(E), a_m(E), a_s(E), a_sw(Es), a_se(Es), a_sm(Es), a_ss(Es);
  if (ghT) load_rows(n, ghT, b0, nb, gS.data());
  for (int64_t t = n.Tn - 1; t >= 0; --t) {
    // outputs y = S[:O] * ow + ob; S after step t is the last sub-step's potentials
    if (gy) {
      const T* st_t = trace + trace_row(n, t, K - 1, 0) * L;
      for (int64_t o = 0; o < O; ++o) {
        V go{};
        for (int l = 0; l < nb; ++l) go[l] = gy[((b0 + l) * n.Tn + t) * O + o];
        gS[o] += go * n.ow[o];
        a_ow[o] += go * ld(st_t + o * L);
        a_ob[o] += go;
      }
    }
    const V q = load_q(n, dt, b0, nb, t);
    for (int64_t j = 0; j < N; ++j) CMT[j] = n.cm[j] / q;
    zero(GBN); zero(GBD); zero(GCMT);
    for (int64_t k = K - 1; k >= 0; --k) {
      // potentials entering sub-step k: previous sub-step, previous step, or h0
      if (k > 0 || t > 0) {
        const T* p = k > 0 ? trace + trace_row(n, t, k - 1, 0) * L
                           : trace + trace_row(n, t - 1, K - 1, 0) * L;
        for (int64_t j = 0; j < N; ++j) Vin[j] = ld(p + j * L);
      } else {
        load_rows(n, h0, b0, nb, Vin.data());
      }
      const T* po = trace + trace_row(n, t, k, 0) * L;
      const T* pd = trace + trace_row(n, t, k, 1) * L;
      // S' = num / D, num = cmt S + gleak vleak + (R_num + S_num),
      // D = cmt + gleak + (R_den + S_den) + eps
      for (int64_t j = 0; j < N; ++j) {
        const V gnum = gS[j] / ld(pd + j * L);
        const V gden = -gnum * ld(po + j * L);
        GCMT[j] += gnum * Vin[j] + gden;
        GBN[j] += gnum;
        GBD[j] += gden;
        GN[j] = gnum;
        GD[j] = gden;
        gSn[j] = gnum * CMT[j];
      }
      edge_sums_backward(E, n.src, n.tgt, n.w, n.erev, n.mu, n.sig, Vin.data(), GN.data(),
                         GD.data(), gSn.data(), a_w.data(), a_e.data(), a_m.data(), a_s.data());
      std::swap(gS, gSn);
    }
    // constant over the sub-steps: gleak*vleak (GBN), gleak (GBD), cmt = cm / q
    V gq{};
    for (int64_t j = 0; j < N; ++j) {
      a_gl[j] += GBN[j] * n.vleak[j] + GBD[j];
      a_vl[j] += GBN[j] * n.gleak[j];
      a_cm[j] += GCMT[j] / q;
      gq -= GCMT[j] * n.cm[j] / (q * q);
    }
    if (g.dt)
      for (int l = 0; l < nb; ++l) g.dt[(b0 + l) * n.Tn + t] = gq[l] / T(K);
    // sensory synapses read u = x * iw + ib; their sums enter num and den of every
    // sub-step, so they receive GBN and GBD
    load_inputs(n, x, b0, nb, t, X.data());
    zero(gX);
    edge_sums_backward(Es, n.ssrc, n.stgt, n.sw, n.serev, n.smu, n.ssig, X.data(), GBN.data(),
                       GBD.data(), gX.data(), a_sw.data(), a_se.data(), a_sm.data(), a_ss.data());
    for (int64_t i = 0; i < I; ++i) {
      V xv{};
      for (int l = 0; l < nb; ++l) xv[l] = x[((b0 + l) * n.Tn + t) * I + i];
      a_iw[i] += gX[i] * xv;
      a_ib[i] += gX[i];
      if (g.x)
        for (int l = 0; l < nb; ++l) g.x[((b0 + l) * n.Tn + t) * I + i] = gX[i][l] * n.iw[i];
    }
  }
  if (g.h0)
    for (int l = 0; l < nb; ++l)
      for (int64_t j = 0; j < N; ++j) g.h0[(b0 + l) * N + j] = gS[j][l];
  auto reduce = [](const std::vector<V>& acc, T* out) {
    for (size_t r = 0; r < acc.size(); ++r) {
      T s = 0;
      for (int l = 0; l < L; ++l) s += acc[r][l];
      out[r] += s;
    }
  };
  reduce(a_cm, g.cm); reduce(a_gl, g.gleak); reduce(a_vl, g.vleak);
  reduce(a_w, g.w); reduce(a_e, g.erev); reduce(a_m, g.mu); reduce(a_s, g.sig);
  reduce(a_sw, g.sw); reduce(a_se, g.serev); reduce(a_sm, g.smu); reduce(a_ss, g.ssig);
  reduce(a_iw, g.iw); reduce(a_ib, g.ib); reduce(a_ow, g.ow); reduce(a_ob, g.ob);
}

// Runs f(c) for chunks c = 0..count-1 on up to `threads` threads (the caller's included).
// Chunks are independent in forward and backward; nothing here depends on the order.
template <typename F>
void for_chunks(int64_t count, int64_t threads, F f) {
  threads = std::max<int64_t>(1, std::min(threads, count));
  std::atomic<int64_t> next(0);
  auto work = [&]() {
    for (int64_t c = next++; c < count; c = next++) f(c);
  };
  std::vector<std::thread> pool;
  for (int64_t i = 1; i < threads; ++i) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
}

template <typename T>
void forward(const int64_t* d, double eps, void** p, const T* x, const T* h0, const T* dt,
             T* y, T* hT, T* trace) {
  constexpr int L = lanes<T>();
  const Net<T> n = make_net<T>(d, eps, p);
  const size_t chunk = size_t(n.Tn) * n.K * 2 * n.N * L;
  for_chunks((n.B + L - 1) / L, d[kThreads], [&](int64_t c) {
    const int64_t b0 = c * L;
    forward_chunk(n, x, h0, dt, y, hT, trace ? trace + c * chunk : nullptr, b0,
                  std::min<int64_t>(L, n.B - b0));
  });
}

template <typename T>
void backward(const int64_t* d, double eps, void** p, const T* x, const T* h0, const T* dt,
              const T* trace, const T* gy, const T* ghT, void** gp) {
  constexpr int L = lanes<T>();
  const Net<T> n = make_net<T>(d, eps, p);
  T** q = (T**)gp;
  const Grads<T> g{q[0], q[1], q[2], q[3], q[4], q[5], q[6], q[7], q[8], q[9], q[10], q[11],
                   q[12], q[13], q[14], q[15], q[16], q[17]};
  const size_t chunk = size_t(n.Tn) * n.K * 2 * n.N * L;
  const int64_t chunks = (n.B + L - 1) / L;
  if (chunks == 1) {
    backward_chunk(n, x, h0, dt, trace, gy, ghT, g, 0, n.B);
    return;
  }
  // Each chunk sums its parameter gradients into its own slice; the slices are added
  // in chunk order afterwards, so the result does not depend on thread scheduling.
  const int64_t sizes[15] = {n.N, n.N, n.N, n.Es, n.Es, n.Es, n.Es, n.E, n.E, n.E, n.E,
                             n.I, n.I, n.O, n.O};
  T* const outs[15] = {g.cm, g.gleak, g.vleak, g.sw, g.serev, g.smu, g.ssig, g.w, g.erev,
                       g.mu, g.sig, g.iw, g.ib, g.ow, g.ob};
  int64_t per_chunk = 0;
  for (int64_t s : sizes) per_chunk += s;
  std::vector<T> scratch(size_t(per_chunk) * chunks, T(0));
  for_chunks(chunks, d[kThreads], [&](int64_t c) {
    T* base = scratch.data() + size_t(c) * per_chunk;
    T* slot[15];
    for (int k = 0; k < 15; ++k) { slot[k] = base; base += sizes[k]; }
    const Grads<T> gc{g.x, g.h0, g.dt, slot[0], slot[1], slot[2], slot[3], slot[4], slot[5],
                      slot[6], slot[7], slot[8], slot[9], slot[10], slot[11], slot[12],
                      slot[13], slot[14]};
    const int64_t b0 = c * L;
    backward_chunk(n, x, h0, dt, trace + c * chunk, gy, ghT, gc, b0,
                   std::min<int64_t>(L, n.B - b0));
  });
  for (int64_t c = 0; c < chunks; ++c) {
    const T* base = scratch.data() + size_t(c) * per_chunk;
    for (int k = 0; k < 15; ++k)
      for (int64_t r = 0; r < sizes[k]; ++r) outs[k][r] += *base++;
  }
}

}  // namespace

extern "C" {
// d: int64[11] = B, T, I, N, O, E_s, E, K, dt batch stride, dt time stride (elements),
//    threads (chunks of lanes run in parallel on up to this many threads).
// p: 19 pointers = cm, gleak, vleak, ssrc, stgt, sw, serev, smu, ssig, src, tgt, w, erev,
//    mu, sig, iw, ib, ow, ob.  y (B, T, O) may be null; trace may be null (inference).
int ltc_lanes_f32() { return lanes<float>(); }
int ltc_lanes_f64() { return lanes<double>(); }
void ltc_forward_f32(const int64_t* d, double eps, void** p, const float* x, const float* h0,
                     const float* dt, float* y, float* hT, float* trace) {
  forward<float>(d, eps, p, x, h0, dt, y, hT, trace);
}
void ltc_forward_f64(const int64_t* d, double eps, void** p, const double* x, const double* h0,
                     const double* dt, double* y, double* hT, double* trace) {
  forward<double>(d, eps, p, x, h0, dt, y, hT, trace);
}
// gp: 18 pointers = grads of x, h0, dt (B, T), then the 15 float parameters in p's order
// (indices skipped). x, h0, dt may be null; parameter grads must be zeroed by the caller.
void ltc_backward_f32(const int64_t* d, double eps, void** p, const float* x, const float* h0,
                      const float* dt, const float* trace, const float* gy, const float* ghT,
                      void** gp) {
  backward<float>(d, eps, p, x, h0, dt, trace, gy, ghT, gp);
}
void ltc_backward_f64(const int64_t* d, double eps, void** p, const double* x, const double* h0,
                      const double* dt, const double* trace, const double* gy,
                      const double* ghT, void** gp) {
  backward<double>(d, eps, p, x, h0, dt, trace, gy, ghT, gp);
}
}
"""

_FLAGS = ["-O3", "-march=native", "-std=c++17", "-shared", "-fPIC", "-fno-math-errno", "-pthread"]

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_error: str | None = None


def _cache_dir() -> Path:
    if os.environ.get("LNN_NAV_CACHE_DIR"):
        return Path(os.environ["LNN_NAV_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lnn_nav"


def _cpu_id() -> str:
    """CPU model and feature flags: a -march=native build is valid only on the same kind of CPU."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            lines = [ln for ln in f if ln.startswith(("model name", "flags"))]
        return "".join(sorted(set(lines)))
    except OSError:
        return platform.processor() + platform.machine()


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return name
    return None


def _build() -> ctypes.CDLL:
    cxx = _compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler found (set CXX or install g++)")
    key = hashlib.sha256("\n".join([_SOURCE, " ".join(_FLAGS), cxx, _cpu_id()]).encode())
    out_dir = _cache_dir()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass  # the folder is writable
    except OSError:
        # read-only home (containers, CI sandboxes): build per user under the temp dir
        uid = os.getuid() if hasattr(os, "getuid") else 0
        out_dir = Path(tempfile.gettempdir()) / f"lnn_nav-{uid}"
        out_dir.mkdir(parents=True, exist_ok=True)
    lib_path = out_dir / f"ltc_kernel_{key.hexdigest()[:16]}.so"
    if not lib_path.exists():
        # Build in a private temp dir and rename into place: concurrent first uses
        # (e.g. parallel test workers) never load a half-written library.
        with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
            src = Path(tmp) / "ltc_kernel.cpp"
            src.write_text(_SOURCE, encoding="utf-8")
            tmp_lib = Path(tmp) / "ltc_kernel.so"
            # Some compilers or targets reject -march=native; the portable build is
            # slower (narrower vectors) but computes the same thing.
            portable = [f for f in _FLAGS if f != "-march=native"]
            for flags in (_FLAGS, portable):
                proc = subprocess.run(
                    [cxx, *flags, str(src), "-o", str(tmp_lib)],
                    capture_output=True, text=True, timeout=300, check=False,
                )
                if proc.returncode == 0:
                    break
            else:
                raise RuntimeError(f"{cxx} failed to build the LTC kernel:\n{proc.stderr[-2000:]}")
            os.replace(tmp_lib, lib_path)
    lib = ctypes.CDLL(str(lib_path))
    vp, dbl = ctypes.c_void_p, ctypes.c_double
    for suffix in ("f32", "f64"):
        lanes = getattr(lib, f"ltc_lanes_{suffix}")
        lanes.argtypes, lanes.restype = [], ctypes.c_int
        fwd = getattr(lib, f"ltc_forward_{suffix}")
        fwd.argtypes, fwd.restype = [vp, dbl, vp, vp, vp, vp, vp, vp, vp], None
        bwd = getattr(lib, f"ltc_backward_{suffix}")
        bwd.argtypes, bwd.restype = [vp, dbl, vp, vp, vp, vp, vp, vp, vp, vp], None
    return lib


def load() -> ctypes.CDLL:
    """The compiled kernel library; builds it on first call. Raises RuntimeError if it cannot."""
    global _lib, _error
    with _lock:
        if _lib is not None:
            return _lib
        if os.environ.get("LNN_NAV_LTC_KERNEL", "1") == "0":
            raise RuntimeError("the LTC kernel is disabled by LNN_NAV_LTC_KERNEL=0")
        if _error is not None:
            raise RuntimeError(_error)
        try:
            _lib = _build()
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
            _error = f"LTC C++ kernel unavailable: {exc}"
            raise RuntimeError(_error) from exc
        return _lib


def available() -> bool:
    """True if the kernel builds/loads here; warns once (and returns False) if it does not."""
    if _lib is not None:
        return True
    if os.environ.get("LNN_NAV_LTC_KERNEL", "1") == "0":
        return False
    had_error = _error is not None
    try:
        load()
        return True
    except RuntimeError as exc:
        if not had_error:
            warnings.warn(f"{exc}; using the pure-PyTorch LTC solver", RuntimeWarning, stacklevel=3)
        return False


# Order of the float parameters everywhere in this module (and in the C pointer tables,
# where the four index tensors are interleaved as documented in the source).
PARAM_NAMES = (
    "cm", "gleak", "vleak",
    "sensory_w", "sensory_erev", "sensory_mu", "sensory_sigma",
    "w", "erev", "mu", "sigma",
    "input_w", "input_b", "output_w", "output_b",
)


@dataclass(frozen=True)
class Structure:
    """Non-differentiable description of the circuit the kernel runs.

    sensory_src, sensory_tgt: (E_s,) int64; src, tgt: (E,) int64 (contiguous, CPU);
    ode_unfolds K >= 1; epsilon >= 0; output_size O (motor neurons 0..O-1)."""

    sensory_src: torch.Tensor
    sensory_tgt: torch.Tensor
    src: torch.Tensor
    tgt: torch.Tensor
    ode_unfolds: int
    epsilon: float
    output_size: int


def param_table(params: Sequence[torch.Tensor], s: Structure) -> ctypes.Array:
    cm, gl, vl, sw, se, sm, ss, w, e, m, sg, iw, ib, ow, ob = (p.data_ptr() for p in params)
    return (ctypes.c_void_p * 19)(
        cm, gl, vl, s.sensory_src.data_ptr(), s.sensory_tgt.data_ptr(), sw, se, sm, ss,
        s.src.data_ptr(), s.tgt.data_ptr(), w, e, m, sg, iw, ib, ow, ob,
    )


def _dims(x: torch.Tensor, n: int, s: Structure, dt_strides: tuple[int, int]) -> ctypes.Array:
    b, t, i = x.shape
    return (ctypes.c_int64 * 11)(
        b, t, i, n, s.output_size, s.sensory_src.numel(), s.src.numel(), s.ode_unfolds,
        dt_strides[0], dt_strides[1], torch.get_num_threads(),
    )


def _lanes(lib: ctypes.CDLL, dtype: torch.dtype) -> int:
    return lib.ltc_lanes_f32() if dtype == torch.float32 else lib.ltc_lanes_f64()


def infer(
    x: torch.Tensor, h0: torch.Tensor, dt: float | torch.Tensor,
    params: Sequence[torch.Tensor], s: Structure, table: ctypes.Array | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward only, no autograd: (y (B, T, O), h_T (B, N)).

    x: (B, T, I) float32/float64 CPU; h0: (B, N); dt: seconds, a number or a (B, T)
    tensor (any strides, e.g. an expanded (B,) tensor); params: the 15 tensors of
    PARAM_NAMES, effective (positive ones already through softplus), x's dtype,
    contiguous; table: ``param_table(params, s)`` if the caller keeps one."""
    lib = _lib if _lib is not None else load()
    x = x.contiguous()
    h0 = h0.to(x.dtype).contiguous()
    b, t, _ = x.shape
    n = h0.shape[1]
    if isinstance(dt, torch.Tensor):
        dt_keep = dt.to(x.dtype)
        dt_ptr, strides = dt_keep.data_ptr(), (dt_keep.stride(0), dt_keep.stride(1))
    else:
        # one number read with zero strides; the ctypes object lives until the call returns
        dt_keep = (ctypes.c_float if x.dtype == torch.float32 else ctypes.c_double)(dt)
        dt_ptr, strides = ctypes.addressof(dt_keep), (0, 0)
    y = x.new_empty(b, t, s.output_size)
    h_t = x.new_empty(b, n)
    fwd = lib.ltc_forward_f32 if x.dtype == torch.float32 else lib.ltc_forward_f64
    if table is None:
        table = param_table(params, s)
    fwd(_dims(x, n, s, strides), s.epsilon, table, x.data_ptr(),
        h0.data_ptr(), dt_ptr, y.data_ptr(), h_t.data_ptr(), None)
    return y, h_t


class _LTCFunction(torch.autograd.Function):
    """(y, h_T) of the LTC solver over a sequence, with a hand-written backward.

    Saved for backward: x, h0, dt, the parameters and a trace of the sub-step
    potentials and denominators (B, T, K, 2, N); the backward recomputes every
    sigmoid from the traced potentials rather than storing the (B, T, K, E)
    synapse activations autograd would keep."""

    @staticmethod
    def forward(ctx, s, x, h0, dt, *params):  # type: ignore[override]
        lib = load()
        dtype = x.dtype
        x_ = x.detach().contiguous()
        h0_ = h0.detach().to(dtype).contiguous()
        dt_ = dt.detach().to(dtype)
        ps = [p.detach().to(dtype).contiguous() for p in params]
        b, t, _ = x_.shape
        n = h0_.shape[1]
        lanes = _lanes(lib, dtype)
        chunks = -(-b // lanes)
        trace = x_.new_empty(chunks * t * s.ode_unfolds * 2 * n * lanes)
        y = x_.new_empty(b, t, s.output_size)
        h_t = x_.new_empty(b, n)
        fwd = lib.ltc_forward_f32 if dtype == torch.float32 else lib.ltc_forward_f64
        fwd(_dims(x_, n, s, (dt_.stride(0), dt_.stride(1))), s.epsilon, param_table(ps, s),
            x_.data_ptr(), h0_.data_ptr(), dt_.data_ptr(), y.data_ptr(), h_t.data_ptr(),
            trace.data_ptr())
        ctx.save_for_backward(x_, h0_, dt_, trace, *ps)
        ctx.structure = s
        ctx.in_dtypes = [a.dtype for a in (h0, dt, *params)]
        ctx.set_materialize_grads(False)
        return y, h_t

    @staticmethod
    @once_differentiable  # the C++ backward is not itself differentiable: say so if asked
    def backward(ctx, gy, gh_t):  # type: ignore[override]
        s: Structure = ctx.structure
        x_, h0_, dt_, trace, *ps = ctx.saved_tensors
        need = ctx.needs_input_grad  # (s, x, h0, dt, *params)
        if gy is None and gh_t is None:
            return (None,) * len(need)
        lib = load()
        dtype = x_.dtype
        gy_ = gy.to(dtype).contiguous() if gy is not None else None
        gh_ = gh_t.to(dtype).contiguous() if gh_t is not None else None
        b, t, _ = x_.shape
        n = h0_.shape[1]
        gx = torch.empty_like(x_) if need[1] else None
        gh0 = torch.empty_like(h0_) if need[2] else None
        gdt = x_.new_empty(b, t) if need[3] else None
        gps = [torch.zeros_like(p) for p in ps]
        gtable = (ctypes.c_void_p * 18)(
            *(None if g is None else g.data_ptr() for g in (gx, gh0, gdt)),
            *(g.data_ptr() for g in gps),
        )
        bwd = lib.ltc_backward_f32 if dtype == torch.float32 else lib.ltc_backward_f64
        bwd(_dims(x_, n, s, (dt_.stride(0), dt_.stride(1))), s.epsilon, param_table(ps, s),
            x_.data_ptr(), h0_.data_ptr(), dt_.data_ptr(), trace.data_ptr(),
            None if gy_ is None else gy_.data_ptr(), None if gh_ is None else gh_.data_ptr(),
            gtable)
        dts = ctx.in_dtypes
        out = [gh0, gdt, *gps]
        out = [None if (g is None or not need[2 + j]) else g.to(dts[j]) for j, g in enumerate(out)]
        return (None, gx, *out)


def ltc_sequence(
    x: torch.Tensor, h0: torch.Tensor, dt: torch.Tensor,
    params: Sequence[torch.Tensor], s: Structure,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(y (B, T, O), h_T (B, N)) of the LTC over a sequence, differentiable in x, h0, dt
    and every parameter.

    x: (B, T, I) raw inputs (the kernel applies input_w/input_b) float32/float64 CPU;
    h0: (B, N); dt: (B, T) seconds, any strides; params: the 15 tensors of PARAM_NAMES,
    effective values (w, sensory_w, cm, gleak already positive); cast to x's dtype."""
    return _LTCFunction.apply(s, x, h0, dt, *params)
