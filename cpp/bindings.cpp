// The only file that knows pybind11. Every array is checked here (dtype,
// contiguity, writability, shape) before native code runs; kernels trust
// their arguments. Long calls release the GIL.
#include <cmath>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cctype>
#include <initializer_list>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/head.hpp"
#include "core/item_tower.hpp"
#include "core/sampler.hpp"
#include "core/rng.hpp"
#include "gru.hpp"
#include "infer.hpp"
#include "train.hpp"
#include "kernels.hpp"
#include "sigint.hpp"
#include "topk.hpp"

namespace py = pybind11;
using grurec::K;
using grurec_sigint::SigintGuard;

namespace {

using Shape = std::vector<int64_t>;

std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) {
    if (i) s += ", ";
    s += std::to_string(a.shape(i));
  }
  return s + (a.ndim() == 1 ? ",)" : ")");
}

std::string shape_str(const Shape& s) {
  std::string o = "(";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) o += ", ";
    o += std::to_string(s[i]);
  }
  return o + (s.size() == 1 ? ",)" : ")");
}

// A float32, C-contiguous array of exactly `shape`; writable if `out`.
float* checked(const char* name, py::handle obj, const Shape& shape, bool out) {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(std::string(name) + ": expected a numpy array, got " +
                         std::string(py::str(py::type::of(obj).attr("__name__"))));
  py::array a = py::reinterpret_borrow<py::array>(obj);
  if (!a.dtype().is(py::dtype::of<float>()))
    throw py::type_error(std::string(name) + ": expected dtype float32, got " +
                         std::string(py::str(a.dtype())));
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(std::string(name) + ": must be C-contiguous");
  if (reinterpret_cast<uintptr_t>(a.data()) % alignof(float))
    throw py::value_error(std::string(name) + ": must be aligned to 4 bytes (copy it)");
  if (out && !a.writeable())
    throw py::value_error(std::string(name) + ": must be writable");
  bool ok = a.ndim() == static_cast<py::ssize_t>(shape.size());
  for (size_t i = 0; ok && i < shape.size(); ++i) ok = a.shape(i) == shape[i];
  if (!ok)
    throw py::value_error(std::string(name) + ": expected shape " + shape_str(shape) +
                          ", got " + shape_str(a));
  return static_cast<float*>(a.mutable_data());
}

float* checked_opt(const char* name, py::handle obj, const Shape& shape) {
  return obj.is_none() ? nullptr : checked(name, obj, shape, true);
}

int64_t dim(const char* name, py::handle obj, int ndim, int axis) {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(std::string(name) + ": expected a numpy array");
  py::array a = py::reinterpret_borrow<py::array>(obj);
  if (a.ndim() != ndim)
    throw py::value_error(std::string(name) + ": expected " + std::to_string(ndim) +
                          " dimensions, got shape " + shape_str(a));
  return a.shape(axis);
}

// 0 = all cores. Larger requests are capped at 4x the hardware threads (at
// least 64): more only adds overhead, and with thousands libgomp's thread
// creation fails, which it treats as fatal (it exits the process); Hogwild
// training would also allocate one set of buffers per thread.
int resolve_threads(int n) {
  if (n < 0) throw py::value_error("num_threads must be >= 0 (0 = all cores), got " + std::to_string(n));
  if (n == 0) return grurec::default_num_threads();
  const int hw = static_cast<int>(std::thread::hardware_concurrency());
  return std::min(n, std::max(64, 4 * hw));
}

// A float32 2-D view with arbitrary element strides (tests the packing paths).
struct View2 {
  const float* p;
  int64_t rows, cols, rs, cs;
};

View2 view2(const char* name, py::handle obj) {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(std::string(name) + ": expected a numpy array");
  py::array a = py::reinterpret_borrow<py::array>(obj);
  if (!a.dtype().is(py::dtype::of<float>()))
    throw py::type_error(std::string(name) + ": expected dtype float32, got " +
                         std::string(py::str(a.dtype())));
  if (a.ndim() != 2) throw py::value_error(std::string(name) + ": expected a 2-D array");
  if (a.strides(0) % 4 || a.strides(1) % 4)
    throw py::value_error(std::string(name) + ": strides must be multiples of 4 bytes");
  return {static_cast<const float*>(a.data()), a.shape(0), a.shape(1), a.strides(0) / 4,
          a.strides(1) / 4};
}

void sgemm(py::handle a, py::handle b, py::handle c, float alpha, float beta,
           int num_threads) {
  View2 A = view2("a", a), B = view2("b", b);
  if (A.cols != B.rows)
    throw py::value_error("a and b: inner dimensions differ (" + std::to_string(A.cols) +
                          " vs " + std::to_string(B.rows) + ")");
  float* C = checked("c", c, {A.rows, B.cols}, true);
  int nt = resolve_threads(num_threads);
  py::gil_scoped_release nogil;
  K().sgemm(A.rows, B.cols, A.cols, alpha, A.p, A.rs, A.cs, B.p, B.rs, B.cs, beta, C,
            B.cols, nt);
}

void gru_forward(py::handle h_out, py::handle gates, py::handle rh, py::handle x,
                 py::handle h0, py::handle W_ih, py::handle W_hh, py::handle b,
                 py::handle b_hh, int num_threads) {
  const int64_t T = dim("x", x, 3, 0), B = dim("x", x, 3, 1), I = dim("x", x, 3, 2);
  const int64_t H = dim("h0", h0, 2, 1);
  const float* px = checked("x", x, {T, B, I}, false);
  const float* ph0 = checked("h0", h0, {B, H}, false);
  const float* pwi = checked("W_ih", W_ih, {I, 3 * H}, false);
  const float* pwh = checked("W_hh", W_hh, {H, 3 * H}, false);
  const float* pb = checked("b", b, {3 * H}, false);
  const float* pbh = b_hh.is_none() ? nullptr : checked("b_hh", b_hh, {3 * H}, false);
  float* ph = checked("h_out", h_out, {T, B, H}, true);
  float* pg = checked("gates", gates, {T, B, 3 * H}, true);
  float* prh = checked("rh", rh, {T, B, H}, true);
  int nt = resolve_threads(num_threads);
  py::gil_scoped_release nogil;
  grurec::gru_forward(ph, pg, prh, px, ph0, pwi, pwh, pb, pbh, T, B, I, H, nt);
}

// Forward for input already folded into gates (a one-hot input's row lookup).
void gru_forward_gates(py::handle h_out, py::handle gates, py::handle rh, py::handle h0,
                       py::handle W_hh, int num_threads) {
  const int64_t T = dim("gates", gates, 3, 0), B = dim("gates", gates, 3, 1);
  const int64_t H = dim("h0", h0, 2, 1);
  const float* ph0 = checked("h0", h0, {B, H}, false);
  const float* pwh = checked("W_hh", W_hh, {H, 3 * H}, false);
  float* ph = checked("h_out", h_out, {T, B, H}, true);
  float* pg = checked("gates", gates, {T, B, 3 * H}, true);
  float* prh = checked("rh", rh, {T, B, H}, true);
  int nt = resolve_threads(num_threads);
  py::gil_scoped_release nogil;
  grurec::gru_forward(ph, pg, prh, nullptr, ph0, nullptr, pwh, nullptr, nullptr, T, B, 0, H,
                      nt);
}

void gru_backward(py::handle dx, py::handle dh0, py::handle dW_ih, py::handle dW_hh,
                  py::handle db, py::handle dA, py::handle dh_out, py::handle gates,
                  py::handle rh, py::handle x, py::handle h0, py::handle h_out,
                  py::handle W_ih, py::handle W_hh, py::handle db_hh, int num_threads) {
  const int64_t T = dim("x", x, 3, 0), B = dim("x", x, 3, 1), I = dim("x", x, 3, 2);
  const int64_t H = dim("h0", h0, 2, 1);
  const float* px = checked("x", x, {T, B, I}, false);
  const float* ph0 = checked("h0", h0, {B, H}, false);
  const float* ph = checked("h_out", h_out, {T, B, H}, false);
  const float* pg = checked("gates", gates, {T, B, 3 * H}, false);
  const float* prh = checked("rh", rh, {T, B, H}, false);
  const float* pdh = checked("dh_out", dh_out, {T, B, H}, false);
  const float* pwi = checked("W_ih", W_ih, {I, 3 * H}, false);
  const float* pwh = checked("W_hh", W_hh, {H, 3 * H}, false);
  float* pdx = checked_opt("dx", dx, {T, B, I});
  float* pdh0 = checked("dh0", dh0, {B, H}, true);
  float* pdwi = checked_opt("dW_ih", dW_ih, {I, 3 * H});
  float* pdwh = checked("dW_hh", dW_hh, {H, 3 * H}, true);
  float* pdb = checked("db", db, {3 * H}, true);
  float* pdA = checked_opt("dA", dA, {T, B, 3 * H});
  float* pdbh = checked_opt("db_hh", db_hh, {3 * H});
  int nt = resolve_threads(num_threads);
  py::gil_scoped_release nogil;
  grurec::gru_backward(pdx, pdh0, pdwi, pdwh, pdb, pdbh, pdA, pdh, pg, prh, px, ph0, ph, pwi,
                       pwh, T, B, I, H, nt);
}

