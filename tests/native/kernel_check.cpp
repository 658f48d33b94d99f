// A stand-alone check of every kernel table (cpp/kernels.hpp) and top-k table
// (cpp/topk_kernels.hpp) at every SIMD level this CPU and build can run,
// against plain double-precision references, the canonical score written
// out with std::fma, and the scalar table, at 1 and 2 threads. No Python:
// this is what runs under qemu-user for the neon level (tests/native/
// check_neon.sh cross-compiles it), and it runs natively on x86 as well.
//
// Prints one line per failed check and a closing "N passed, N failed" line;
// exits 1 when anything failed or when a level it was asked to require
// (argv: level names) is missing.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels.hpp"
#include "topk.hpp"
#include "topk_kernels.hpp"

using grurec::K;
using grurec::TK;

namespace {

int n_pass = 0, n_fail = 0;
std::string level = "?";

void check(bool ok, const std::string& what) {
  if (ok) {
    ++n_pass;
  } else {
    ++n_fail;
    std::printf("FAIL [%s] %s\n", level.c_str(), what.c_str());
  }
}

std::mt19937_64 rng(12345);
std::vector<float> randn(int64_t n, float scale = 1.0f) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = d(rng);
  return v;
}
int64_t randint(int64_t lo, int64_t hi) {  // [lo, hi]
  return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
}

// max over i of |got - want| / (atol + rtol |want|) <= 1
bool close(const float* got, const double* want, int64_t n, double rtol, double atol,
           std::string* where) {
  for (int64_t i = 0; i < n; ++i) {
    const double d = std::fabs(static_cast<double>(got[i]) - want[i]);
    if (!(d <= atol + rtol * std::fabs(want[i]))) {
      char buf[160];
      std::snprintf(buf, sizeof buf, " at %lld: got %.9g want %.9g", static_cast<long long>(i),
                    got[i], want[i]);
      *where = buf;
      return false;
    }
  }
  return true;
}

// --- sgemm --------------------------------------------------------------------
// A row computed alone (M == 1: sgemm's unpacked path for alpha 1, beta 0
// or 1 and row-major B) equals the same row computed in a batch, bit for bit.
void check_sgemm_row_alone(int nt) {
  for (int64_t N : {1, 5, 16, 100, 129, 300})
    for (int64_t Kd : {1, 7, 100, 300, 600})
      for (int bz = 0; bz < 2; ++bz) {
        const int64_t M = 9, r = 5;
        const std::vector<float> A = randn(M * Kd), B = randn(Kd * N);
        std::vector<float> C = randn(M * N), C1(C.begin() + r * N, C.begin() + (r + 1) * N);
        const float beta = bz ? 0.0f : 1.0f;
        K().sgemm(M, N, Kd, 1.0f, A.data(), Kd, 1, B.data(), N, 1, beta, C.data(), N, nt);
        K().sgemm(1, N, Kd, 1.0f, A.data() + r * Kd, Kd, 1, B.data(), N, 1, beta, C1.data(), N, nt);
        char buf[96];
        std::snprintf(buf, sizeof buf, "sgemm row alone == in batch N=%lld K=%lld beta=%d nt=%d",
                      static_cast<long long>(N), static_cast<long long>(Kd), bz ? 0 : 1, nt);
        check(std::memcmp(C1.data(), C.data() + r * N, N * sizeof(float)) == 0, buf);
      }
}

