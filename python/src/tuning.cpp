// upg._upg bindings for fine-tuning (python/upg/finetune.py): the decoded weights of a UPG file, one
// tensor at a time, and folding the tuned parameters back into a file (convert/tuning.h).
#include <memory>

#include "common.h"
#include "convert/tuning.h"
#include "format/upg_container.h"

namespace upg::py_binding {

namespace {

// A UPG model's tensors, decoded to fp32 on request (the container stays open, memory-mapped).
class UpgTensors {
 public:
  explicit UpgTensors(const std::string& path) {
    py::gil_scoped_release nogil;
    c_ = UpgContainer::open(path);
  }
  std::vector<std::string> names() const {
    std::vector<std::string> v;
    for (const UpgTensor* t : c_->tensors()) v.push_back(t->name);
    return v;
  }
  std::vector<int64_t> shape(const std::string& name) const { return c_->tensor(name).shape; }
  std::string codec(const std::string& name) const { return c_->tensor(name).codec; }
  std::string text(const std::string& name) const {
    auto t = c_->text(name);
    if (!t) throw Error(c_->path() + ": no '" + name + "' in the metadata");
    return *t;
  }
  py::array_t<float> decode(const std::string& name) const {
    const UpgTensor& t = c_->tensor(name);
    std::vector<float> v;
    {
      py::gil_scoped_release nogil;
      auto m = t.open_matrix();
      v.resize(static_cast<size_t>(t.rows() * t.cols()));
      if (!v.empty()) m->decode_rows(0, t.rows(), v.data());
    }
    std::vector<py::ssize_t> shape(t.shape.begin(), t.shape.end());
    return array_owning(std::move(v), shape);
  }

 private:
  std::unique_ptr<UpgContainer> c_;
};

}  // namespace

void bind_tuning(py::module_& m) {
  py::class_<UpgTensors>(m, "UpgTensors")
      .def(py::init<const std::string&>(), py::arg("path"))
      .def("names", &UpgTensors::names)
      .def("shape", &UpgTensors::shape, py::arg("name"))
      .def("codec", &UpgTensors::codec, py::arg("name"))
      .def("text", &UpgTensors::text, py::arg("name"))
      .def("decode", &UpgTensors::decode, py::arg("name"));
  m.def(
      "apply_tuning",
      [](const std::string& model, const std::string& tuned, const std::string& out) {
        TuningReport r;
        {
          py::gil_scoped_release nogil;
          r = apply_tuning(model, tuned, out);
        }
        py::dict d;
        d["path"] = r.out;
        d["tensors"] = r.tensors;
        d["rows_scaled"] = r.rows_scaled;
        d["replaced"] = r.replaced;
        return d;
      },
      py::arg("model"), py::arg("tuned"), py::arg("out"));
}

}  // namespace upg::py_binding