int loss_kind(const std::string& name) {
  if (name == "cross-entropy") return grurec::kCrossEntropy;
  if (name == "bpr-max") return grurec::kBprMax;
  if (name == "top1-max") return grurec::kTop1Max;
  throw py::value_error("loss must be 'cross-entropy', 'bpr-max' or 'top1-max', got '" + name + "'");
}

double loss(const std::string& name, py::handle R, py::handle qcorr, float elu, float bpreg,
            float scale, py::handle dR, int num_threads) {
  const int kind = loss_kind(name);
  const int64_t B = dim("R", R, 2, 0), C = dim("R", R, 2, 1);
  if (B > C) throw py::value_error("R: needs at least as many columns as rows (targets on the diagonal)");
  const float* pr = checked("R", R, {B, C}, false);
  const float* pq = qcorr.is_none() ? nullptr : checked("qcorr", qcorr, {C}, false);
  float* pd = checked("dR", dR, {B, C}, true);
  int nt = resolve_threads(num_threads);
  py::gil_scoped_release nogil;
  double total = 0.0;
#ifdef GRUREC_HAVE_OPENMP
#pragma omp parallel for num_threads(nt) reduction(+ : total) schedule(static)
#endif
  for (int64_t t = 0; t < nt; ++t)
    total += K().loss(kind, B * t / nt, B * (t + 1) / nt, C, pr, pq, elu, bpreg, scale, pd);
  return total;
}

void adagrad(py::handle w, py::handle acc, py::handle vel, py::handle g, float lr, float mu,
             float eps, bool nesterov) {
  const int64_t n = dim("w", w, 1, 0);
  float* pw = checked("w", w, {n}, true);
  float* pa = checked("acc", acc, {n}, true);
  float* pv = checked_opt("vel", vel, {n});
  const float* pg = checked("g", g, {n}, false);
  if (mu > 0.0f && !pv) throw py::value_error("vel is required when mu > 0");
  K().adagrad(n, pw, pa, pv, pg, lr, mu, eps, nesterov ? 1 : 0);
}

// One Adam step t (>= 1) on w with moments m, v, through the active kernel
// table and SparseOptimizer's bias corrections (for the tests).
void adam(py::handle w, py::handle m, py::handle v, py::handle g, float lr, float b1, float b2,
          float eps, int64_t t) {
  const int64_t n = dim("w", w, 1, 0);
  grurec::Param p;
  p.w = checked("w", w, {n}, true);
  p.vel = checked("m", m, {n}, true);
  p.acc = checked("v", v, {n}, true);
  p.rows = n;
  p.cols = 1;
  const float* pg = checked("g", g, {n}, false);
  if (t < 1) throw py::value_error("t must be >= 1");
  grurec::OptimizerConfig c;
  c.kind = grurec::kAdam;
  c.lr = lr;
  c.beta1 = b1;
  c.beta2 = b2;
  c.adam_eps = eps;
  grurec::SparseOptimizer opt(c);
  opt.begin_step(t);
  opt.dense(p, pg);
}

// Whether every table of a feature side has a velocity buffer exactly when
// the optimizer needs one.
bool has_vel(const grurec::ItemFeatureInputs& fi, bool need_vel) {
  bool ok = fi.Z == 0 || need_vel == (fi.W_z.vel != nullptr);
  for (const auto& f : fi.fields) ok &= need_vel == (f.table.vel != nullptr);
  return ok;
}

// (w, acc, vel-or-None) of one parameter, all float32 C-contiguous, same shape.
grurec::Param param(const std::string& name, py::handle t) {
  py::tuple tup = py::reinterpret_borrow<py::tuple>(t);
  if (tup.size() != 3) throw py::value_error(name + ": expected (w, acc, vel)");
  py::array w = py::reinterpret_borrow<py::array>(tup[0]);
  Shape shape(w.shape(), w.shape() + w.ndim());
  if (shape.size() == 1) shape.push_back(1);
  Shape s2 = shape;
  if (w.ndim() == 1) s2 = {shape[0]};
  grurec::Param p;
  p.w = checked((name + ".w").c_str(), tup[0], s2, true);
  p.acc = checked((name + ".acc").c_str(), tup[1], s2, true);
  p.vel = checked_opt((name + ".vel").c_str(), tup[2], s2);
  p.rows = shape[0];
  p.cols = shape[1];
  return p;
}

grurec::ItemFeatureInputs feature_inputs(py::list fields, py::handle z, py::handle W_z,
                                         int64_t N, int64_t I, float id_dropout);

