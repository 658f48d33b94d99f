// SIGINT for long native calls: the pybind11 side of cpp/interrupt.hpp.
// Included by bindings.cpp only.
//
// Python handles SIGINT with a C handler that only records the signal; the
// Python-level handler (default_int_handler, which raises KeyboardInterrupt)
// runs when the main thread next executes bytecode -- not while it waits in a
// native call with the GIL released. So a call made from the main thread,
// while Python's default handler is installed, arms a SigintGuard: for the
// call's duration a C handler sets the call's StopFlag and then chains to the
// handler it replaced (Python's own, so Python still records the signal).
// After the kernel returns, finish() restores the handler and, if the flag
// was set, runs Python's handlers (PyErr_CheckSignals), which raise
// KeyboardInterrupt. Calls from other threads are never stopped: Python
// delivers KeyboardInterrupt to the main thread only. Custom Python SIGINT
// handlers are left alone (the call then runs to its end, as before).
// On Windows the guard does nothing.
#pragma once

#include <pybind11/pybind11.h>

#include <csignal>

#include "interrupt.hpp"

#ifndef _WIN32
#include <pythread.h>
#endif

namespace grurec_sigint {

namespace py = pybind11;

inline grurec::StopFlag g_flag{false};
inline int g_depth = 0;  // nesting on the main thread (only it arms)
#ifndef _WIN32
inline struct sigaction g_prev;

extern "C" inline void on_sigint(int sig, siginfo_t* info, void* ctx) {
  g_flag.store(true, std::memory_order_relaxed);
  if (g_prev.sa_flags & SA_SIGINFO) {
    if (g_prev.sa_sigaction) g_prev.sa_sigaction(sig, info, ctx);
  } else if (g_prev.sa_handler != SIG_DFL && g_prev.sa_handler != SIG_IGN &&
             g_prev.sa_handler != nullptr) {
    g_prev.sa_handler(sig);
  }
}
#endif

// Construct and finish() with the GIL held, around the GIL-released kernel.
class SigintGuard {
 public:
  SigintGuard() {
#ifndef _WIN32
    if (!on_main_thread_with_default_handler()) return;
    if (g_depth++ > 0) {  // an outer call on this thread already armed it
      nested_ = true;
      return;
    }
    struct sigaction cur;
    if (sigaction(SIGINT, nullptr, &cur) != 0 ||
        (!(cur.sa_flags & SA_SIGINFO) && (cur.sa_handler == SIG_DFL || cur.sa_handler == SIG_IGN))) {
      --g_depth;
      return;
    }
    struct sigaction act = {};
    act.sa_sigaction = on_sigint;
    act.sa_flags = SA_SIGINFO | (cur.sa_flags & (SA_ONSTACK | SA_RESTART));
    sigemptyset(&act.sa_mask);
    g_flag.store(false);
    if (sigaction(SIGINT, &act, &g_prev) != 0) {
      --g_depth;
      return;
    }
    armed_ = true;
#endif
  }
  SigintGuard(const SigintGuard&) = delete;
  SigintGuard& operator=(const SigintGuard&) = delete;
  ~SigintGuard() { disarm(); }

  // The flag the kernel polls (null when not armed).
  const grurec::StopFlag* flag() const { return armed_ || nested_ ? &g_flag : nullptr; }

  // With the GIL: restore the handler; raise KeyboardInterrupt (through
  // Python's handlers) if SIGINT came during the call.
  void finish() {
    const bool hit = (armed_ || nested_) && g_flag.load();
    disarm();
    if (!hit) return;
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
    PyErr_SetNone(PyExc_KeyboardInterrupt);  // the handler changed meanwhile
    throw py::error_already_set();
  }

 private:
  void disarm() {
#ifndef _WIN32
    if (nested_) {
      --g_depth;
      nested_ = false;
    }
    if (armed_) {
      sigaction(SIGINT, &g_prev, nullptr);
      --g_depth;
      armed_ = false;
    }
#endif
  }

  static bool on_main_thread_with_default_handler() {
    static const unsigned long main_ident =
        py::module_::import("threading").attr("main_thread")().attr("ident").cast<unsigned long>();
    if (PyThread_get_thread_ident() != main_ident) return false;
    // _signal's getsignal and handler, looked up once: signal.getsignal
    // converts the number to an enum on every call (~8 us, which a serving
    // call of ~100 us would pay each time). Held for the process's life on
    // purpose (never released at interpreter exit).
    static PyObject* const getsignal =
        py::object(py::module_::import("_signal").attr("getsignal")).release().ptr();
    static PyObject* const default_handler =
        py::object(py::module_::import("_signal").attr("default_int_handler")).release().ptr();
    const py::object h = py::reinterpret_steal<py::object>(PyObject_CallFunction(getsignal, "i", SIGINT));
    if (!h) throw py::error_already_set();
    return h.ptr() == default_handler;
  }

  bool armed_ = false, nested_ = false;
};

}  // namespace grurec_sigint