void check_sgemm(int nt) {
  const int64_t shapes[][3] = {{1, 1, 1},   {7, 5, 3},    {13, 29, 17}, {64, 96, 100},
                               {33, 70, 300}, {100, 13, 9}, {6, 24, 257}, {130, 40, 64}};
  for (const auto& s : shapes) {
    const int64_t M = s[0], N = s[1], Kd = s[2];
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb)
        for (int bz = 0; bz < 2; ++bz) {
          const std::vector<float> A = randn(M * Kd), B = randn(Kd * N);
          // A(i,k) = A[i*rsa + k*csa]: row-major [M,K] or a transposed view of [K,M]
          const int64_t rsa = ta ? 1 : Kd, csa = ta ? M : 1;
          const int64_t rsb = tb ? 1 : N, csb = tb ? Kd : 1;
          const int64_t ldc = N + 3;
          std::vector<float> C = randn(M * ldc);
          if (bz) std::fill(C.begin(), C.end(), std::nanf(""));
          const float alpha = 0.75f, beta = bz ? 0.0f : -1.5f;
          std::vector<double> want(static_cast<size_t>(M * N));
          std::vector<double> tol(static_cast<size_t>(M * N));
          for (int64_t i = 0; i < M; ++i)
            for (int64_t j = 0; j < N; ++j) {
              double acc = 0, mag = 0;
              for (int64_t k = 0; k < Kd; ++k) {
                const double p = static_cast<double>(A[i * rsa + k * csa]) * B[k * rsb + j * csb];
                acc += p;
                mag += std::fabs(p);
              }
              const double c = bz ? 0.0 : beta * static_cast<double>(C[i * ldc + j]);
              want[i * N + j] = alpha * acc + c;
              tol[i * N + j] = (Kd + 4) * 1.2e-7 * (std::fabs(alpha) * mag + std::fabs(c)) + 1e-30;
            }
          K().sgemm(M, N, Kd, alpha, A.data(), rsa, csa, B.data(), rsb, csb, beta, C.data(), ldc,
                    nt);
          bool ok = true;
          for (int64_t i = 0; i < M && ok; ++i)
            for (int64_t j = 0; j < N && ok; ++j)
              ok = std::fabs(C[i * ldc + j] - want[i * N + j]) <= tol[i * N + j];
          char buf[128];
          std::snprintf(buf, sizeof buf, "sgemm M=%lld N=%lld K=%lld ta=%d tb=%d beta0=%d nt=%d",
                        static_cast<long long>(M), static_cast<long long>(N),
                        static_cast<long long>(Kd), ta, tb, bz, nt);
          check(ok, buf);
        }
  }
}

// --- GRU element-wise stages ----------------------------------------------------
double sig(double x) { return 1.0 / (1.0 + std::exp(-x)); }