py::dict train_epoch(py::list W_ih, py::list W_hh, py::list b, py::list b_hh, py::handle W_y,
                     py::handle b_y,
                     py::handle emb, py::dict cfg, py::handle offsets, py::handle items,
                     py::handle pop, py::object progress, py::object features,
                     py::object out_features, py::object readout) {
  grurec::Net net;
  grurec::TrainConfig c;
  c.loss = loss_kind(cfg["loss"].cast<std::string>());
  c.elu = cfg["elu_param"].cast<float>();
  c.bpreg = cfg["bpreg"].cast<float>();
  c.logq = cfg["logq"].cast<float>();
  c.batch_size = cfg["batch_size"].cast<int64_t>();
  c.n_sample = cfg["n_sample"].cast<int64_t>();
  c.sample_alpha = cfg["sample_alpha"].cast<float>();
  c.mode = cfg["mode"].cast<int>();
  c.dropout_embed = cfg["dropout_p_embed"].cast<float>();
  c.dropout_hidden = cfg["dropout_p_hidden"].cast<float>();
  c.opt.lr = cfg["learning_rate"].cast<float>();
  c.opt.momentum = cfg["momentum"].cast<float>();
  {
    const std::string mt = cfg.contains("momentum_type") ? cfg["momentum_type"].cast<std::string>()
                                                         : std::string("heavy-ball");
    if (mt != "heavy-ball" && mt != "nesterov")
      throw py::value_error("momentum_type must be 'heavy-ball' or 'nesterov', got '" + mt + "'");
    c.opt.nesterov = mt == "nesterov";
  }
  // Adam: {"optimizer": "adam", "adam_beta1", "adam_beta2", "adam_eps", "opt_step"}
  // (opt_step: steps taken before this epoch; the result's "opt_step" after it).
  std::atomic<int64_t> opt_step{0};
  {
    const std::string on = cfg.contains("optimizer") ? cfg["optimizer"].cast<std::string>()
                                                     : std::string("adagrad");
    if (on != "adagrad" && on != "adam")
      throw py::value_error("optimizer must be 'adagrad' or 'adam', got '" + on + "'");
    if (on == "adam") {
      c.opt.kind = grurec::kAdam;
      c.opt.beta1 = cfg["adam_beta1"].cast<float>();
      c.opt.beta2 = cfg["adam_beta2"].cast<float>();
      c.opt.adam_eps = cfg["adam_eps"].cast<float>();
      if (!(c.opt.beta1 >= 0.0f && c.opt.beta1 < 1.0f && c.opt.beta2 >= 0.0f &&
            c.opt.beta2 < 1.0f && c.opt.adam_eps > 0.0f))
        throw py::value_error("Adam needs 0 <= beta1, beta2 < 1 and eps > 0");
      opt_step = cfg.contains("opt_step") ? cfg["opt_step"].cast<int64_t>() : 0;
      if (opt_step.load() < 0) throw py::value_error("opt_step must be >= 0");
      c.opt_step = &opt_step;
    }
  }
  // Velocity buffers: Adagrad's momentum, Adam's first moment.
  const bool need_vel = c.opt.kind == grurec::kAdam || c.opt.momentum > 0;
  const char* vel_msg = "momentum > 0 and optimizer 'adam' need velocity buffers (and only they)";
  c.seed = cfg["seed"].cast<uint64_t>();
  c.num_threads = resolve_threads(cfg["num_threads"].cast<int>());
  c.workers = cfg.contains("workers") ? cfg["workers"].cast<int>() : 1;
  if (c.workers < 1) throw py::value_error("workers must be >= 1");
  c.bptt = cfg.contains("bptt") ? cfg["bptt"].cast<int64_t>() : 1;
  py::object weights_keep;  // keeps the weights array alive during training
  if (c.bptt < 1) throw py::value_error("bptt must be >= 1");
  const int64_t L = static_cast<int64_t>(W_hh.size());
  if (L < 1 || static_cast<int64_t>(W_ih.size()) != L || static_cast<int64_t>(b.size()) != L ||
      static_cast<int64_t>(b_hh.size()) != L)
    throw py::value_error("W_ih, W_hh, b and b_hh must list the same number (>= 1) of layers");
  for (int64_t l = 0; l < L; ++l) {
    net.W_hh.push_back(param("W_hh[" + std::to_string(l) + "]", W_hh[l]));
    net.W_ih.push_back(param("W_ih[" + std::to_string(l) + "]", W_ih[l]));
    net.b.push_back(param("b[" + std::to_string(l) + "]", b[l]));
    // None: a reset-before layer (no recurrent bias).
    net.b_hh.push_back(b_hh[l].is_none() ? grurec::Param{}
                                         : param("b_hh[" + std::to_string(l) + "]", b_hh[l]));
    if (net.b_hh[l].w && net.b_hh[l].rows * net.b_hh[l].cols != net.b[l].rows * net.b[l].cols)
      throw py::value_error("b_hh[" + std::to_string(l) + "]: must have the shape of b");
    net.layers.push_back(net.W_hh[l].rows);
  }
  net.W_y = param("W_y", W_y);
  net.b_y = param("b_y", b_y);
  net.n_items = net.W_y.rows;
  if (c.mode == 1) net.emb = param("emb", emb);
  if (need_vel != (net.W_y.vel != nullptr)) throw py::value_error(vel_msg);
  if (!features.is_none()) {
    // {"fields", "z", "W_z", "id_dropout"} (feature_inputs); as wide as the input rows
    py::dict fd = features.cast<py::dict>();
    const int64_t I = c.mode == 0 ? net.W_ih[0].cols : c.mode == 1 ? net.emb.cols : net.W_y.cols;
    net.features = feature_inputs(fd["fields"].cast<py::list>(), fd["z"], fd["W_z"], net.n_items,
                                  I, fd["id_dropout"].cast<float>());
    if (!has_vel(net.features, need_vel)) throw py::value_error(vel_msg);
  }
  if (!out_features.is_none()) {
    // The same dict for the output side; tables as wide as W_y's rows.
    py::dict fd = out_features.cast<py::dict>();
    net.out_features = feature_inputs(fd["fields"].cast<py::list>(), fd["z"], fd["W_z"],
                                      net.n_items, net.W_y.cols, fd["id_dropout"].cast<float>());
    if (!has_vel(net.out_features, need_vel)) throw py::value_error(vel_msg);
  }
  if (!readout.is_none() && readout.cast<py::dict>().contains("W_ih_r")) {
    // {"W_ih_r", "W_hh_r", "b_r", "bh_r", "W_q"}: (w, acc, vel) triples (core/bidir.hpp)
    py::dict rd = readout.cast<py::dict>();
    grurec::BiWeights& a = net.bidir;
    a.W_ih = param("W_ih_r", rd["W_ih_r"]);
    a.W_hh = param("W_hh_r", rd["W_hh_r"]);
    a.b = param("b_r", rd["b_r"]);
    a.b_hh = param("bh_r", rd["bh_r"]);
    a.W_q = param("W_q", rd["W_q"]);
    const int64_t HL = net.layers.back(), Hr = a.W_hh.rows;
    if (a.W_ih.rows != HL || a.W_ih.cols != 3 * Hr || a.W_hh.cols != 3 * Hr ||
        a.b.rows * a.b.cols != 3 * Hr || a.b_hh.rows * a.b_hh.cols != 3 * Hr ||
        a.W_q.rows != HL + Hr || a.W_q.cols != net.W_y.cols)
      throw py::value_error("readout: expected W_ih_r [H, 3Hr], W_hh_r [Hr, 3Hr], b_r, bh_r "
                            "[3Hr], W_q [H + Hr, D] with H the last layer's size and D W_y's "
                            "columns");
    if (need_vel != (a.W_q.vel != nullptr) || need_vel != (a.W_hh.vel != nullptr))
      throw py::value_error(vel_msg);
  } else if (!readout.is_none()) {
    // {"A1", "A2", "v", "W_q"}: (w, acc, vel) triples (core/attention.hpp)
    py::dict rd = readout.cast<py::dict>();
    grurec::AttentionWeights& a = net.readout;
    a.A1 = param("A1", rd["A1"]);
    a.A2 = param("A2", rd["A2"]);
    a.v = param("v", rd["v"]);
    a.W_q = param("W_q", rd["W_q"]);
    a.memory = rd.contains("memory") ? rd["memory"].cast<int64_t>() : 0;
    if (a.memory < 0) throw py::value_error("readout: memory must be >= 0");
    const int64_t HL = net.layers.back(), A = a.A1.cols;
    if (a.A1.rows != HL || a.A2.rows != HL || a.A2.cols != A || a.v.rows != A ||
        a.v.cols != 1 || a.W_q.rows != 2 * HL || a.W_q.cols != net.W_y.cols)
      throw py::value_error("readout: expected A1, A2 [H, A], v [A], W_q [2H, D] with H the "
                            "last layer's size and D W_y's columns");
    if (need_vel != (a.W_q.vel != nullptr) || need_vel != (a.A1.vel != nullptr))
      throw py::value_error(vel_msg);
  }
  const int64_t S = dim("offsets", offsets, 1, 0) - 1;
  const int64_t E = py::reinterpret_borrow<py::array>(items).size();
  if (!py::isinstance<py::array_t<int64_t>>(offsets) || !py::isinstance<py::array_t<int32_t>>(items))
    throw py::type_error("offsets must be int64 and items int32 arrays");
  py::array_t<int64_t, py::array::c_style> off = py::reinterpret_borrow<py::array>(offsets);
  py::array_t<int32_t, py::array::c_style> it = py::reinterpret_borrow<py::array>(items);
  const float* pp = checked("pop", pop, {net.n_items}, false);
  if (cfg.contains("weights") && !cfg["weights"].is_none()) {
    weights_keep = cfg["weights"];
    c.weights = checked("weights", weights_keep, {E}, false);
    for (int64_t e = 0; e < E; ++e)
      if (!(c.weights[e] >= 0.0f) || !std::isfinite(c.weights[e]))
        throw py::value_error("weights: value " + std::to_string(c.weights[e]) +
                              " at position " + std::to_string(e) +
                              " is not a finite number >= 0");
  }
  if (S < 1 || off.at(0) != 0 || off.at(S) != E) throw py::value_error("offsets do not index items");
  const int64_t* po = off.data();
  const int32_t* pi = it.data();
  // The trainer indexes weight rows with these: check every one (fit passes
  // private copies, so they cannot change after this check).
  for (int64_t s = 0; s < S; ++s)
    if (po[s + 1] < po[s])
      throw py::value_error("offsets: must not decrease (session " + std::to_string(s) + ")");
  for (int64_t e = 0; e < E; ++e)
    if (pi[e] < 0 || pi[e] >= net.n_items)
      throw py::value_error("items: index " + std::to_string(pi[e]) + " at position " +
                            std::to_string(e) + " is outside [0, " +
                            std::to_string(net.n_items) + ")");

  grurec::Progress cb;
  std::string py_error;
  bool interrupted = false;
  if (!progress.is_none()) {
    cb = [&](int64_t events, double loss_sum, int64_t batches) {
      py::gil_scoped_acquire gil;
      if (PyErr_CheckSignals() != 0) {  // Ctrl-C: stop after this mini-batch
        PyErr_Clear();
        interrupted = true;
        return false;
      }
      try {
        return progress(events, loss_sum, batches).cast<bool>();
      } catch (py::error_already_set& e) {
        py_error = e.what();
        return false;
      }
    };
  }
  grurec::EpochStats st;
  {
    py::gil_scoped_release nogil;
    st = grurec::train_epoch(net, c, po, S, pi, pp, cb);
  }
  if (!py_error.empty()) throw std::runtime_error("progress callback failed: " + py_error);
  py::dict r;
  r["status"] = interrupted ? std::string("interrupted")
                : st.status == grurec::EpochStats::kNonFinite ? std::string("nonfinite")
                : st.status == grurec::EpochStats::kStopped  ? std::string("stopped")
                                                              : std::string("done");
  r["batches"] = st.batches;
  r["events"] = st.events;
  r["loss_sum"] = st.loss_sum;
  if (c.opt_step) r["opt_step"] = c.opt_step->load();
  return r;
}

// A weights-only Net from a model's parameter dict (W_ih{l}, W_hh{l}, b{l},
// W_y, b_y, and emb for mode 1), every shape checked against `layers`.
grurec::Net net_from_params(py::dict p, const std::vector<int64_t>& layers, int mode) {
  if (layers.empty()) throw py::value_error("layers: at least one layer");
  if (mode < 0 || mode > 2) throw py::value_error("mode must be 0, 1 or 2");
  auto get = [&](const std::string& key) -> py::handle {
    if (!p.contains(key.c_str())) throw py::value_error("params: missing '" + key + "'");
    return p[key.c_str()];
  };
  grurec::Net net;
  net.layers = layers;
  const int64_t L = static_cast<int64_t>(layers.size()), HL = layers.back();
  const int64_t N = dim("W_y", get("W_y"), 2, 0);
  net.n_items = N;
  net.W_y.w = checked("W_y", get("W_y"), {N, HL}, false);
  net.W_y.rows = N;
  net.W_y.cols = HL;
  net.b_y.w = checked("b_y", get("b_y"), {N}, false);
  int64_t in = mode == 0 ? N : (mode == 2 ? HL : -1);
  if (mode == 1) {
    const int64_t E = dim("emb", get("emb"), 2, 1);
    net.emb.w = checked("emb", get("emb"), {N, E}, false);
    net.emb.rows = N;
    net.emb.cols = E;
    in = E;
  }
  for (int64_t l = 0; l < L; ++l) {
    const int64_t H = layers[l];
    if (H < 1) throw py::value_error("layers: sizes must be >= 1");
    const std::string sl = std::to_string(l);
    grurec::Param wi, wh, b;
    wi.w = checked(("W_ih" + sl).c_str(), get("W_ih" + sl), {in, 3 * H}, false);
    wi.rows = in;
    wi.cols = 3 * H;
    wh.w = checked(("W_hh" + sl).c_str(), get("W_hh" + sl), {H, 3 * H}, false);
    wh.rows = H;
    wh.cols = 3 * H;
    b.w = checked(("b" + sl).c_str(), get("b" + sl), {3 * H}, false);
    b.rows = 3 * H;
    b.cols = 1;
    net.W_ih.push_back(wi);
    net.W_hh.push_back(wh);
    net.b.push_back(b);
    grurec::Param bh;  // the recurrent bias of a reset-after layer, if the model has one
    if (p.contains(("bh" + sl).c_str())) {
      bh.w = checked(("bh" + sl).c_str(), get("bh" + sl), {3 * H}, false);
      bh.rows = 3 * H;
      bh.cols = 1;
    }
    net.b_hh.push_back(bh);
    in = H;
  }
  return net;
}

