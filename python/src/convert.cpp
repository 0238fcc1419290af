// upg.convert and upg.info of the Python module, over convert/converter.h and format/upg_container.h.
#include <filesystem>
#include <map>

#include "base/error.h"
#include "common.h"
#include "convert/candidates.h"
#include "convert/converter.h"
#include "format/upg_container.h"

namespace upg::py_binding {

namespace {

py::dict convert(const std::string& hf_dir, const std::string& out, double bpw, const std::string& codec,
                 const std::vector<std::string>& candidates, const std::optional<std::string>& calib_text, const std::string& calib_name, int64_t calib_tokens,
                 int64_t calib_window, int64_t probe_windows, bool gptq, int threads, const py::object& progress) {
  ConvertOptions o;
  o.bpw = bpw;
  if (!codec.empty()) o.codec = codec;
  if (!candidates.empty()) {
    o.candidates.clear();
    for (const auto& c : candidates) o.candidates.push_back(parse_codec_spec(c));
  }
  o.gptq = gptq;
  o.calib.window = calib_window;
  o.probe_windows = probe_windows;
  o.calib.max_windows = std::max<int64_t>(1, calib_tokens / calib_window);
  o.info = {{"calib_file", calib_name}};
  // Called between tensors and calibration windows, never inside a parallel region: Python's
  // progress callable runs there, and Ctrl-C (KeyboardInterrupt) unwinds the conversion, whose
  // writers remove their temporary files.
  o.progress = [&](const std::string& stage, size_t done, size_t total, uint64_t bytes, uint64_t total_bytes,
                   const std::string& item) {
    py::gil_scoped_acquire gil;
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
    if (!progress.is_none()) progress(stage, done, total, bytes, total_bytes, item);
  };
  ConvertReport r;
  {
    py::gil_scoped_release nogil;
    ThreadScope ts(threads);
    if (calib_text) set_calibration_text(o, hf_dir, *calib_text, calib_tokens, calib_window);
    r = convert_model(hf_dir, out, o);
  }
  py::list tensors;
  for (const auto& t : r.tensors) {
    py::dict d;
    d["name"] = t.name;
    d["codec"] = t.choice;
    d["parameters"] = t.numel;
    d["stored_bytes"] = t.bytes;
    d["bits_per_weight"] = t.numel ? 8.0 * static_cast<double>(t.bytes) / static_cast<double>(t.numel) : 0.0;
    d["rel_frobenius"] = t.rel_frobenius;
    d["rel_output"] = t.rel_output >= 0 ? py::object(py::float_(t.rel_output)) : py::object(py::none());
    d["predicted_kl"] = t.predicted_kl >= 0 ? py::object(py::float_(t.predicted_kl)) : py::object(py::none());
    tensors.append(d);
  }
  py::dict d;
  d["path"] = r.files.empty() ? out : r.files.back();
  d["files"] = r.files;
  d["file_bytes"] = r.file_bytes;
  d["parameters"] = r.params;
  d["bits_per_weight"] = r.bpw;
  d["tensors"] = tensors;
  return d;
}

// What `upg info` shows, as a dict: per tensor, per codec and totals (bits per weight of the whole
// file = file bytes x 8 / parameters).
py::dict info(const std::string& path) {
  std::unique_ptr<UpgContainer> c;
  {
    py::gil_scoped_release nogil;
    c = UpgContainer::open(path);
  }
  const auto& md = c->metadata();
  auto get = [&](const char* k) -> py::object {
    auto it = md.find(k);
    return it == md.end() ? py::object(py::none()) : py::object(py::str(it->second));
  };
  py::dict d;
  d["path"] = c->path();
  d["format"] = get("format");
  d["format_version"] = get("format_version");
  py::list files;
  for (const auto& f : c->files()) files.append(f->path());
  d["files"] = files;
  d["sharded"] = c->sharded();
  py::object arch = py::none();
  if (auto cfg = c->text("config.json")) {
    auto j = nlohmann::json::parse(*cfg, nullptr, false);
    if (j.is_object() && j.contains("architectures") && j["architectures"].is_array() && !j["architectures"].empty() &&
        j["architectures"][0].is_string())
      arch = py::str(j["architectures"][0].get<std::string>());
  }
  d["architecture"] = arch;
  py::object conv = py::none();
  if (auto it = md.find("converter"); it != md.end()) {
    auto j = nlohmann::json::parse(it->second, nullptr, false);
    conv = j.is_discarded() ? py::object(py::str(it->second)) : to_python(j);
  }
  d["converter"] = conv;
  struct CodecSum {
    int64_t tensors = 0, params = 0;
    uint64_t bytes = 0;
  };
  std::map<std::string, CodecSum> by_codec;
  int64_t params = 0;
  uint64_t stored = 0;
  py::list tensors;
  for (const UpgTensor* t : c->tensors()) {
    params += t->numel();
    stored += t->stored_bytes();
    auto& s = by_codec[t->codec];
    ++s.tensors, s.params += t->numel(), s.bytes += t->stored_bytes();
    py::dict td;
    td["name"] = t->name;
    td["shape"] = t->shape;
    td["codec"] = t->codec;
    td["params"] = to_python(t->params);
    td["bits_per_weight"] = t->bits_per_weight();
    td["stored_bytes"] = t->stored_bytes();
    td["err"] = t->err ? py::object(py::float_(*t->err)) : py::object(py::none());
    tensors.append(td);
  }
  py::dict codecs;
  for (const auto& [name, s] : by_codec) {
    py::dict cd;
    cd["tensors"] = s.tensors;
    cd["parameters"] = s.params;
    cd["stored_bytes"] = s.bytes;
    cd["bits_per_weight"] = s.params ? 8.0 * static_cast<double>(s.bytes) / static_cast<double>(s.params) : 0.0;
    codecs[py::str(name)] = cd;
  }
  const double file = static_cast<double>(c->total_bytes());
  d["tensors"] = tensors;
  d["codecs"] = codecs;
  d["parameters"] = params;
  d["stored_bytes"] = stored;
  d["file_bytes"] = c->total_bytes();
  d["bits_per_weight"] = params ? file * 8 / static_cast<double>(params) : 0.0;
  d["ratio_vs_fp32"] = file > 0 ? static_cast<double>(params) * 4 / file : 0.0;
  d["ratio_vs_bf16"] = file > 0 ? static_cast<double>(params) * 2 / file : 0.0;
  return d;
}

}  // namespace

void bind_convert(py::module_& m) {
  m.def("convert", &convert, py::arg("hf_dir"), py::arg("out"), py::arg("bpw"), py::arg("codec"),
        py::arg("candidates"), py::arg("calib_text"), py::arg("calib_name"), py::arg("calib_tokens"), py::arg("calib_window"),
        py::arg("probe_windows"), py::arg("gptq"), py::arg("threads"), py::arg("progress"));
  m.def("info", &info, py::arg("path"));
}

}  // namespace upg::py_binding