void check_gru() {
  for (int64_t H : {1, 3, 4, 8, 13, 64, 100}) {
    const int64_t B = 5, b0 = 1, b1 = 4;
    const std::vector<float> G0 = randn(B * 3 * H, 2.0f), hp = randn(B * H, 0.7f);
    std::vector<float> G = G0, rh(B * H, 0.0f), ho(B * H, 0.0f);
    K().gru_fwd_gates(b0, b1, H, G.data(), hp.data(), rh.data());
    K().gru_fwd_out(b0, b1, H, G.data(), hp.data(), ho.data());
    std::vector<double> wG(B * 3 * H), wrh(B * H, 0.0), who(B * H, 0.0);
    for (int64_t i = 0; i < B * 3 * H; ++i) wG[i] = G0[i];
    for (int64_t b = b0; b < b1; ++b) {
      for (int64_t j = 0; j < 2 * H; ++j) wG[b * 3 * H + j] = sig(G0[b * 3 * H + j]);
      for (int64_t j = 0; j < H; ++j) {
        const double n = std::tanh(G0[b * 3 * H + 2 * H + j]), z = wG[b * 3 * H + H + j];
        wG[b * 3 * H + 2 * H + j] = n;
        wrh[b * H + j] = wG[b * 3 * H + j] * hp[b * H + j];
        who[b * H + j] = hp[b * H + j] + z * (n - hp[b * H + j]);
      }
    }
    std::string w;
    check(close(G.data(), wG.data(), B * 3 * H, 2e-6, 2e-7, &w), "gru_fwd G H=" + std::to_string(H) + w);
    check(close(rh.data(), wrh.data(), B * H, 2e-6, 2e-7, &w), "gru_fwd_gates rh H=" + std::to_string(H) + w);
    check(close(ho.data(), who.data(), B * H, 2e-6, 2e-7, &w), "gru_fwd_out h H=" + std::to_string(H) + w);

    // backward from the activations just computed (G = [r | z | n])
    const std::vector<float> dh = randn(B * H), drh = randn(B * H);
    std::vector<float> dA(B * 3 * H, 7.0f), dhp(B * H, 7.0f);
    K().gru_bwd_out(b0, b1, H, dh.data(), G.data(), hp.data(), dA.data(), dhp.data());
    std::vector<double> wdA(B * 3 * H, 7.0), wdhp(B * H, 7.0);
    for (int64_t b = b0; b < b1; ++b)
      for (int64_t j = 0; j < H; ++j) {
        const double z = G[b * 3 * H + H + j], n = G[b * 3 * H + 2 * H + j];
        const double h = hp[b * H + j], d = dh[b * H + j];
        wdA[b * 3 * H + H + j] = d * (n - h) * z * (1 - z);
        wdA[b * 3 * H + 2 * H + j] = d * z * (1 - n * n);
        wdhp[b * H + j] = d * (1 - z);
      }
    check(close(dA.data(), wdA.data(), B * 3 * H, 1e-5, 1e-7, &w), "gru_bwd_out dA H=" + std::to_string(H) + w);
    check(close(dhp.data(), wdhp.data(), B * H, 1e-5, 1e-7, &w), "gru_bwd_out dh_prev H=" + std::to_string(H) + w);
    K().gru_bwd_gates(b0, b1, H, drh.data(), G.data(), hp.data(), dA.data(), dhp.data());
    for (int64_t b = b0; b < b1; ++b)
      for (int64_t j = 0; j < H; ++j) {
        const double r = G[b * 3 * H + j], d = drh[b * H + j];
        wdA[b * 3 * H + j] = d * hp[b * H + j] * r * (1 - r);
        wdhp[b * H + j] += d * r;
      }
    check(close(dA.data(), wdA.data(), B * 3 * H, 1e-5, 1e-7, &w), "gru_bwd_gates dA H=" + std::to_string(H) + w);
    check(close(dhp.data(), wdhp.data(), B * H, 1e-5, 1e-6, &w), "gru_bwd_gates dh_prev H=" + std::to_string(H) + w);
  }
}

// The reset-after (cuDNN) cell's stages (kernels.hpp) against float64.
void check_gru_reset_after() {
  for (int64_t H : {1, 3, 4, 8, 13, 64, 100}) {
    const int64_t B = 5, b0 = 1, b1 = 4;
    const std::vector<float> G0 = randn(B * 3 * H, 2.0f), P = randn(B * 3 * H, 1.5f);
    const std::vector<float> hp = randn(B * H, 0.7f);
    std::vector<float> G = G0, hn(B * H, 7.0f), ho(B * H, 7.0f);
    K().gru_fwd_ra(b0, b1, H, G.data(), P.data(), hp.data(), hn.data(), ho.data());
    std::vector<double> wG(G0.begin(), G0.end()), whn(B * H, 7.0), who(B * H, 7.0);
    for (int64_t b = b0; b < b1; ++b)
      for (int64_t j = 0; j < H; ++j) {
        const int64_t o = b * 3 * H;
        const double r = sig(G0[o + j] + static_cast<double>(P[o + j]));
        const double z = sig(G0[o + H + j] + static_cast<double>(P[o + H + j]));
        const double n = std::tanh(G0[o + 2 * H + j] + r * P[o + 2 * H + j]);
        wG[o + j] = r;
        wG[o + H + j] = z;
        wG[o + 2 * H + j] = n;
        whn[b * H + j] = P[o + 2 * H + j];
        who[b * H + j] = hp[b * H + j] + z * (n - hp[b * H + j]);
      }
    std::string w;
    const std::string tag = " H=" + std::to_string(H);
    check(close(G.data(), wG.data(), B * 3 * H, 2e-6, 4e-7, &w), "gru_fwd_ra G" + tag + w);
    check(close(hn.data(), whn.data(), B * H, 0, 0, &w), "gru_fwd_ra hn" + tag + w);
    check(close(ho.data(), who.data(), B * H, 2e-6, 4e-7, &w), "gru_fwd_ra h_out" + tag + w);
    std::vector<float> dA = randn(B * 3 * H), dP(B * 3 * H, 7.0f);
    const std::vector<float> dA0 = dA;
    K().gru_bwd_ra(b0, b1, H, G.data(), hn.data(), dA.data(), dP.data());
    std::vector<double> wdA(dA0.begin(), dA0.end()), wdP(B * 3 * H, 7.0);
    for (int64_t b = b0; b < b1; ++b)
      for (int64_t j = 0; j < H; ++j) {
        const int64_t o = b * 3 * H;
        const double r = G[o + j], dn = dA0[o + 2 * H + j];
        wdA[o + j] = dn * hn[b * H + j] * r * (1 - r);
        wdP[o + j] = wdA[o + j];
        wdP[o + H + j] = dA0[o + H + j];
        wdP[o + 2 * H + j] = dn * r;
      }
    check(close(dA.data(), wdA.data(), B * 3 * H, 1e-5, 1e-7, &w), "gru_bwd_ra dA" + tag + w);
    check(close(dP.data(), wdP.data(), B * 3 * H, 1e-5, 1e-7, &w), "gru_bwd_ra dP" + tag + w);
  }
}