// The readout's weights from a parameter dict (read-only): with bi_W_q the
// bidirectional readout's bi_W_ih [HL, 3Hr], bi_W_hh [Hr, 3Hr], bi_b, bi_bh
// [3Hr], bi_W_q [HL + Hr, D]; else the attention readout's att_A1, att_A2
// [HL, A], att_v [A], att_W_q [2 HL, D], with memory (core/attention.hpp).
void readout_from_params(py::dict p, grurec::Net& net, int64_t memory) {
  if (memory < 0) throw py::value_error("memory must be >= 0");
  auto get = [&](const char* key) -> py::handle {
    if (!p.contains(key)) throw py::value_error(std::string("params: missing '") + key + "'");
    return p[key];
  };
  if (p.contains("bi_W_q")) {
    const int64_t HL = net.layers.back(), Hr = dim("bi_W_hh", get("bi_W_hh"), 2, 0);
    const int64_t D = net.W_y.cols;
    auto set = [&](grurec::Param& q, const char* key, int64_t r, int64_t c, bool vec) {
      q.w = checked(key, get(key), vec ? Shape{r} : Shape{r, c}, false);
      q.rows = r;
      q.cols = c;
    };
    set(net.bidir.W_ih, "bi_W_ih", HL, 3 * Hr, false);
    set(net.bidir.W_hh, "bi_W_hh", Hr, 3 * Hr, false);
    set(net.bidir.b, "bi_b", 3 * Hr, 1, true);
    set(net.bidir.b_hh, "bi_bh", 3 * Hr, 1, true);
    set(net.bidir.W_q, "bi_W_q", HL + Hr, D, false);
    return;
  }
  const int64_t HL = net.layers.back(), A = dim("att_A1", get("att_A1"), 2, 1);
  const int64_t D = net.W_y.cols;
  auto set = [&](grurec::Param& q, const char* key, int64_t r, int64_t c, bool vec) {
    q.w = checked(key, get(key), vec ? Shape{r} : Shape{r, c}, false);
    q.rows = r;
    q.cols = c;
  };
  set(net.readout.A1, "att_A1", HL, A, false);
  set(net.readout.A2, "att_A2", HL, A, false);
  set(net.readout.v, "att_v", A, 1, true);
  set(net.readout.W_q, "att_W_q", 2 * HL, D, false);
  net.readout.memory = memory;
}

py::array_t<float> session_states(py::dict params, std::vector<int64_t> layers, int mode,
                                  py::array_t<int64_t, py::array::c_style> offsets,
                                  py::array_t<int32_t, py::array::c_style> items,
                                  bool all_prefixes, int num_threads, py::object h0,
                                  bool all_layers, bool readout, int64_t window, bool embed,
                                  int64_t memory) {
  grurec::Net net = net_from_params(params, layers, mode);
  if (readout) {
    readout_from_params(params, net, memory);
    if (!h0.is_none() || all_layers)
      throw py::value_error("readout: h0 and all_layers are for plain GRU states");
  }
  if (embed && (!readout || !net.bidir.active() || all_prefixes))
    throw py::value_error("embed: only with the bidirectional readout, after whole sessions");
  if (offsets.ndim() != 1 || offsets.shape(0) < 1)
    throw py::value_error("offsets: expected a 1-D array of n_sessions + 1 values");
  if (items.ndim() != 1) throw py::value_error("items: expected a 1-D array");
  const int64_t S = offsets.shape(0) - 1, E = items.shape(0);
  const int64_t* po = offsets.data();
  const int32_t* pi = items.data();
  if (po[0] != 0 || po[S] != E)
    throw py::value_error("offsets: must start at 0 and end at len(items)");
  for (int64_t s = 0; s < S; ++s) {
    if (po[s + 1] < po[s]) throw py::value_error("offsets: must not decrease (session " + std::to_string(s) + ")");
    if (all_prefixes && po[s + 1] == po[s])
      throw py::value_error("session " + std::to_string(s) + " is empty");
  }
  for (int64_t e = 0; e < E; ++e)
    if (pi[e] < -1 || pi[e] >= net.n_items)
      throw py::value_error("items: index " + std::to_string(pi[e]) + " at position " +
                            std::to_string(e) + " is outside [-1, " +
                            std::to_string(net.n_items) + ")");
  if (all_layers && all_prefixes)
    throw py::value_error("all_layers: only for the states after each session");
  const int64_t HL = layers.back();
  int64_t Hsum = 0;
  for (int64_t H : layers) Hsum += H;
  const float* ph0 = h0.is_none() ? nullptr : checked("h0", h0, {S, Hsum}, false);
  const int64_t rows = all_prefixes ? E - S : S;
  const int64_t width = embed ? HL + net.bidir.Hr()
                       : readout ? net.query_width() : all_layers ? Hsum : HL;
  py::array_t<float> out(std::vector<py::ssize_t>{rows, width});
  float* pout = out.mutable_data();
  const int nt = resolve_threads(num_threads);
  SigintGuard sigint;
  if (readout) {
    {
      py::gil_scoped_release nogil;
      grurec::session_queries(net, mode, po, S, pi, all_prefixes, window, pout, nt,
                              sigint.flag(), embed);
    }
    sigint.finish();
    return out;
  }
  {
    py::gil_scoped_release nogil;
    grurec::session_states(net, mode, po, S, pi, all_prefixes, all_layers ? nullptr : pout, nt,
                           sigint.flag(), ph0, all_layers ? pout : nullptr);
  }
  sigint.finish();
  return out;
}

// Leave-one-click-out queries (infer.hpp drop_one_queries): (q [n + 1, D],
// alpha [n] with the readout, else None).
py::tuple drop_one(py::dict params, std::vector<int64_t> layers, int mode,
                   py::array_t<int32_t, py::array::c_style> items, bool readout,
                   int64_t window, int64_t memory) {
  grurec::Net net = net_from_params(params, layers, mode);
  if (readout) readout_from_params(params, net, memory);
  if (items.ndim() != 1 || items.shape(0) < 1)
    throw py::value_error("items: expected a 1-D array of at least one item index");
  const int64_t n = items.shape(0);
  const int32_t* pi = items.data();
  for (int64_t e = 0; e < n; ++e)
    if (pi[e] < 0 || pi[e] >= net.n_items)
      throw py::value_error("items: index " + std::to_string(pi[e]) + " at position " +
                            std::to_string(e) + " is outside [0, " +
                            std::to_string(net.n_items) + ")");
  const int64_t D = readout ? net.query_width() : layers.back();
  py::array_t<float> q(std::vector<py::ssize_t>{n + 1, D});
  py::object alpha = py::none();
  float* pa = nullptr;
  if (net.readout.active()) {  // attention weights: the attention readout only
    py::array_t<float> a(n);
    pa = a.mutable_data();
    alpha = a;
  }
  float* pq = q.mutable_data();
  {
    py::gil_scoped_release nogil;
    grurec::drop_one_queries(net, mode, pi, n, window, pq, pa);
  }
  return py::make_tuple(q, alpha);
}

// --- top-k and rank counts (cpp/topk.hpp) ---------------------------------
// The Python wrappers (python/grurec/topk.py) give the friendly messages;
// these checks make sure no input can crash the native code.

// A C-contiguous array of dtype T and exactly `shape`; writable if `out`.
template <class T>
T* checked_as(const char* name, const char* dtype, py::handle obj, const Shape& shape, bool out) {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(std::string(name) + ": expected a numpy array");
  py::array a = py::reinterpret_borrow<py::array>(obj);
  if (!a.dtype().is(py::dtype::of<T>()))
    throw py::type_error(std::string(name) + ": expected dtype " + dtype + ", got " +
                         std::string(py::str(a.dtype())));
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(std::string(name) + ": must be C-contiguous");
  if (reinterpret_cast<uintptr_t>(a.data()) % alignof(T))
    throw py::value_error(std::string(name) + ": must be aligned (copy it)");
  if (out && !a.writeable()) throw py::value_error(std::string(name) + ": must be writable");
  bool ok = a.ndim() == static_cast<py::ssize_t>(shape.size());
  for (size_t i = 0; ok && i < shape.size(); ++i) ok = a.shape(i) == shape[i];
  if (!ok)
    throw py::value_error(std::string(name) + ": expected shape " + shape_str(shape) +
                          ", got " + shape_str(a));
  return static_cast<T*>(a.mutable_data());
}

