// upg.eval of the Python module: the drivers `upg eval` uses (eval/eval_runs.h), so the dicts are
// the JSON objects the command line writes with --json.
#include "base/error.h"
#include "common.h"
#include "eval/data_files.h"
#include "eval/eval_runs.h"
#include "eval/tasks.h"
#include "runtime/model.h"

namespace upg::py_binding {

namespace {

// The progress callback of a driver: Ctrl-C check, then the Python callable (done, total, status).
EvalProgress progress_of(const py::object& progress) {
  return [&progress](int64_t done, int64_t total, const std::string& status) {
    py::gil_scoped_acquire gil;
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
    if (!progress.is_none()) progress(done, total, status);
    return true;
  };
}

std::string read_text(const std::optional<std::string>& path, const std::optional<std::string>& text) {
  if (text) return *text;
  UPG_CHECK(path.has_value(), "no text given");
  return read_data_file(*path);
}

py::object eval_ppl(const ModelPtr& model, const std::string& label, const std::optional<std::string>& text_path,
                    const std::optional<std::string>& text, const std::string& text_label, const std::string& method,
                    int ctx, int64_t chunks, const py::object& progress) {
  const ModelHandle& m = *model;
  PplEvalOptions o;
  o.model = label;
  o.text_path = text_label;
  o.method = method;
  o.ctx = ctx;
  o.chunks = chunks;
  nlohmann::json j;
  {
    py::gil_scoped_release nogil;
    ThreadScope ts(m);
    const std::string t = read_text(text_path, text);
    j = run_ppl_eval(*m.model, m.tok(), t, o, progress_of(progress));
  }
  return to_python(j);
}

py::object eval_kld(const ModelPtr& base, const std::string& base_label, const ModelPtr& model,
                    const std::string& label, const std::optional<std::string>& text_path,
                    const std::optional<std::string>& text, const std::string& text_label, int ctx, int64_t chunks,
                    const py::object& progress) {
  const ModelHandle &b = *base, &m = *model;
  KldEvalOptions o;
  o.base = base_label;
  o.model = label;
  o.text_path = text_label;
  o.ctx = ctx;
  o.chunks = chunks;
  nlohmann::json j;
  {
    py::gil_scoped_release nogil;
    ThreadScope ts(m);
    const std::string t = read_text(text_path, text);
    j = run_kld_eval(*b.model, b.tok(), *m.model, t, o, progress_of(progress)).json;
  }
  return to_python(j);
}

py::object eval_task(const std::string& name, const ModelPtr& model, const std::string& label,
                     const std::string& data, int limit, int shots, bool bos, int max_length,
                     const py::object& progress) {
  const McTaskInfo& t = find_mc_task(name);
  const ModelHandle& m = *model;
  McEvalOptions o;
  o.model = label;
  o.data = data;
  o.limit = limit;
  o.shots = shots;
  o.bos = bos;
  o.max_length = max_length;
  EvalHooks hooks;
  hooks.progress = progress_of(progress);
  nlohmann::json j;
  {
    py::gil_scoped_release nogil;
    ThreadScope ts(m);
    j = run_mc_eval(t, *m.model, m.tok(), o, {}, hooks);
  }
  return to_python(j);
}

py::object eval_humaneval(const ModelPtr& model, const std::string& label, const std::string& data, int limit,
                          int max_new_tokens, double timeout, bool bos, int max_length, bool unsafe_no_sandbox,
                          const py::object& progress) {
  const ModelHandle& m = *model;
  HumanEvalRunOptions o;
  o.model = label;
  o.data = data;
  o.limit = limit;
  o.max_new_tokens = max_new_tokens;
  o.timeout = timeout;
  o.bos = bos;
  o.max_length = max_length;
  o.unsafe_no_sandbox = unsafe_no_sandbox;
  EvalHooks hooks;
  hooks.progress = progress_of(progress);
  nlohmann::json j;
  {
    py::gil_scoped_release nogil;
    ThreadScope ts(m);
    j = run_humaneval_eval(*m.model, m.tok(), o, {}, hooks);
  }
  return to_python(j);
}

}  // namespace

void bind_eval(py::module_& m) {
  m.def("eval_ppl", &eval_ppl, py::arg("model"), py::arg("label"), py::arg("text_path"), py::arg("text"),
        py::arg("text_label"), py::arg("method"), py::arg("ctx"), py::arg("chunks"), py::arg("progress"));
  m.def("eval_kld", &eval_kld, py::arg("base"), py::arg("base_label"), py::arg("model"), py::arg("label"),
        py::arg("text_path"), py::arg("text"), py::arg("text_label"), py::arg("ctx"), py::arg("chunks"),
        py::arg("progress"));
  m.def("eval_task", &eval_task, py::arg("name"), py::arg("model"), py::arg("label"), py::arg("data"),
        py::arg("limit"), py::arg("shots"), py::arg("bos"), py::arg("max_length"), py::arg("progress"));
  m.def("eval_humaneval", &eval_humaneval, py::arg("model"), py::arg("label"), py::arg("data"), py::arg("limit"),
        py::arg("max_new_tokens"), py::arg("timeout"), py::arg("bos"), py::arg("max_length"),
        py::arg("unsafe_no_sandbox"), py::arg("progress"));
  m.def("mc_tasks", [] {
    py::list l;
    for (const auto& t : mc_tasks()) {
      py::dict d;
      d["name"] = t.name;
      d["help"] = t.help;
      d["default_data"] = t.default_data;
      d["default_shots"] = t.default_shots;
      d["takes_shots"] = t.takes_shots;
      l.append(d);
    }
    return l;
  });
  m.def("shared_data_dir", &shared_data_dir);
}

}  // namespace upg::py_binding