void check_small() {
  for (int64_t n : {1, 4, 7, 8, 31, 100}) {
    const int64_t M = 6, lda = n + 2;
    const std::vector<float> A = randn(M * lda), x = randn(n);
    std::vector<float> out = randn(n), y = randn(n);
    std::vector<double> wo(n), wy(n);
    const int64_t j0 = n > 2 ? 1 : 0, j1 = n;
    for (int64_t j = 0; j < n; ++j) {
      double s = out[j];
      if (j >= j0 && j < j1)
        for (int64_t i = 0; i < M; ++i) s += A[i * lda + j];
      wo[j] = s;
      wy[j] = static_cast<double>(y[j]) + x[j];
    }
    K().colsum_add(M, j0, j1, A.data(), lda, out.data());
    K().add(n, x.data(), y.data());
    std::string w;
    check(close(out.data(), wo.data(), n, 1e-6, 1e-6, &w), "colsum_add n=" + std::to_string(n) + w);
    check(close(y.data(), wy.data(), n, 1e-7, 1e-7, &w), "add n=" + std::to_string(n) + w);

    for (int nesterov = 0; nesterov < 2; ++nesterov)
    for (float mu : {0.0f, 0.9f}) {
      const std::vector<float> g = randn(n);
      std::vector<float> wv = randn(n), acc(n), vel = randn(n);
      for (auto& a : acc) a = std::fabs(randn(1)[0]);
      std::vector<double> ww(n), wa(n), wvel(n);
      const float lr = 0.05f, eps = 1e-6f;
      for (int64_t i = 0; i < n; ++i) {
        const double a = static_cast<double>(acc[i]) + static_cast<double>(g[i]) * g[i];
        const double s = lr * (g[i] / std::sqrt(a + eps));
        wa[i] = a;
        if (mu > 0) {
          const double v = mu * static_cast<double>(vel[i]) - s;
          wvel[i] = v;
          ww[i] = nesterov ? wv[i] + mu * v - s : wv[i] + v;
        } else {
          wvel[i] = vel[i];
          ww[i] = wv[i] - s;
        }
      }
      K().adagrad(n, wv.data(), acc.data(), vel.data(), g.data(), lr, mu, eps, nesterov);
      const std::string tag = " n=" + std::to_string(n) + " mu=" + std::to_string(mu) +
                              " nesterov=" + std::to_string(nesterov);
      check(close(wv.data(), ww.data(), n, 1e-6, 1e-7, &w), "adagrad w" + tag + w);
      check(close(acc.data(), wa.data(), n, 1e-6, 1e-7, &w), "adagrad acc" + tag + w);
      check(close(vel.data(), wvel.data(), n, 1e-6, 1e-7, &w), "adagrad vel" + tag + w);
    }

    {  // Adam, step 3 with the bias corrections folded into lr_t and eps_t
      const std::vector<float> g = randn(n);
      std::vector<float> wv = randn(n), m = randn(n, 0.1f), v(n);
      for (auto& a : v) a = std::fabs(randn(1)[0]) * 0.01f;
      std::vector<double> ww(n), wm(n), wvv(n);
      // The betas as the kernel holds them (float32): 1 - beta is then exact.
      const double lr = 0.01, b1 = 0.9f, b2 = 0.999f, eps = 1e-8, t = 3;
      const double c1 = 1 - std::pow(b1, t), c2 = 1 - std::pow(b2, t);
      for (int64_t i = 0; i < n; ++i) {
        wm[i] = b1 * m[i] + (1 - b1) * g[i];
        wvv[i] = b2 * v[i] + (1 - b2) * static_cast<double>(g[i]) * g[i];
        ww[i] = wv[i] - lr * (wm[i] / c1) / (std::sqrt(wvv[i] / c2) + eps);  // the paper's form
      }
      K().adam(n, wv.data(), m.data(), v.data(), g.data(),
               static_cast<float>(lr * std::sqrt(c2) / c1), 0.9f, 0.999f,
               static_cast<float>(eps * std::sqrt(c2)));
      const std::string tag = " n=" + std::to_string(n);
      check(close(wv.data(), ww.data(), n, 1e-6, 1e-7, &w), "adam w" + tag + w);
      check(close(m.data(), wm.data(), n, 1e-6, 1e-7, &w), "adam m" + tag + w);
      check(close(v.data(), wvv.data(), n, 1e-6, 1e-9, &w), "adam v" + tag + w);
    }
  }
}