// Item features (core/item_features.hpp) from Python: fields = a list of
// (offsets int64 [N+1], ids int32 [nnz], (table, acc, vel)) with table
// [V+1, I]; z float32 [N, Z] or None; W_z (w, acc, vel) [Z, I] or None.
// Every id and offset is checked here: the tower indexes with them.
grurec::ItemFeatureInputs feature_inputs(py::list fields, py::handle z, py::handle W_z,
                                         int64_t N, int64_t I, float id_dropout) {
  grurec::ItemFeatureInputs f;
  f.n_items = N;
  if (!(id_dropout >= 0.0f && id_dropout <= 1.0f))
    throw py::value_error("id_dropout must be in [0, 1], got " + std::to_string(id_dropout));
  f.id_dropout = id_dropout;
  for (size_t k = 0; k < fields.size(); ++k) {
    const std::string name = "feature field " + std::to_string(k);
    py::tuple t = py::reinterpret_borrow<py::tuple>(fields[k]);
    if (t.size() != 3) throw py::value_error(name + ": expected (offsets, ids, (table, acc, vel))");
    const int64_t nnz = dim((name + " ids").c_str(), t[1], 1, 0);
    const int64_t* off = checked_as<int64_t>((name + " offsets").c_str(), "int64", t[0], {N + 1}, false);
    const int32_t* ids = checked_as<int32_t>((name + " ids").c_str(), "int32", t[1], {nnz}, false);
    grurec::FeatureField fd;
    fd.offsets = off;
    fd.ids = ids;
    fd.table = param(name + " table", t[2]);
    if (fd.table.cols != I || fd.table.rows < 1)
      throw py::value_error(name + ": table must be [V+1, " + std::to_string(I) + "], got [" +
                            std::to_string(fd.table.rows) + ", " + std::to_string(fd.table.cols) + "]");
    if (off[0] != 0 || off[N] != nnz)
      throw py::value_error(name + ": offsets must start at 0 and end at len(ids)");
    for (int64_t i = 0; i < N; ++i)
      if (off[i + 1] < off[i]) throw py::value_error(name + ": offsets decrease at item " + std::to_string(i));
    for (int64_t c = 0; c < nnz; ++c)
      if (ids[c] < 0 || ids[c] >= fd.table.rows)
        throw py::value_error(name + ": category id " + std::to_string(ids[c]) + " at position " +
                              std::to_string(c) + " is outside [0, " + std::to_string(fd.table.rows) + ")");
    f.fields.push_back(fd);
  }
  if (!z.is_none()) {
    f.Z = dim("z", z, 2, 1);
    f.z = checked("z", z, {N, f.Z}, false);
    if (W_z.is_none()) throw py::value_error("W_z is required with z");
    f.W_z = param("W_z", W_z);
    if (f.W_z.rows != f.Z || f.W_z.cols != I)
      throw py::value_error("W_z: expected shape (" + std::to_string(f.Z) + ", " + std::to_string(I) + ")");
    if (f.Z == 0) f.z = nullptr;
  }
  return f;
}

// The feature tower on its own (tests, and the inference table): x [n, I]
// = rows of items over an id table [N, I] (no embedding dropout); with dx,
// also the gradients: d_id [N, I], d_tables (dense, per field), dW_z.
py::dict feature_tower(py::handle items, py::handle id_table, py::list fields, py::handle z,
                       py::handle W_z, py::handle dx, float id_dropout, uint64_t seed,
                       int num_threads) {
  const int64_t N = dim("id_table", id_table, 2, 0), I = dim("id_table", id_table, 2, 1);
  const int64_t n = dim("items", items, 1, 0);
  const int32_t* it = checked_as<int32_t>("items", "int32", items, {n}, false);
  for (int64_t b = 0; b < n; ++b)
    if (it[b] < 0 || it[b] >= N)
      throw py::value_error("items: index " + std::to_string(it[b]) + " at position " +
                            std::to_string(b) + " is outside [0, " + std::to_string(N) + ")");
  grurec::Param idp;
  idp.w = checked("id_table", id_table, {N, I}, false);
  idp.rows = N;
  idp.cols = I;
  grurec::ItemFeatureInputs f = feature_inputs(fields, z, W_z, N, I, id_dropout);
  float* pdx = dx.is_none() ? nullptr : checked("dx", dx, {n, I}, false);
  const int nt = resolve_threads(num_threads);
  py::array_t<float> x({n, I}), keep(n);
  py::dict r;
  grurec::SparseGrad id_grads;
  const int64_t rows = std::max<int64_t>(n, 1);
  id_grads.init(N, I, rows);
  {
    std::vector<float> dxc;
    if (pdx) dxc.assign(pdx, pdx + n * I);
    py::gil_scoped_release nogil;
    grurec::FeatureTower tower(std::make_unique<grurec::TableTower>(idp, 0.0f, rows, &id_grads),
                               f, rows, nt);
    grurec::Rng rng(seed);
    tower.gather(it, n, x.mutable_data(), rng);
    std::copy(tower.keep(), tower.keep() + n, keep.mutable_data());
    if (pdx) {
      tower.scatter_grad(it, n, dxc.data());
      py::gil_scoped_acquire gil;
      py::array_t<float> d_id({N, I});
      std::fill(d_id.mutable_data(), d_id.mutable_data() + N * I, 0.0f);
      for (int64_t s = 0; s < id_grads.n; ++s)
        std::copy(&id_grads.g[s * I], &id_grads.g[s * I] + I,
                  d_id.mutable_data() + int64_t(id_grads.rows[s]) * I);
      py::list dt;
      for (size_t k = 0; k < f.fields.size(); ++k) {
        const int64_t V1 = f.fields[k].table.rows;
        py::array_t<float> d({V1, I});
        std::fill(d.mutable_data(), d.mutable_data() + V1 * I, 0.0f);
        const grurec::SparseGrad& g = tower.field_grad(k);
        for (int64_t s = 0; s < g.n; ++s)
          std::copy(&g.g[s * I], &g.g[s * I] + I, d.mutable_data() + int64_t(g.rows[s]) * I);
        dt.append(d);
      }
      py::array_t<float> dW({f.Z, I});
      std::copy(tower.dW_z(), tower.dW_z() + f.Z * I, dW.mutable_data());
      r["d_id"] = d_id;
      r["d_tables"] = dt;
      r["dW_z"] = dW;
    }
  }
  r["x"] = x;
  r["keep"] = keep;
  return r;
}

