// upg._upg: the compiled part of the Python package (python/upg/ is the public API over it).
#include "base/cpu_features.h"
#include "base/error.h"
#include "common.h"

PYBIND11_MODULE(_upg, m) {
  namespace py = pybind11;
  m.doc() = "UPG's C++ library (internal module; use the upg package)";
  // The build targets x86-64-v3 (AVX2, FMA, F16C): refuse to import elsewhere instead of crashing later.
  try {
    upg::require_baseline_cpu();
  } catch (const upg::Error& e) {
    throw py::import_error(e.what());
  }
  m.attr("__version__") = UPG_VERSION;
  // Every upg::Error (bad path, bad file, bad argument, KV cache full, ...) arrives as upg.Error,
  // a ValueError, with the C++ message unchanged.
  py::register_exception<upg::Error>(m, "Error", PyExc_ValueError);
  upg::py_binding::bind_model(m);
  upg::py_binding::bind_convert(m);
  upg::py_binding::bind_eval(m);
  upg::py_binding::bind_tuning(m);
}