// --- losses: cross-entropy against a double reference; every kind against
// the scalar table (tests/test_loss.py checks the scalar table's math) -------
void check_loss(const grurec::Kernels& scalar) {
  for (int64_t C : {1, 5, 8, 19, 64}) {
    const int64_t B = std::min<int64_t>(C, 6);
    const std::vector<float> R = randn(B * C, 1.5f), qc = randn(C, 0.3f);
    for (int kind = 0; kind < (C > 1 ? 3 : 1); ++kind)  // ranking losses need a negative
      for (float elu : {0.0f, 0.5f})
        for (int useq = 0; useq < (kind == 0 ? 2 : 1); ++useq) {
          const float* q = useq ? qc.data() : nullptr;
          std::vector<float> d(B * C), ds(B * C);
          const double L = K().loss(kind, 0, B, C, R.data(), q, elu, 0.3f, 0.5f, d.data());
          const double Ls = scalar.loss(kind, 0, B, C, R.data(), q, elu, 0.3f, 0.5f, ds.data());
          char tag[96];
          std::snprintf(tag, sizeof tag, "loss kind=%d C=%lld elu=%g qcorr=%d", kind,
                        static_cast<long long>(C), elu, useq);
          std::vector<double> dsd(ds.begin(), ds.end());
          std::string w;
          check(std::fabs(L - Ls) <= 1e-5 * (1 + std::fabs(Ls)), std::string(tag) + " L vs scalar");
          check(close(d.data(), dsd.data(), B * C, 1e-4, 1e-6, &w), std::string(tag) + " dR vs scalar" + w);
          if (kind == 0) {  // softmax cross-entropy in double
            double Lw = 0;
            std::vector<double> dw(B * C);
            for (int64_t i = 0; i < B; ++i) {
              std::vector<double> a(C);
              double m = -1e300;
              for (int64_t j = 0; j < C; ++j) {
                const double x = R[i * C + j];
                a[j] = (elu > 0 && x < 0 ? elu * (std::exp(x) - 1) : x) - (q ? q[j] : 0.0);
                m = std::max(m, a[j]);
              }
              double Z = 0;
              for (int64_t j = 0; j < C; ++j) Z += std::exp(a[j] - m);
              Lw += std::log(Z) + m - a[i];
              for (int64_t j = 0; j < C; ++j) {
                const double x = R[i * C + j];
                const double da = elu > 0 && x < 0 ? elu * std::exp(x) : 1.0;
                dw[i * C + j] = 0.5 * (std::exp(a[j] - m) / Z - (i == j)) * da;
              }
            }
            check(std::fabs(L - Lw) <= 1e-5 * (1 + std::fabs(Lw)), std::string(tag) + " L vs double");
            check(close(d.data(), dw.data(), B * C, 1e-4, 1e-6, &w), std::string(tag) + " dR vs double" + w);
          }
        }
  }
}