// The sampled head on its own (tests): one mini-batch's candidates, loss and
// gradients for queries q [B, D] against W_y [N, D], b_y [N], with item
// features on the output side when fields or z are given (else the id-only
// path). Returns loss, dq [B, D], cand [C], uniq [Uo], keep [Uo], dense
// dW_y [N, D] and db_y [N], and the feature gradients d_tables, dW_z.
py::dict sampled_head(py::handle q, py::handle target, py::handle W_y, py::handle b_y,
                      py::handle pop, const std::string& loss_name, int64_t n_sample,
                      float sample_alpha, float logq, float elu, float bpreg, int64_t batch_size,
                      py::list fields, py::handle z, py::handle W_z, float id_dropout,
                      uint64_t seed, int num_threads) {
  const int64_t N = dim("W_y", W_y, 2, 0), D = dim("W_y", W_y, 2, 1);
  const int64_t B = dim("q", q, 2, 0);
  const float* pq = checked("q", q, {B, D}, false);
  const int32_t* pt = checked_as<int32_t>("target", "int32", target, {B}, false);
  for (int64_t b = 0; b < B; ++b)
    if (pt[b] < 0 || pt[b] >= N) throw py::value_error("target: index outside [0, N)");
  const float* pp = checked("pop", pop, {N}, false);
  grurec::Param W, bias;
  W.w = checked("W_y", W_y, {N, D}, false);
  W.rows = N;
  W.cols = D;
  bias.w = checked("b_y", b_y, {N}, false);
  bias.rows = N;
  bias.cols = 1;
  const int kind = loss_kind(loss_name);
  grurec::ItemFeatureInputs f = feature_inputs(fields, z, W_z, N, D, id_dropout);
  const int nt = resolve_threads(num_threads);
  py::array_t<float> dq({B, D}), dW({N, D}), db(N);
  std::fill(dW.mutable_data(), dW.mutable_data() + N * D, 0.0f);
  std::fill(db.mutable_data(), db.mutable_data() + N, 0.0f);
  py::dict r;
  double total = 0.0;
  int64_t C = 0, Uo = 0;
  std::vector<int32_t> cand, uniq;
  std::vector<float> keep;
  py::list dt;
  py::array_t<float> dWz({f.Z, D});
  {
    py::gil_scoped_release nogil;
    const grurec::NegativeSampler sampler(pp, N, sample_alpha, n_sample > 0,
                                          kind == grurec::kCrossEntropy ? logq : 0.0f);
    grurec::SampledHead head;
    head.init(W, bias, sampler, grurec::HeadConfig{kind, elu, bpreg, n_sample, batch_size}, B, 0);
    std::unique_ptr<grurec::FeatureTower> out;
    if (f.active()) {
      out = std::make_unique<grurec::FeatureTower>(
          std::make_unique<grurec::TableTower>(W, 0.0f, B + n_sample, &head.rows()), f,
          B + n_sample, nt);
      head.set_output(out.get());
    }
    grurec::Rng rng(seed);
    head.draw(pt, B, rng);
    total = head.loss(pq, nt);
    head.backward(pq, dq.mutable_data(), nt);
    C = head.n_cand();
    Uo = head.n_uniq();
    cand.assign(head.cand(), head.cand() + C);
    uniq.assign(head.uniq(), head.uniq() + Uo);
    keep.assign(Uo, 1.0f);
    if (head.keep()) keep.assign(head.keep(), head.keep() + Uo);
    const grurec::SparseGrad& g = head.rows();
    for (int64_t s2 = 0; s2 < g.n; ++s2)
      std::copy(&g.g[s2 * D], &g.g[s2 * D] + D, dW.mutable_data() + int64_t(g.rows[s2]) * D);
    for (int64_t u = 0; u < Uo; ++u)
      if (keep[u] != 0.0f) db.mutable_data()[uniq[u]] = head.db()[u];
    if (out) std::copy(out->dW_z(), out->dW_z() + f.Z * D, dWz.mutable_data());
    py::gil_scoped_acquire gil;
    for (size_t k = 0; out && k < f.fields.size(); ++k) {
      const int64_t V1 = f.fields[k].table.rows;
      py::array_t<float> d({V1, D});
      std::fill(d.mutable_data(), d.mutable_data() + V1 * D, 0.0f);
      const grurec::SparseGrad& fg = out->field_grad(k);
      for (int64_t s2 = 0; s2 < fg.n; ++s2)
        std::copy(&fg.g[s2 * D], &fg.g[s2 * D] + D, d.mutable_data() + int64_t(fg.rows[s2]) * D);
      dt.append(d);
    }
  }
  r["loss"] = total;
  r["dq"] = dq;
  r["cand"] = py::array_t<int32_t>(C, cand.data());
  r["uniq"] = py::array_t<int32_t>(Uo, uniq.data());
  r["keep"] = py::array_t<float>(Uo, keep.data());
  r["dW_y"] = dW;
  r["db_y"] = db;
  r["d_tables"] = dt;
  r["dW_z"] = dWz;
  return r;
}

void topk_raise(int status) {
  if (status == grurec::kTopkNoMemory) throw std::bad_alloc();
  if (status == grurec::kTopkStopped) {  // (SigintGuard::finish raises first)
    PyErr_SetNone(PyExc_KeyboardInterrupt);
    throw py::error_already_set();
  }
}

// Named counters as a dict (the prefilters' stats for tests).
py::dict counters(std::initializer_list<std::pair<const char*, int64_t>> kv) {
  py::dict d;
  for (const auto& [name, value] : kv) d[name] = value;
  return d;
}

// A read-only array over data owned by base (kept alive by the array).
py::array_t<float> readonly_view(std::vector<int64_t> shape, const float* data, py::handle base) {
  py::array_t<float> a(shape, data, base);
  a.attr("setflags")(py::arg("write") = false);
  return a;
}

// A prepared item table for topk (grurec.TopkIndex): its own float32 copy of
// the items and bias (so the int8 copy can never go stale) and the int8
// prefilter's table built from them.
struct TopkInt8Index {
  std::vector<float> items, bias;
  bool has_bias = false;
  grurec::TopkInt8 t;
};

std::unique_ptr<TopkInt8Index> make_int8_index(py::handle items, py::handle bias,
                                               int num_threads) {
  const int64_t N = dim("items", items, 2, 0), D = dim("items", items, 2, 1);
  const float* px = checked("items", items, {N, D}, false);
  const float* pb = bias.is_none() ? nullptr : checked("bias", bias, {N}, false);
  if (N < 1 || D < 1) throw py::value_error("items: need at least one item and one dimension");
  auto ix = std::make_unique<TopkInt8Index>();
  const int nt = resolve_threads(num_threads);
  bool ok;
  {
    py::gil_scoped_release nogil;
    ix->items.assign(px, px + N * D);
    if (pb) ix->bias.assign(pb, pb + N);
    ix->has_bias = pb != nullptr;
    ok = grurec::topk_int8_build(ix->t, px, pb, N, D, nt);
  }
  if (!ok) throw std::bad_alloc();
  return ix;
}

// Writes out_idx[Q, k] and out_scores[Q, k]; returns False when some score
// was not finite (the outputs are then meaningless).
bool topk_native(py::handle queries, py::handle items, py::handle bias, int64_t k,
                 py::handle excl_offsets, py::handle excl_indices, py::handle allowed,
                 py::handle out_idx, py::handle out_scores, int num_threads,
                 py::handle targets, py::handle greater, py::handle equal, py::handle index) {
  const int64_t Q = dim("queries", queries, 2, 0), D = dim("queries", queries, 2, 1);
  const TopkInt8Index* ix = nullptr;
  int64_t N;
  const float* px;
  const float* pb;
  if (!index.is_none()) {
    ix = &index.cast<const TopkInt8Index&>();
    if (!items.is_none() || !bias.is_none())
      throw py::value_error("with index, items and bias must be None (the index holds them)");
    if (ix->t.D != D)
      throw py::value_error("queries: expected " + std::to_string(ix->t.D) +
                            " dimensions (the index's), got " + std::to_string(D));
    N = ix->t.N;
    px = ix->items.data();
    pb = ix->has_bias ? ix->bias.data() : nullptr;
  } else {
    N = dim("items", items, 2, 0);
    px = checked("items", items, {N, D}, false);
    pb = bias.is_none() ? nullptr : checked("bias", bias, {N}, false);
  }
  const float* pq = checked("queries", queries, {Q, D}, false);
  if (k < 1 || k > N)
    throw py::value_error("k must be in [1, n_items] = [1, " + std::to_string(N) + "], got " +
                          std::to_string(k));
  const int64_t* po = nullptr;
  const int64_t* pe = nullptr;
  if (excl_offsets.is_none() != excl_indices.is_none())
    throw py::value_error("excl_offsets and excl_indices: give both or neither");
  if (!excl_offsets.is_none()) {
    po = checked_as<int64_t>("excl_offsets", "int64", excl_offsets, {Q + 1}, false);
    const int64_t nnz = dim("excl_indices", excl_indices, 1, 0);
    pe = checked_as<int64_t>("excl_indices", "int64", excl_indices, {nnz}, false);
    if (po[0] != 0 || po[Q] != nnz)
      throw py::value_error("excl_offsets must start at 0 and end at len(excl_indices)");
    for (int64_t q = 0; q < Q; ++q) {
      if (po[q + 1] < po[q]) throw py::value_error("excl_offsets must be non-decreasing");
      for (int64_t j = po[q]; j < po[q + 1]; ++j) {
        if (pe[j] < 0 || pe[j] >= N)
          throw py::value_error("excl_indices: item index " + std::to_string(pe[j]) +
                                " out of range [0, " + std::to_string(N) + ")");
        if (j > po[q] && pe[j] < pe[j - 1])
          throw py::value_error("excl_indices must be ascending within each query");
      }
    }
  }
  const uint8_t* pa = nullptr;
  if (!allowed.is_none()) {
    if (py::isinstance<py::array>(allowed) &&
        py::reinterpret_borrow<py::array>(allowed).dtype().is(py::dtype::of<bool>()))
      pa = reinterpret_cast<const uint8_t*>(checked_as<bool>("allowed", "bool", allowed, {N}, false));
    else
      pa = checked_as<uint8_t>("allowed", "bool or uint8", allowed, {N}, false);
  }
  int64_t* pi = checked_as<int64_t>("out_idx", "int64", out_idx, {Q, k}, true);
  float* ps = checked("out_scores", out_scores, {Q, k}, true);
  const int64_t* pt = nullptr;
  int64_t* pg = nullptr;
  int64_t* pq_eq = nullptr;
  if (targets.is_none() != greater.is_none() || targets.is_none() != equal.is_none())
    throw py::value_error("targets, greater and equal: give all three or none");
  if (!targets.is_none()) {
    pt = checked_as<int64_t>("targets", "int64", targets, {Q}, false);
    for (int64_t i = 0; i < Q; ++i)
      if (pt[i] < -1 || pt[i] >= N)
        throw py::value_error("targets[" + std::to_string(i) + "] = " + std::to_string(pt[i]) +
                              " is out of range [-1, " + std::to_string(N) + ")");
    pg = checked_as<int64_t>("greater", "int64", greater, {Q}, true);
    pq_eq = checked_as<int64_t>("equal", "int64", equal, {Q}, true);
  }
  const int nt = resolve_threads(num_threads);
  int status;
  SigintGuard sigint;
  {
    py::gil_scoped_release nogil;
    status = grurec::topk(pi, ps, pq, px, pb, Q, N, D, k, po, pe, pa, nt, pt, pg, pq_eq,
                          ix ? &ix->t : nullptr, sigint.flag());
  }
  sigint.finish();
  topk_raise(status);
  return status == grurec::kTopkOk;
}

