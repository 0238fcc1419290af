// What the binding files of the Python module share: the GIL rules, Ctrl-C, thread counts,
// JSON <-> Python, and numpy arrays that own a C++ buffer.
//
// GIL: every call that computes (load, forward passes, generation, conversion, evaluation) runs with
// the GIL released (py::gil_scoped_release); callbacks into Python (progress, Ctrl-C checks) take it
// back for their duration only. Ctrl-C: check_signals() runs Python's signal handlers; when one
// raises (KeyboardInterrupt), it throws py::error_already_set, which unwinds the C++ work (temporary
// files are removed by their owners' destructors) and reaches Python as that exception.
#pragma once
#include <omp.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/thread_pool.h"
#include "runtime/model.h"
#include "tokenizer/tokenizer.h"

namespace upg::py_binding {

namespace py = pybind11;

// A loaded model with what comes with it. Shared (std::shared_ptr) by the Python Model, its
// Tokenizer, Sessions and running generation streams, so it lives as long as any of them.
struct ModelHandle {
  std::unique_ptr<Model> model;
  std::optional<Tokenizer> tokenizer;  // nullopt when the model has no tokenizer.json
  std::optional<std::string> chat_template;
  std::string path;  // as given to load()
  int threads = 0;   // threads for this model's calls (0: the default: all cores or OMP_NUM_THREADS)
  std::shared_ptr<ThreadPool> pool;  // of `threads` threads when threads > 0 (made by load)

  // The tokenizer; throws Error "model '<path>' has no tokenizer.json" when there is none.
  const Tokenizer& tok() const {
    if (!tokenizer) throw Error("model '" + path + "' has no tokenizer.json");
    return *tokenizer;
  }
};
using ModelPtr = std::shared_ptr<ModelHandle>;

// Ctrl-C from inside compute: construct with the GIL held; call (without the GIL) between steps.
// Python runs signal handlers on its main thread only, so on other threads this does nothing; on
// the main thread it takes the GIL at most every 20 ms (not per token: another Python thread may
// hold the GIL), runs the handlers and throws error_already_set when one raised (KeyboardInterrupt).
class SignalCheck {
 public:
  SignalCheck() {
    const auto main_id = py::module_::import("threading").attr("main_thread")().attr("ident").cast<unsigned long>();
    main_ = PyThread_get_thread_ident() == main_id;
  }
  void operator()() {
    if (!main_) return;
    const auto now = std::chrono::steady_clock::now();
    if (now - last_ < std::chrono::milliseconds(20)) return;
    last_ = now;
    py::gil_scoped_acquire gil;
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
  }

 private:
  bool main_ = false;
  std::chrono::steady_clock::time_point last_{};
};

// Sets the calling thread's thread count for the scope (threads > 0), restoring it after: OpenMP's
// (the converter's and the evaluations' own loops) and the current ThreadPool (base/thread_pool.h:
// Engines built in the scope size their pools from it, kernels called outside an Engine run on it).
// The pool is `pool` when given, else one of `threads` threads made for the scope.
class ThreadScope {
 public:
  explicit ThreadScope(int threads, ThreadPool* pool = nullptr)
      : old_(omp_get_max_threads()), set_(threads > 0),
        own_(set_ && !pool ? std::make_unique<ThreadPool>(threads) : nullptr), scope_(set_ ? (pool ? pool : own_.get()) : nullptr) {
    if (set_) omp_set_num_threads(threads);
  }
  explicit ThreadScope(const ModelHandle& h) : ThreadScope(h.threads, h.pool.get()) {}
  ~ThreadScope() {
    if (set_) omp_set_num_threads(old_);
  }
  ThreadScope(const ThreadScope&) = delete;
  ThreadScope& operator=(const ThreadScope&) = delete;

 private:
  int old_;
  bool set_;
  std::unique_ptr<ThreadPool> own_;
  ThreadPool::Scope scope_;
};

// JSON -> Python objects (dict, list, str, int, float, bool, None), through the json module.
// Invalid UTF-8 in strings becomes U+FFFD.
inline py::object to_python(const nlohmann::json& j) {
  py::object loads = py::module_::import("json").attr("loads");
  return loads(py::str(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)));
}

// Python object -> JSON, through json.dumps (key order kept). Raises TypeError for what JSON cannot hold.
inline nlohmann::ordered_json from_python(const py::handle& o) {
  py::object dumps = py::module_::import("json").attr("dumps");
  return nlohmann::ordered_json::parse(dumps(o, py::arg("ensure_ascii") = false).cast<std::string>());
}

// A numpy array over a C++ vector it takes ownership of (no copy): the capsule frees the vector
// when the last array viewing it goes away.
template <class T>
py::array_t<T> array_owning(std::vector<T>&& v, std::vector<py::ssize_t> shape) {
  auto* owned = new std::vector<T>(std::move(v));
  py::capsule free_when_done(owned, [](void* p) { delete static_cast<std::vector<T>*>(p); });
  return py::array_t<T>(shape, owned->data(), free_when_done);
}

// Text from the model (tokenizer output may be invalid UTF-8) -> str, invalid bytes as U+FFFD.
inline py::str to_str(const std::string& s) {
  PyObject* o = PyUnicode_DecodeUTF8(s.data(), static_cast<py::ssize_t>(s.size()), "replace");
  if (!o) throw py::error_already_set();
  return py::reinterpret_steal<py::str>(o);
}

void bind_model(py::module_& m);
void bind_convert(py::module_& m);
void bind_eval(py::module_& m);
void bind_tuning(py::module_& m);

}  // namespace upg::py_binding