// --- top-k tables -----------------------------------------------------------
// The canonical dot (topk_kernels.hpp) written out: 8 lanes, fused
// multiply-add at the FMA levels, separate rounding at scalar.
float canon_dot(const float* q, const float* x, int64_t D, bool fma) {
  float p[8] = {};
  for (int64_t k = 0; k < D; ++k) {
    const int l = static_cast<int>(k % 8);
    if (fma) {
      p[l] = std::fma(q[k], x[k], p[l]);
    } else {
      volatile float prod = q[k] * x[k];  // rounded on its own
      p[l] = prod + p[l];
    }
  }
  for (int l = 0; l < 4; ++l) p[l] = p[l] + p[l + 4];
  for (int l = 0; l < 2; ++l) p[l] = p[l] + p[l + 2];
  return p[0] + p[1];
}

void check_topk_table(bool fma) {
  const grurec::TopkKernels& tk = TK();
  check(level == tk.name, "TK() follows K(): " + std::string(tk.name));
  // dots: every shape, exact
  for (int64_t D : {1, 3, 8, 9, 16, 31, 100})
    for (int64_t nq : {1, 2, 3, 5, 8})
      for (int64_t nx : {1, 3, 4, 7, 13, 40}) {
        const int64_t ldq = (D + tk.pad - 1) / tk.pad * tk.pad + tk.pad;
        std::vector<float> Qp(nq * ldq, 0.0f);
        const std::vector<float> qs = randn(nq * D), X = randn(nx * D);
        for (int64_t b = 0; b < nq; ++b)
          std::copy(qs.begin() + b * D, qs.begin() + (b + 1) * D, Qp.begin() + b * ldq);
        const int64_t ldt = nx + 1;
        std::vector<float> T(nq * ldt, -7.0f);
        std::vector<float> work(static_cast<size_t>(((nq + tk.panel - 1) / tk.panel * tk.panel + 16) *
                                                    8 * ((D + 7) / 8) + nx * D + 64));
        tk.dots(nq, nx, D, Qp.data(), ldq, X.data(), T.data(), ldt, work.data());
        bool ok = true, ok1 = true;
        for (int64_t b = 0; b < nq && ok; ++b)
          for (int64_t j = 0; j < nx && ok; ++j) {
            const float want = canon_dot(Qp.data() + b * ldq, X.data() + j * D, D, fma);
            ok = std::memcmp(&T[b * ldt + j], &want, 4) == 0;
            // dot1, the same pair alone (item rows are unpadded: its tail
            // must not read past the row; the last one ends X's allocation)
            const float one = tk.dot1(D, Qp.data() + b * ldq, X.data() + j * D);
            ok1 = ok1 && std::memcmp(&one, &want, 4) == 0;
          }
        check(ok1, "topk dot1 bit-exact D=" + std::to_string(D));
        char tag[96];
        std::snprintf(tag, sizeof tag, "topk dots bit-exact D=%lld nq=%lld nx=%lld",
                      static_cast<long long>(D), static_cast<long long>(nq),
                      static_cast<long long>(nx));
        check(ok, tag);
      }
  // above / count / stream_max: exact
  for (int64_t n : {1, 3, 4, 9, 64, 101}) {
    std::vector<float> row = randn(n), bias = randn(n, 0.1f);
    row[n / 2] = row[0];  // a tie
    const float thr = row[0] + bias[0];
    std::vector<int32_t> idx(n);
    std::vector<float> val(n);
    bool bad = false;
    const int64_t m = tk.above(n, row.data(), bias.data(), thr, idx.data(), val.data(), &bad);
    std::vector<int32_t> wi;
    int64_t gt = 0, eq = 0, wgt = 0, weq = 0;
    for (int64_t j = 0; j < n; ++j) {
      const float s = row[j] + bias[j];
      if (s > thr) wi.push_back(static_cast<int32_t>(j));
      wgt += s > thr;
      weq += s == thr;
    }
    bool ok = !bad && m == static_cast<int64_t>(wi.size());
    for (int64_t k = 0; ok && k < m; ++k) ok = idx[k] == wi[k] && val[k] == row[wi[k]] + bias[wi[k]];
    check(ok, "topk above n=" + std::to_string(n));
    tk.count(n, row.data(), bias.data(), thr, &gt, &eq, &bad);
    check(!bad && gt == wgt && eq == weq, "topk count n=" + std::to_string(n));
    row[n - 1] = std::nanf("");
    bad = false;
    tk.count(n, row.data(), nullptr, thr, &gt, &eq, &bad);
    check(bad, "topk count flags NaN n=" + std::to_string(n));
    row[n - 1] = 1e30f;
    check(tk.stream_max(n, row.data()) == *std::max_element(row.begin(), row.end()),
          "stream_max n=" + std::to_string(n));
  }
  // scan8: bits against a double evaluation of t3 from the exact integer
  // dot, away from the threshold
  for (int64_t D : {1, 7, 32, 50})
    for (int64_t nq : {1, 3, 4, 6, 8}) {
      const int64_t ng = 3, n = ng * 16, D2 = (D + 1) / 2, QL = 8;
      std::vector<int8_t> x8(ng * 32 * D2, 0);
      std::vector<int32_t> xd(n * D);  // item i, dim d
      for (int64_t i = 0; i < n; ++i)
        for (int64_t d = 0; d < D; ++d) {
          const int v = randint(-127, 127);
          xd[i * D + d] = v;
          x8[(i / 16) * 32 * D2 + (d / 2) * 32 + 2 * (i % 16) + d % 2] = static_cast<int8_t>(v);
        }
      std::vector<int32_t> q16(QL * D, 0);
      std::vector<uint32_t> qv(D2 * QL, 0u);
      for (int64_t r = 0; r < nq; ++r)
        for (int64_t d = 0; d < D; ++d) {
          const int v = randint(-32767, 32767);
          q16[r * D + d] = v;
          const uint32_t h = static_cast<uint16_t>(static_cast<int16_t>(v));
          qv[(d / 2) * QL + r] |= (d % 2) ? (h << 16) : h;
        }
      const std::vector<float> sc = randn(n, 0.01f), E = randn(n, 0.01f), F = randn(n, 0.01f),
                               bp = randn(n), th = randn(nq);
      std::vector<float> qf(4 * QL, 0.0f);
      for (int64_t r = 0; r < nq; ++r) {
        qf[r] = 1e-4f * static_cast<float>(randint(1, 100));
        qf[QL + r] = static_cast<float>(randint(0, 10));
        qf[2 * QL + r] = static_cast<float>(randint(0, 10));
      }
      std::vector<uint16_t> m(ng * nq);
      tk.scan8(ng, D2, x8.data(), sc.data(), E.data(), F.data(), bp.data(), nq, qv.data(), QL,
               qf.data(), th.data(), m.data());
      bool ok = true;
      for (int64_t g = 0; g < ng; ++g)
        for (int64_t r = 0; r < nq; ++r)
          for (int l = 0; l < 16; ++l) {
            const int64_t i = g * 16 + l;
            int64_t I = 0;
            for (int64_t d = 0; d < D; ++d) I += int64_t{q16[r * D + d]} * xd[i * D + d];
            const double t3 = static_cast<double>(qf[2 * QL + r]) * F[i] +
                              static_cast<double>(qf[QL + r]) * E[i] +
                              (static_cast<double>(I) * qf[r] * sc[i] + bp[i]);
            if (std::fabs(t3 - th[r]) < 1e-3) continue;
            const bool bit = (m[g * nq + r] >> l) & 1u;
            ok = ok && bit == !(t3 < th[r]);
          }
      check(ok, "scan8 D=" + std::to_string(D) + " nq=" + std::to_string(nq));
    }
}