void check_targets(const int64_t* t, int64_t n, int64_t N) {
  for (int64_t i = 0; i < n; ++i)
    if (t[i] < 0 || t[i] >= N)
      throw py::value_error("targets[" + std::to_string(i) + "] = " + std::to_string(t[i]) +
                            " is out of range [0, " + std::to_string(N) + ")");
}

// Writes greater[Q], equal[Q]; returns False when some score was not finite.
bool rank_counts_native(py::handle queries, py::handle items, py::handle bias, py::handle targets,
                        py::handle greater, py::handle equal, int num_threads) {
  const int64_t Q = dim("queries", queries, 2, 0), D = dim("queries", queries, 2, 1);
  const int64_t N = dim("items", items, 2, 0);
  const float* pq = checked("queries", queries, {Q, D}, false);
  const float* px = checked("items", items, {N, D}, false);
  const float* pb = bias.is_none() ? nullptr : checked("bias", bias, {N}, false);
  const int64_t* pt = checked_as<int64_t>("targets", "int64", targets, {Q}, false);
  check_targets(pt, Q, N);
  int64_t* pg = checked_as<int64_t>("greater", "int64", greater, {Q}, true);
  int64_t* pe = checked_as<int64_t>("equal", "int64", equal, {Q}, true);
  const int nt = resolve_threads(num_threads);
  int status;
  SigintGuard sigint;
  {
    py::gil_scoped_release nogil;
    status = grurec::rank_counts(pg, pe, pq, px, pb, pt, Q, N, D, nt, sigint.flag());
  }
  sigint.finish();
  topk_raise(status);
  return status == grurec::kTopkOk;
}

bool rank_counts_dense_native(py::handle scores, py::handle targets, py::handle greater,
                              py::handle equal, int num_threads) {
  const int64_t R = dim("scores", scores, 2, 0), N = dim("scores", scores, 2, 1);
  const float* ps = checked("scores", scores, {R, N}, false);
  const int64_t* pt = checked_as<int64_t>("targets", "int64", targets, {R}, false);
  check_targets(pt, R, N);
  int64_t* pg = checked_as<int64_t>("greater", "int64", greater, {R}, true);
  int64_t* pe = checked_as<int64_t>("equal", "int64", equal, {R}, true);
  const int nt = resolve_threads(num_threads);
  int status;
  SigintGuard sigint;
  {
    py::gil_scoped_release nogil;
    status = grurec::rank_counts_dense(pg, pe, ps, pt, R, N, nt, sigint.flag());
  }
  sigint.finish();
  topk_raise(status);
  return status == grurec::kTopkOk;
}

float stream_max_native(py::handle x, int num_threads) {
  if (!py::isinstance<py::array>(x)) throw py::type_error("x: expected a numpy array");
  py::array a = py::reinterpret_borrow<py::array>(x);
  Shape shape(a.shape(), a.shape() + a.ndim());
  const float* p = checked("x", x, shape, false);
  if (a.size() == 0) throw py::value_error("x: empty");
  const int nt = resolve_threads(num_threads);
  py::gil_scoped_release nogil;
  return grurec::stream_max(p, a.size(), nt);
}

// topk_<name>_available / topk_<name>_enabled / set_topk_<name> /
// topk_<name>_stats for one of topk's many-query prefilters (GRUREC_TOPK_<NAME>=0
// turns it off); its counters as pairs, exact, blocks_<name>, blocks_plain.
void def_prefilter(py::module_& m, const std::string& name, const std::string& needs,
                   bool (*available)(), bool (*enabled)(), void (*set)(bool),
                   grurec::TopkPrefilterStats (*stats)(bool)) {
  std::string up = name;
  for (char& c : up) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  m.def(("topk_" + name + "_available").c_str(), available,
        ("Whether this CPU and build have topk's " + name + " prefilter " + needs + ".").c_str());
  m.def(("topk_" + name + "_enabled").c_str(), enabled,
        ("Whether topk uses the " + name + " prefilter where it can (GRUREC_TOPK_" + up +
         "=0 turns it off).").c_str());
  m.def(("set_topk_" + name).c_str(), set, py::arg("on"),
        ("Switch topk's " + name +
         " prefilter on or off (tests; results are the same either way).").c_str());
  const std::string bname = "blocks_" + name;
  m.def(("topk_" + name + "_stats").c_str(), [stats, bname](bool reset) {
    const grurec::TopkPrefilterStats st = stats(reset);
    return counters({{"pairs", st.pairs}, {"exact", st.exact}, {bname.c_str(), st.blocks_used},
                     {"blocks_plain", st.blocks_plain}});
  }, py::arg("reset") = false,
        ("Counters of the " + name + " prefilter since the last reset: pairs approximated, "
         "pairs scored exactly after it, item blocks with and without it.").c_str());
}

// A prefilter probe's inputs, checked: queries[Q,D], items[N,D], bias[N] or None.
struct ProbeArgs {
  int64_t Q, N, D;
  const float *q, *x, *b;
  ProbeArgs(py::handle queries, py::handle items, py::handle bias)
      : Q(dim("queries", queries, 2, 0)), N(dim("items", items, 2, 0)),
        D(dim("queries", queries, 2, 1)),
        q(checked("queries", queries, {Q, D}, false)),
        x(checked("items", items, {N, D}, false)),
        b(bias.is_none() ? nullptr : checked("bias", bias, {N}, false)) {}
};

// U[Q,N]: the int16 prefilter's upper bounds of every score (tests), or
// None when it is not available.
py::object topk_i16_probe(py::handle queries, py::handle items, py::handle bias) {
  const ProbeArgs a(queries, items, bias);
  py::array_t<float> U({a.Q, a.N});
  float* pu = U.mutable_data();
  bool ok;
  {
    py::gil_scoped_release nogil;
    ok = grurec::i16_probe(pu, a.q, a.x, a.b, a.Q, a.N, a.D);
  }
  if (!ok) return py::none();
  return U;
}