// The whole top-k against a brute-force sort of the canonical scores, with
// and without the int8 prefilter.
void check_topk_full(bool fma, int nt) {
  for (int64_t Q : {1, 3, 8, 40})
    for (int64_t D : {5, 16, 37}) {
      const int64_t N = 3000, Kk = 10;
      std::vector<float> qs = randn(Q * D), X = randn(N * D), b = randn(N, 0.2f);
      for (int64_t j = 0; j < D; ++j) X[77 * D + j] = X[1234 * D + j];  // duplicated rows tie
      b[77] = b[1234];
      std::vector<int64_t> idx(Q * Kk), idx8(Q * Kk);
      std::vector<float> sco(Q * Kk), sco8(Q * Kk);
      int st = grurec::topk(idx.data(), sco.data(), qs.data(), X.data(), b.data(), Q, N, D, Kk,
                            nullptr, nullptr, nullptr, nt);
      grurec::TopkInt8 t8;
      const bool built = grurec::topk_int8_build(t8, X.data(), b.data(), N, D, nt);
      int st8 = grurec::topk(idx8.data(), sco8.data(), qs.data(), X.data(), b.data(), Q, N, D, Kk,
                             nullptr, nullptr, nullptr, nt, nullptr, nullptr, nullptr, &t8);
      bool ok = st == 0 && st8 == 0 && built;
      std::vector<std::pair<float, int64_t>> all(N);
      for (int64_t q = 0; q < Q && ok; ++q) {
        std::vector<float> qp(D + 16, 0.0f);
        std::copy(qs.begin() + q * D, qs.begin() + (q + 1) * D, qp.begin());
        for (int64_t j = 0; j < N; ++j)
          all[j] = {canon_dot(qp.data(), X.data() + j * D, D, fma) + b[j], j};
        std::partial_sort(all.begin(), all.begin() + Kk, all.end(), [](auto& x, auto& y) {
          return x.first > y.first || (x.first == y.first && x.second < y.second);
        });
        for (int64_t k = 0; k < Kk && ok; ++k)
          ok = idx[q * Kk + k] == all[k].second && sco[q * Kk + k] == all[k].first &&
               idx8[q * Kk + k] == all[k].second && sco8[q * Kk + k] == all[k].first;
      }
      char tag[96];
      std::snprintf(tag, sizeof tag, "topk full Q=%lld D=%lld nt=%d (plain and int8)",
                    static_cast<long long>(Q), static_cast<long long>(D), nt);
      check(ok, tag);
    }
}

}  // namespace

int main(int argc, char** argv) {
  int count = 0;
  const char* const* names = grurec::available_levels(&count);
  std::vector<std::string> have(names, names + count);
  std::printf("kernel_check: levels");
  for (auto& h : have) std::printf(" %s", h.c_str());
  std::printf("\n");
  for (int a = 1; a < argc; ++a) {
    level = argv[a];
    check(std::find(have.begin(), have.end(), level) != have.end(), "level available");
  }
  grurec::set_level("scalar");
  const grurec::Kernels& scalar = K();
  for (const auto& h : have) {
    level = h;
    check(grurec::set_level(h.c_str()) && level == K().name, "set_level");
    const bool fma = h != "scalar";
    for (int nt : {1, 2}) check_sgemm(nt);
    for (int nt : {1, 2}) check_sgemm_row_alone(nt);
    check_gru();
    check_gru_reset_after();
    check_small();
    check_loss(scalar);
    check_topk_table(fma);
    for (int nt : {1, 2}) check_topk_full(fma, nt);
    std::printf("level %s done: %d passed, %d failed so far\n", h.c_str(), n_pass, n_fail);
  }
  std::printf("%d passed, %d failed\n", n_pass, n_fail);
  return n_fail ? 1 : 0;
}