// U[Q,N], L[Q,N]: the bf16 prefilter's bounds on every score (tests), or
// None when the prefilter is not available.
py::object topk_bf16_probe(py::handle queries, py::handle items, py::handle bias) {
  const ProbeArgs a(queries, items, bias);
  py::array_t<float> U({a.Q, a.N}), L({a.Q, a.N});
  float* pu = U.mutable_data();
  float* pl = L.mutable_data();
  bool ok;
  {
    py::gil_scoped_release nogil;
    ok = grurec::bf16_probe(pu, pl, a.q, a.x, a.b, a.Q, a.N, a.D);
  }
  if (!ok) return py::none();
  return py::make_tuple(U, L);
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "grurec native core (C++ kernels, run-time SIMD dispatch, OpenMP)";

  m.def("simd_level", [] { return std::string(K().name); },
        "The SIMD level the kernels run at: 'scalar', 'avx2', 'avx512' or 'neon'.");
  m.def("available_simd_levels", [] {
    int n = 0;
    const char* const* names = grurec::available_levels(&n);
    std::vector<std::string> out(names, names + n);
    return out;
  }, "Levels this CPU and build can run, narrowest first.");
  m.def("set_simd_level", [](const std::string& name) {
    if (!grurec::set_level(name.c_str()))
      throw py::value_error("SIMD level '" + name + "' is not available on this CPU/build");
  }, py::arg("level"));
  m.def("default_num_threads", &grurec::default_num_threads);
  m.def("openmp_enabled", [] {
#ifdef GRUREC_HAVE_OPENMP
    return true;
#else
    return false;
#endif
  });

  m.def("sgemm", &sgemm, py::arg("a"), py::arg("b"), py::arg("c"), py::arg("alpha") = 1.0f,
        py::arg("beta") = 0.0f, py::arg("num_threads") = 0,
        "c = alpha * a @ b + beta * c; a and b may be any strided float32 views.");
  m.def("loss", &loss, py::arg("loss"), py::arg("R"), py::arg("qcorr"), py::arg("elu"),
        py::arg("bpreg"), py::arg("scale"), py::arg("dR"), py::arg("num_threads") = 0,
        "Sampled-softmax family losses; writes dR, returns the summed loss.");
  m.def("adagrad", &adagrad, py::arg("w"), py::arg("acc"), py::arg("vel"), py::arg("g"),
        py::arg("lr"), py::arg("mu"), py::arg("eps"), py::arg("nesterov") = false);
  m.def("adam", &adam, py::arg("w"), py::arg("m"), py::arg("v"), py::arg("g"), py::arg("lr"),
        py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("t"));
  m.def("train_epoch", &train_epoch, py::arg("W_ih"), py::arg("W_hh"), py::arg("b"),
        py::arg("b_hh"), py::arg("W_y"), py::arg("b_y"), py::arg("emb"), py::arg("config"), py::arg("offsets"),
        py::arg("items"), py::arg("pop"), py::arg("progress") = py::none(),
        py::arg("features") = py::none(), py::arg("out_features") = py::none(),
        py::arg("readout") = py::none(),
        "One GRU4Rec training epoch in C++ (GIL released); see cpp/train.hpp.");
  m.def("feature_tower", &feature_tower, py::arg("items"), py::arg("id_table"),
        py::arg("fields"), py::arg("z"), py::arg("W_z"), py::arg("dx") = py::none(),
        py::arg("id_dropout") = 0.0f, py::arg("seed") = 0, py::arg("num_threads") = 1,
        "The item feature tower's forward (and with dx, backward) over an id table "
        "(cpp/core/item_tower.hpp FeatureTower).");
  m.def("sampled_head", &sampled_head, py::arg("q"), py::arg("target"), py::arg("W_y"),
        py::arg("b_y"), py::arg("pop"), py::arg("loss"), py::arg("n_sample"),
        py::arg("sample_alpha"), py::arg("logq"), py::arg("elu"), py::arg("bpreg"),
        py::arg("batch_size"), py::arg("fields"), py::arg("z"), py::arg("W_z"),
        py::arg("id_dropout") = 0.0f, py::arg("seed") = 0, py::arg("num_threads") = 1,
        "One mini-batch of the sampled head (cpp/core/head.hpp), for tests.");
  m.def("sample_popularity", [](py::handle pop, float alpha, int64_t n, uint64_t seed) {
    const int64_t N = dim("pop", pop, 1, 0);
    const float* pp = checked("pop", pop, {N}, false);
    if (N < 1 || n < 0) throw py::value_error("need at least one item and n >= 0");
    bool any = false;
    for (int64_t i = 0; i < N; ++i) {
      if (!(pp[i] >= 0)) throw py::value_error("pop: negative or NaN at index " + std::to_string(i));
      any = any || pp[i] > 0;
    }
    if (!any) throw py::value_error("pop: no item has positive popularity");
    py::array_t<int32_t> out(n);
    int32_t* po = out.mutable_data();
    {
      py::gil_scoped_release nogil;
      grurec::sample_popularity(po, n, pp, N, alpha, seed);
    }
    return out;
  }, py::arg("pop"), py::arg("alpha"), py::arg("n"), py::arg("seed"));
  m.def("session_states", &session_states, py::arg("params"), py::arg("layers"),
        py::arg("mode"), py::arg("offsets"), py::arg("items"), py::arg("all_prefixes"),
        py::arg("num_threads") = 0, py::arg("h0") = py::none(), py::arg("all_layers") = false,
        py::arg("readout") = false, py::arg("window") = 0, py::arg("embed") = false,
        py::arg("memory") = 0,
        "Last-layer GRU states after each session (or after every prefix), or every layer's "
        "(all_layers), optionally from initial states h0 [S, sum H]; with readout, the "
        "readout queries (params att_* or bi_*, spans of window plus memory earlier "
        "positions for the attention); with embed, the "
        "bidirectional readout's session embeddings [h ; b]; see cpp/infer.hpp.");
  m.def("drop_one_queries", &drop_one, py::arg("params"), py::arg("layers"), py::arg("mode"),
        py::arg("items"), py::arg("readout") = false, py::arg("window") = 0,
        py::arg("memory") = 0,
        "Queries after a sequence and after each leave-one-click-out variant of it "
        "(explanations); see cpp/infer.hpp.");
  m.def("gru_forward", &gru_forward, py::arg("h_out"), py::arg("gates"), py::arg("rh"),
        py::arg("x"), py::arg("h0"), py::arg("W_ih"), py::arg("W_hh"), py::arg("b"),
        py::arg("b_hh") = py::none(), py::arg("num_threads") = 0);
  m.def("gru_forward_gates", &gru_forward_gates, py::arg("h_out"), py::arg("gates"),
        py::arg("rh"), py::arg("h0"), py::arg("W_hh"), py::arg("num_threads") = 0,
        "gru_forward with gates pre-filled with the input contribution x W_ih + b.");
  m.def("gru_backward", &gru_backward, py::arg("dx"), py::arg("dh0"), py::arg("dW_ih"),
        py::arg("dW_hh"), py::arg("db"), py::arg("dA"), py::arg("dh_out"), py::arg("gates"),
        py::arg("rh"), py::arg("x"), py::arg("h0"), py::arg("h_out"), py::arg("W_ih"),
        py::arg("W_hh"), py::arg("db_hh") = py::none(), py::arg("num_threads") = 0);

  m.def("topk", &topk_native, py::arg("queries"), py::arg("items"), py::arg("bias"),
        py::arg("k"), py::arg("excl_offsets"), py::arg("excl_indices"), py::arg("allowed"),
        py::arg("out_idx"), py::arg("out_scores"), py::arg("num_threads") = 0,
        py::arg("targets") = py::none(), py::arg("greater") = py::none(),
        py::arg("equal") = py::none(), py::arg("index") = py::none(),
        "Top-k items per query into out_idx/out_scores (see cpp/topk.hpp), and with "
        "targets (-1 = none) the targets' rank counts into greater/equal in the same pass; "
        "with index (a TopkInt8Index; items and bias None) against its table. "
        "False when some score was not finite.");
  py::class_<TopkInt8Index>(m, "TopkInt8Index",
                            "A prepared item table for topk: a float32 copy of the items "
                            "and bias plus the int8 prefilter's table (cpp/topk.hpp).")
      .def(py::init(&make_int8_index), py::arg("items"), py::arg("bias") = py::none(),
           py::arg("num_threads") = 0)
      .def_property_readonly("n_items", [](const TopkInt8Index& x) { return x.t.N; })
      .def_property_readonly("dim", [](const TopkInt8Index& x) { return x.t.D; })
      .def_property_readonly("has_bias", [](const TopkInt8Index& x) { return x.has_bias; })
      .def_property_readonly("nbytes", [](const TopkInt8Index& x) {
        return static_cast<int64_t>((x.items.size() + x.bias.size() + x.t.sc.size() +
                                     x.t.E.size() + x.t.F.size() + x.t.bp.size()) * sizeof(float) +
                                    x.t.x8.size());
      })
      .def("items", [](py::object self) {
        const auto& x = self.cast<const TopkInt8Index&>();
        return readonly_view({x.t.N, x.t.D}, x.items.data(), self);
      }, "The items, a read-only view.")
      .def("bias", [](py::object self) -> py::object {
        const auto& x = self.cast<const TopkInt8Index&>();
        if (!x.has_bias) return py::none();
        return readonly_view({x.t.N}, x.bias.data(), self);
      }, "The bias, a read-only view (None without one).");
  m.def("topk_int8_stats", [](bool reset) {
    const grurec::TopkInt8Stats st = grurec::int8_stats(reset);
    return counters({{"pairs", st.pairs}, {"exact", st.exact}, {"blocks", st.blocks}});
  }, py::arg("reset") = false,
        "Counters of the int8 prefilter since the last reset: pairs bounded, pairs scored "
        "exactly after it, item blocks scanned.");
  m.def("topk_int8_probe", [](py::handle queries, py::handle scores, const TopkInt8Index& ix) {
    const int64_t Q = dim("queries", queries, 2, 0);
    const float* pq = checked("queries", queries, {Q, ix.t.D}, false);
    const float* ps = checked("scores", scores, {Q, ix.t.N}, false);
    py::gil_scoped_release nogil;
    return grurec::int8_probe(pq, ps, ix.t, Q);
  }, py::arg("queries"), py::arg("scores"), py::arg("index"),
        "Pairs whose int8 scan bit is clear at a threshold equal to their own canonical "
        "score (each would be a wrongly skipped item; must be 0).");
  m.def("rank_counts", &rank_counts_native, py::arg("queries"), py::arg("items"),
        py::arg("bias"), py::arg("targets"), py::arg("greater"), py::arg("equal"),
        py::arg("num_threads") = 0,
        "Items scoring above / equal to each query's target; False when some score was not finite.");
  m.def("rank_counts_dense", &rank_counts_dense_native, py::arg("scores"), py::arg("targets"),
        py::arg("greater"), py::arg("equal"), py::arg("num_threads") = 0,
        "rank_counts for a dense score block (rows x items).");
  def_prefilter(m, "bf16", "(AVX512_BF16)", &grurec::bf16_prefilter_available,
                &grurec::bf16_prefilter_enabled, &grurec::bf16_prefilter_set, &grurec::bf16_stats);
  m.def("topk_bf16_probe", &topk_bf16_probe, py::arg("queries"), py::arg("items"),
        py::arg("bias") = py::none(),
        "(U, L), the prefilter's bounds on every canonical avx512 score, or None.");
  def_prefilter(m, "i16", "(AVX2 + FMA)", &grurec::i16_prefilter_available,
                &grurec::i16_prefilter_enabled, &grurec::i16_prefilter_set, &grurec::i16_stats);
  m.def("topk_i16_probe", &topk_i16_probe, py::arg("queries"), py::arg("items"),
        py::arg("bias") = py::none(),
        "U, the int16 prefilter's upper bounds of every canonical avx2 score, or None.");
  m.def("stream_max", &stream_max_native, py::arg("x"), py::arg("num_threads") = 0,
        "max of a float32 array read once by num_threads threads (memory-bandwidth probe).");
}
