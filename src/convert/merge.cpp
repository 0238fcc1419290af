#include "convert/merge.h"

#include <stdlib.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>

#include "base/error.h"
#include "base/staging_dir.h"
#include "base/half.h"
#include "base/mapped_file.h"
#include "format/hf_checkpoint.h"
#include "format/upg_stream_writer.h"

namespace upg {

namespace fs = std::filesystem;
using nlohmann::json;
using nlohmann::ordered_json;

const char* merge_method_name(MergeMethod m) {
  switch (m) {
    case MergeMethod::Linear: return "linear";
    case MergeMethod::Slerp: return "slerp";
    case MergeMethod::TaskArithmetic: return "task_arithmetic";
    case MergeMethod::Ties: return "ties";
  }
  return "?";
}

namespace {

// ---------------------------------------------------------------- recipe

const char* torch_dtype_name(TensorDType t) {
  return t == TensorDType::F32 ? "float32" : t == TensorDType::F16 ? "float16" : "bfloat16";
}

// Folds mergekit's nested "parameters" object into the other keys of `obj`; a key given both ways
// is an error.
std::map<std::string, json> flatten(const json& obj, const std::string& where) {
  std::map<std::string, json> flat;
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    if (it.key() != "parameters") {
      flat[it.key()] = it.value();
      continue;
    }
    UPG_CHECK(it.value().is_object(), where, ": \"parameters\" must be an object, found ", it.value().dump());
    for (auto p = it.value().begin(); p != it.value().end(); ++p) {
      UPG_CHECK(!obj.contains(p.key()), where, ": \"", p.key(), "\" is given both directly and under \"parameters\"");
      flat[p.key()] = p.value();
    }
  }
  return flat;
}

void check_keys(const std::map<std::string, json>& flat, const std::set<std::string>& known, const std::string& where) {
  for (const auto& [k, v] : flat) {
    if (known.count(k)) continue;
    std::string list;
    for (const auto& n : known) list += (list.empty() ? "" : ", ") + n;
    throw Error(str_cat(where, ": unknown key \"", k, "\" (known: ", list, ")"));
  }
}

double get_number(const json& v, const std::string& where) {
  UPG_CHECK(v.is_number(), where, " must be a number, found ", v.dump(),
            v.is_array() || v.is_object() ? " (gradients and per-tensor filters are not supported)" : "");
  const double d = v.get<double>();
  UPG_CHECK(std::isfinite(d), where, " must be finite, found ", v.dump());
  return d;
}

std::string get_string(const json& v, const std::string& where) {
  UPG_CHECK(v.is_string() && !v.get<std::string>().empty(), where, " must be a non-empty string, found ", v.dump());
  return v.get<std::string>();
}

bool same_dir(const std::string& a, const std::string& b) {
  std::error_code ec1, ec2;
  const fs::path pa = fs::weakly_canonical(a, ec1), pb = fs::weakly_canonical(b, ec2);
  if (ec1 || ec2) return fs::absolute(a).lexically_normal() == fs::absolute(b).lexically_normal();
  return pa == pb;
}

// The models that are not the base (all of them when there is no base).
std::vector<const MergeModel*> non_base(const MergeRecipe& r) {
  std::vector<const MergeModel*> v;
  for (const auto& m : r.models)
    if (r.base_model.empty() || !same_dir(m.model, r.base_model)) v.push_back(&m);
  return v;
}

}  // namespace

const std::string& MergeRecipe::reference_model() const { return base_model.empty() ? models.at(0).model : base_model; }

MergeRecipe MergeRecipe::parse(const std::string& text, const std::string& origin) {
  const json j = json::parse(text, nullptr, false);
  UPG_CHECK(!j.is_discarded(), origin, ": not valid JSON (merge recipes are JSON; convert a mergekit YAML file first)");
  UPG_CHECK(j.is_object(), origin, ": a merge recipe must be a JSON object, found ", j.type_name());
  const auto flat = flatten(j, origin);
  check_keys(flat, {"method", "merge_method", "base_model", "models", "t", "normalize", "lambda", "dtype", "tokenizer_source"},
             origin);
  MergeRecipe r;

  UPG_CHECK(!(flat.count("method") && flat.count("merge_method")), origin, ": give \"method\" or \"merge_method\", not both");
  auto mit = flat.count("method") ? flat.find("method") : flat.find("merge_method");
  UPG_CHECK(mit != flat.end(), origin, ": \"method\" is missing (linear, slerp, task_arithmetic or ties)");
  const std::string method = get_string(mit->second, origin + ": \"method\"");
  if (method == "linear") r.method = MergeMethod::Linear;
  else if (method == "slerp") r.method = MergeMethod::Slerp;
  else if (method == "task_arithmetic") r.method = MergeMethod::TaskArithmetic;
  else if (method == "ties") r.method = MergeMethod::Ties;
  else throw Error(str_cat(origin, ": unknown merge method \"", method, "\" (supported: linear, slerp, task_arithmetic, ties)"));
  const MergeMethod m = r.method;
  const std::string mname = method;

  if (flat.count("base_model")) r.base_model = get_string(flat.at("base_model"), origin + ": \"base_model\"");
  if (flat.count("tokenizer_source"))
    r.tokenizer_source = get_string(flat.at("tokenizer_source"), origin + ": \"tokenizer_source\"");

  // Method parameters.
  UPG_CHECK(m == MergeMethod::Slerp || !flat.count("t"), origin, ": \"t\" applies to slerp only, not ", mname);
  UPG_CHECK(m != MergeMethod::Slerp || !flat.count("normalize"), origin, ": \"normalize\" does not apply to slerp");
  UPG_CHECK(m == MergeMethod::TaskArithmetic || m == MergeMethod::Ties || !flat.count("lambda"), origin,
            ": \"lambda\" applies to task_arithmetic and ties only, not ", mname);
  if (flat.count("t")) r.t = get_number(flat.at("t"), origin + ": \"t\"");
  r.normalize = m != MergeMethod::TaskArithmetic;  // mergekit's defaults
  if (flat.count("normalize")) {
    const json& v = flat.at("normalize");
    UPG_CHECK(v.is_boolean(), origin, ": \"normalize\" must be true or false, found ", v.dump());
    r.normalize = v.get<bool>();
  }
  if (flat.count("lambda")) r.lambda = get_number(flat.at("lambda"), origin + ": \"lambda\"");
  if (flat.count("dtype")) {
    const json& v = flat.at("dtype");
    const std::string d = v.is_string() ? v.get<std::string>() : v.dump();
    if (d == "bfloat16" || d == "bf16") r.dtype = TensorDType::BF16;
    else if (d == "float16" || d == "f16") r.dtype = TensorDType::F16;
    else if (d == "float32" || d == "f32") r.dtype = TensorDType::F32;
    else throw Error(str_cat(origin, ": unknown \"dtype\" ", v.dump(), " (bfloat16, float16 or float32)"));
  }

  // Models.
  UPG_CHECK(flat.count("models"), origin, ": \"models\" is missing");
  const json& models = flat.at("models");
  UPG_CHECK(models.is_array() && !models.empty(), origin, ": \"models\" must be a non-empty array of {\"model\": DIR, ...}");
  for (size_t i = 0; i < models.size(); ++i) {
    const std::string where = str_cat(origin, ": models[", i, "]");
    const json& e = models[i];
    UPG_CHECK(e.is_object(), where, " must be an object {\"model\": DIR, \"weight\": W, ...}, found ", e.dump());
    const auto f = flatten(e, where);
    check_keys(f, {"model", "weight", "density"}, where);
    UPG_CHECK(f.count("model"), where, ": \"model\" is missing");
    MergeModel mm;
    mm.model = get_string(f.at("model"), where + ".model");
    if (f.count("weight")) {
      UPG_CHECK(m != MergeMethod::Slerp, where, ": \"weight\" does not apply to slerp (use \"t\")");
      mm.weight = get_number(f.at("weight"), where + ".weight");
    }
    if (f.count("density")) {
      UPG_CHECK(m == MergeMethod::Ties, where, ": \"density\" applies to ties only, not ", mname);
      mm.density = get_number(f.at("density"), where + ".density");
      UPG_CHECK(mm.density > 0 && mm.density <= 1, where, ".density must be in (0, 1], found ", mm.density);
    }
    r.models.push_back(std::move(mm));
  }

  // Roles.
  const bool needs_base = m == MergeMethod::TaskArithmetic || m == MergeMethod::Ties;
  UPG_CHECK(!needs_base || !r.base_model.empty(), origin, ": ", mname,
            " needs \"base_model\" (task vectors are each model minus the base)");
  const auto others = non_base(r);
  if (m == MergeMethod::Slerp) {
    if (r.base_model.empty())
      UPG_CHECK(r.models.size() == 2, origin, ": slerp merges exactly two models; \"models\" has ", r.models.size(),
                " (give two, or base_model and one other)");
    else
      UPG_CHECK(others.size() == 1, origin, ": slerp merges exactly two models: base_model and one other; \"models\" has ",
                others.size(), " besides the base");
  } else if (needs_base) {
    UPG_CHECK(!others.empty(), origin, ": ", mname, " needs at least one model besides base_model");
  }
  if (m != MergeMethod::Slerp) {
    double sum = 0;
    for (size_t i = 0; i < r.models.size(); ++i) {
      const MergeModel& mm = r.models[i];
      const bool is_base = !r.base_model.empty() && needs_base && same_dir(mm.model, r.base_model);
      if (is_base) continue;
      UPG_CHECK(mm.weight.has_value(), origin, ": models[", i, "] (", mm.model, ") has no \"weight\"; ", mname,
                " needs one per model");
      sum += *mm.weight;
    }
    UPG_CHECK(m != MergeMethod::Linear || !r.normalize || sum != 0, origin,
              ": the weights sum to 0, so \"normalize\": true would divide by 0");
  }
  return r;
}

MergeRecipe MergeRecipe::load(const std::string& path) {
  std::string text;
  try {
    text = read_text_file(path, kMaxConfigFileBytes);
  } catch (const Error& e) {
    throw Error(str_cat("cannot open merge recipe: ", e.what()));
  }
  return parse(text, path);
}

ordered_json MergeRecipe::to_json() const {
  ordered_json j;
  j["method"] = merge_method_name(method);
  if (!base_model.empty()) j["base_model"] = base_model;
  ordered_json ms = ordered_json::array();
  for (const auto& m : models) {
    ordered_json e;
    e["model"] = m.model;
    if (m.weight) e["weight"] = *m.weight;
    if (method == MergeMethod::Ties) e["density"] = m.density;
    ms.push_back(e);
  }
  j["models"] = ms;
  if (method == MergeMethod::Slerp) j["t"] = t;
  else j["normalize"] = normalize;
  if (method == MergeMethod::TaskArithmetic || method == MergeMethod::Ties) j["lambda"] = lambda;
  if (dtype) j["dtype"] = torch_dtype_name(*dtype);
  if (!tokenizer_source.empty()) j["tokenizer_source"] = tokenizer_source;
  return j;
}

// ---------------------------------------------------------------- merging

namespace {

constexpr int64_t kChunk = 1 << 20;  // elements per chunk

bool is_float(TensorDType t) {
  return t == TensorDType::F32 || t == TensorDType::F16 || t == TensorDType::BF16 || t == TensorDType::F64;
}

// Elements [begin, begin + n) of a floating tensor as fp32.
void read_f32(const TensorView& t, int64_t begin, int64_t n, float* out) {
  const uint8_t* p = t.data + static_cast<size_t>(begin) * tensor_dtype_size(t.dtype);
  switch (t.dtype) {
    case TensorDType::F32: std::memcpy(out, p, static_cast<size_t>(n) * 4); return;
    case TensorDType::BF16:
    case TensorDType::F16: {
      const bool bf = t.dtype == TensorDType::BF16;
#pragma omp parallel for if (n > 65536)
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        out[i] = bf ? bf16_to_f32(h) : f16_to_f32(h);
      }
      return;
    }
    case TensorDType::F64:
      for (int64_t i = 0; i < n; ++i) {
        double d;
        std::memcpy(&d, p + 8 * i, 8);
        out[i] = static_cast<float>(d);
      }
      return;
    default: break;
  }
  throw Error(str_cat("tensor '", t.name, "': cannot read ", tensor_dtype_name(t.dtype), " as fp32"));
}


// Files copied from the tokenizer source when present.
const std::vector<std::string>& side_files() {
  static const std::vector<std::string> names = {
      "tokenizer.json",     "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
      "vocab.json",         "merges.txt",            "added_tokens.json",       "generation_config.json",
      "chat_template.jinja", "chat_template.json"};
  return names;
}

// The models, each directory opened once.
struct Inputs {
  std::vector<std::unique_ptr<HfCheckpoint>> cks;
  std::vector<std::string> dirs;  // as given in the recipe (for messages)

  size_t open(const std::string& dir) {
    for (size_t i = 0; i < dirs.size(); ++i)
      if (same_dir(dirs[i], dir)) return i;
    cks.push_back(HfCheckpoint::open(dir));
    dirs.push_back(dir);
    return cks.size() - 1;
  }
};

// Same architecture, same tensor names and shapes; throws naming both models and the first difference.
void check_compatible(const HfCheckpoint& a, const std::string& an, const HfCheckpoint& b, const std::string& bn) {
  const std::string both = str_cat("cannot merge '", an, "' and '", bn, "': ");
  const std::string tail =
      "; only checkpoints of one architecture and shape can be merged (serve different models side by side instead)";
  for (const char* key : {"architectures", "model_type"}) {
    const json va = a.config().contains(key) ? a.config()[key] : json();
    const json vb = b.config().contains(key) ? b.config()[key] : json();
    UPG_CHECK(va == vb, both, "config.json \"", key, "\" is ", va.dump(), " in '", an, "' but ", vb.dump(), " in '", bn,
              "'", tail);
  }
  const std::vector<std::string> na = a.names(), nb = b.names();
  std::vector<std::string> diff;
  std::set_difference(na.begin(), na.end(), nb.begin(), nb.end(), std::back_inserter(diff));
  UPG_CHECK(diff.empty(), both, "tensor '", diff.empty() ? "" : diff[0], "' is in '", an, "' but not in '", bn, "'", tail);
  std::set_difference(nb.begin(), nb.end(), na.begin(), na.end(), std::back_inserter(diff));
  UPG_CHECK(diff.empty(), both, "tensor '", diff.empty() ? "" : diff[0], "' is in '", bn, "' but not in '", an, "'", tail);
  for (const auto& n : na) {
    const TensorView& ta = a.tensor(n);
    const TensorView& tb = b.tensor(n);
    UPG_CHECK(ta.shape == tb.shape, both, "tensor '", n, "' has shape ", ta.shape_str(), " in '", an, "' but ",
              tb.shape_str(), " in '", bn, "'", tail);
  }
}

// Writes n merged values in dtype dt.
void write_values(SafetensorsStreamWriter& w, const double* v, int64_t n, TensorDType dt, std::vector<uint8_t>& scratch) {
  scratch.resize(static_cast<size_t>(n) * tensor_dtype_size(dt));
  if (dt == TensorDType::F32) {
    float* o = reinterpret_cast<float*>(scratch.data());
    for (int64_t i = 0; i < n; ++i) o[i] = static_cast<float>(v[i]);
  } else {
    uint16_t* o = reinterpret_cast<uint16_t*>(scratch.data());
    const bool bf = dt == TensorDType::BF16;
    for (int64_t i = 0; i < n; ++i) {
      const float f = static_cast<float>(v[i]);
      o[i] = bf ? f32_to_bf16(f) : f32_to_f16(f);
    }
  }
  w.write(scratch.data(), scratch.size());
}

// ties: which entries of a task vector survive trimming. Keeps the k = int(density * numel)
// largest |delta|; among entries equal to the k-th largest, the ones with the lowest flat index.
struct Trim {
  bool all = true;
  float tau = 0;
  int64_t eq_keep = 0, eq_seen = 0;
  bool keep(float d) {
    if (all) return true;
    const float a = std::fabs(d);
    if (a > tau) return true;
    if (a == tau && eq_seen < eq_keep) return ++eq_seen, true;
    return false;
  }
};

class Merger {
 public:
  Merger(const MergeRecipe& r, const Inputs& in) : r_(r), in_(in) {}

  // Role of each input: index into in_.cks plus weight/density.
  struct Role {
    size_t ck;
    double weight = 1, density = 1;
    std::string name;
  };
  std::vector<Role> roles;  // linear: the models; slerp: v0, v1; task_arithmetic/ties: base, then task models

  void merge_tensor(const std::string& name, TensorDType dt, SafetensorsStreamWriter& w) {
    std::vector<const TensorView*> t;
    for (const Role& ro : roles) t.push_back(&in_.cks[ro.ck]->tensor(name));
    const int64_t numel = t[0]->numel();
    const size_t k = t.size();
    buf_.resize(k);
    for (auto& b : buf_) b.resize(static_cast<size_t>(std::min<int64_t>(numel, kChunk)));
    out_.resize(static_cast<size_t>(std::min<int64_t>(numel, kChunk)));
    w.begin_array(name, dt, t[0]->shape);

    // Per-tensor quantities.
    double s0 = 0, s1 = 0;
    bool lerp = false;
    std::vector<Trim> trims(k);
    if (r_.method == MergeMethod::Slerp) slerp_coefficients(*t[0], *t[1], numel, lerp, s0, s1);
    if (r_.method == MergeMethod::Ties)
      for (size_t i = 1; i < k; ++i) trims[i] = trim_for(*t[0], *t[i], numel, roles[i]);

    double wsum = 0;
    for (size_t i = r_.method == MergeMethod::Linear ? 0 : 1; i < k; ++i) wsum += roles[i].weight;
    for (int64_t b = 0; b < numel; b += kChunk) {
      const int64_t n = std::min(kChunk, numel - b);
      for (size_t i = 0; i < k; ++i) read_f32(*t[i], b, n, buf_[i].data());
      double* o = out_.data();
      switch (r_.method) {
        case MergeMethod::Linear: {
#pragma omp parallel for if (n > 65536)
          for (int64_t j = 0; j < n; ++j) {
            double s = 0;
            for (size_t i = 0; i < k; ++i) s += roles[i].weight * static_cast<double>(buf_[i][j]);
            o[j] = r_.normalize ? s / wsum : s;
          }
          break;
        }
        case MergeMethod::Slerp: {
          const double t_ = r_.t;
          const float* v0 = buf_[0].data();
          const float* v1 = buf_[1].data();
#pragma omp parallel for if (n > 65536)
          for (int64_t j = 0; j < n; ++j)
            o[j] = lerp ? (1 - t_) * static_cast<double>(v0[j]) + t_ * static_cast<double>(v1[j])
                        : s0 * static_cast<double>(v0[j]) + s1 * static_cast<double>(v1[j]);
          break;
        }
        case MergeMethod::TaskArithmetic: {
          const double div = std::fabs(wsum) < 1e-8 ? 1.0 : wsum;
#pragma omp parallel for if (n > 65536)
          for (int64_t j = 0; j < n; ++j) {
            double s = 0;
            for (size_t i = 1; i < k; ++i) s += roles[i].weight * static_cast<double>(buf_[i][j] - buf_[0][j]);
            if (r_.normalize) s /= div;
            o[j] = static_cast<double>(buf_[0][j]) + r_.lambda * s;
          }
          break;
        }
        case MergeMethod::Ties: {
          // Trimming is sequential (ties at the threshold are kept in index order): delta, or 0.
          for (size_t i = 1; i < k; ++i) {
            float* x = buf_[i].data();
            const float* base = buf_[0].data();
            for (int64_t j = 0; j < n; ++j) {
              const float d = x[j] - base[j];
              x[j] = trims[i].keep(d) ? d : 0.f;
            }
          }
#pragma omp parallel for if (n > 65536)
          for (int64_t j = 0; j < n; ++j) {
            double sum = 0;
            for (size_t i = 1; i < k; ++i) sum += roles[i].weight * static_cast<double>(buf_[i][j]);
            const int sign = sum >= 0 ? 1 : -1;
            double mixed = 0, div = 0;
            for (size_t i = 1; i < k; ++i) {
              const double e = roles[i].weight * static_cast<double>(buf_[i][j]);
              if ((sign > 0 && e > 0) || (sign < 0 && e < 0)) mixed += e, div += roles[i].weight;
            }
            if (div == 0) div = 1;
            if (r_.normalize) mixed /= div;
            o[j] = static_cast<double>(buf_[0][j]) + r_.lambda * mixed;
          }
          break;
        }
      }
      write_values(w, o, n, dt, scratch_);
    }
    w.end_array();
  }

 private:
  // mergekit's slerp on the flattened tensors (norms and dot product accumulated in double).
  void slerp_coefficients(const TensorView& a, const TensorView& b, int64_t numel, bool& lerp, double& s0,
                          double& s1) {
    double aa = 0, bb = 0, ab = 0;
    for (int64_t c = 0; c < numel; c += kChunk) {
      const int64_t n = std::min(kChunk, numel - c);
      read_f32(a, c, n, buf_[0].data());
      read_f32(b, c, n, buf_[1].data());
      for (int64_t j = 0; j < n; ++j) {
        const double x = buf_[0][j], y = buf_[1][j];
        aa += x * x, bb += y * y, ab += x * y;
      }
    }
    constexpr double eps = 1e-8;
    const double na = std::sqrt(aa), nb = std::sqrt(bb);
    const double dot = ab / ((na > eps ? na : 1.0) * (nb > eps ? nb : 1.0));
    lerp = std::fabs(dot) > 0.9995;
    if (lerp) return;
    const double theta0 = std::acos(dot), sin0 = std::sin(theta0), theta_t = theta0 * r_.t;
    s0 = std::sin(theta0 - theta_t) / sin0;
    s1 = std::sin(theta_t) / sin0;
  }

  Trim trim_for(const TensorView& base, const TensorView& x, int64_t numel, const Role& ro) {
    Trim tr;
    if (ro.density >= 1 || numel == 0) return tr;
    const int64_t keep = static_cast<int64_t>(ro.density * static_cast<double>(numel));
    UPG_CHECK(keep > 0, "ties: density ", ro.density, " of '", ro.name, "' keeps no element of tensor '", x.name, "' (",
              numel, " elements); raise the density");
    std::vector<float> mag(static_cast<size_t>(numel));
    for (int64_t c = 0; c < numel; c += kChunk) {
      const int64_t n = std::min(kChunk, numel - c);
      read_f32(base, c, n, buf_[0].data());
      read_f32(x, c, n, buf_[1].data());
      for (int64_t j = 0; j < n; ++j) mag[c + j] = std::fabs(buf_[1][j] - buf_[0][j]);
    }
    std::nth_element(mag.begin(), mag.begin() + (keep - 1), mag.end(), std::greater<float>());
    tr.all = false;
    tr.tau = mag[keep - 1];
    int64_t gt = 0;  // (order does not matter for the count)
    for (float m : mag) gt += m > tr.tau;
    tr.eq_keep = keep - gt;
    return tr;
  }

  const MergeRecipe& r_;
  const Inputs& in_;
  std::vector<std::vector<float>> buf_;
  std::vector<double> out_;
  std::vector<uint8_t> scratch_;
};

}  // namespace

MergeReport merge_checkpoints(const MergeRecipe& r, const std::string& out_dir, const MergeProgress& progress,
                              const MergeOutputOptions& oo) {
  UPG_CHECK(!r.models.empty(), "merge: the recipe lists no models");
  // Open every model once and assign roles.
  Inputs in;
  const size_t ref = in.open(r.reference_model());
  Merger mg(r, in);
  auto role = [&](const MergeModel& m) {
    Merger::Role ro;
    ro.ck = in.open(m.model);
    ro.weight = m.weight.value_or(1.0);
    ro.density = m.density;
    ro.name = m.model;
    return ro;
  };
  const auto others = non_base(r);
  switch (r.method) {
    case MergeMethod::Linear:
      for (const auto& m : r.models) mg.roles.push_back(role(m));
      break;
    case MergeMethod::Slerp:
      UPG_CHECK((r.base_model.empty() ? r.models.size() : others.size() + 1) == 2,
                "merge: slerp merges exactly two models");
      if (r.base_model.empty()) {
        mg.roles.push_back(role(r.models[0]));
        mg.roles.push_back(role(r.models[1]));
      } else {
        mg.roles.push_back(role(MergeModel{r.base_model, {}, 1.0}));
        mg.roles.push_back(role(*others[0]));
      }
      break;
    case MergeMethod::TaskArithmetic:
    case MergeMethod::Ties:
      UPG_CHECK(!r.base_model.empty() && !others.empty(), "merge: ", merge_method_name(r.method),
                " needs base_model and at least one other model");
      mg.roles.push_back(role(MergeModel{r.base_model, {}, 1.0}));
      for (const auto* m : others) mg.roles.push_back(role(*m));
      break;
  }
  const std::string tok_dir = r.tokenizer_source.empty() ? r.reference_model() : r.tokenizer_source;
  UPG_CHECK(fs::is_directory(tok_dir), "merge: tokenizer_source '", tok_dir, "' is not a directory");

  // Architectures, names and shapes, before anything is written.
  const HfCheckpoint& rc = *in.cks[ref];
  for (size_t i = 0; i < in.cks.size(); ++i)
    if (i != ref) check_compatible(rc, in.dirs[ref], *in.cks[i], in.dirs[i]);

  MergeReport rep;
  // Plan: output dtype of every tensor; integer tensors must agree byte for byte.
  struct Item {
    std::string name;
    TensorDType dt;
    bool copy;
    uint64_t bytes;
  };
  std::vector<Item> items;
  uint64_t total = 0;
  for (const std::string& name : rc.names()) {
    const TensorView& t0 = rc.tensor(name);
    bool floating = true;
    for (const auto& ck : in.cks) floating = floating && is_float(ck->tensor(name).dtype);
    Item it{name, t0.dtype, !floating, 0};
    if (floating) {
      it.dt = r.dtype ? *r.dtype : t0.dtype == TensorDType::F64 ? TensorDType::F32 : t0.dtype;
    } else {
      for (size_t i = 0; i < in.cks.size(); ++i) {
        const TensorView& ti = in.cks[i]->tensor(name);
        UPG_CHECK(ti.dtype == t0.dtype && ti.nbytes == t0.nbytes && std::memcmp(ti.data, t0.data, t0.nbytes) == 0,
                  "cannot merge '", in.dirs[ref], "' and '", in.dirs[i], "': tensor '", name, "' is ",
                  tensor_dtype_name(t0.dtype), " in '", in.dirs[ref], "' and ", tensor_dtype_name(ti.dtype), " in '",
                  in.dirs[i], "' and the two differ; only floating-point tensors are merged (others must be identical)");
      }
    }
    it.bytes = static_cast<uint64_t>(t0.numel()) * tensor_dtype_size(it.dt);
    total += it.bytes;
    items.push_back(std::move(it));
  }

  // Tokenizer differences are worth a warning (the merged model keeps one tokenizer).
  {
    std::string a, b;
    const std::string tok_json = (fs::path(tok_dir) / "tokenizer.json").string();
    const bool ha = file_exists(tok_json);
    if (ha) a = read_text_file(tok_json, kMaxTokenizerFileBytes);
    for (size_t i = 0; i < in.cks.size(); ++i) {
      const bool hb = in.cks[i]->read_file("tokenizer.json", b);
      if (ha && hb && a != b)
        rep.warnings.push_back(str_cat("tokenizer.json of '", in.dirs[i], "' differs from that of '", tok_dir,
                                       "'; the merged model uses the latter"));
    }
  }

  // Output directory.
  fs::path out = fs::path(out_dir).lexically_normal();
  if (!out.has_filename()) out = out.parent_path();
  UPG_CHECK(!out.empty(), "merge: empty output directory name");
  for (size_t i = 0; i < in.dirs.size(); ++i)
    UPG_CHECK(!same_dir(out.string(), in.dirs[i]), "merge: the output directory '", out.string(), "' is the input model '",
              in.dirs[i], "'");
  UPG_CHECK(!same_dir(out.string(), tok_dir), "merge: the output directory '", out.string(), "' is the tokenizer source");
  std::error_code ec;
  const bool exists = fs::exists(fs::symlink_status(out, ec));
  const bool empty_dir = exists && fs::is_directory(out, ec) && fs::is_empty(out, ec);
  if (exists && !empty_dir) {
    UPG_CHECK(oo.force, "merge: output '", out.string(), "' already exists (--force replaces it)");
    UPG_CHECK(fs::is_directory(fs::symlink_status(out, ec)), "merge: output '", out.string(),
              "' exists and is not a directory; not replaced");
  }
  if (out.has_parent_path()) fs::create_directories(out.parent_path(), ec);

  StagingDir tmp(out.string(), "merge: ");
  const fs::path dir(tmp.path());

  // Tensors, in shards of at most shard_bytes (consecutive tensors).
  std::vector<std::vector<const Item*>> shards(1);
  uint64_t cur = 0;
  for (const Item& it : items) {
    if (oo.shard_bytes > 0 && cur > 0 && cur + it.bytes > oo.shard_bytes) shards.emplace_back(), cur = 0;
    shards.back().push_back(&it);
    cur += it.bytes;
  }
  const int nsh = static_cast<int>(shards.size());
  ordered_json weight_map = ordered_json::object();
  size_t done = 0;
  uint64_t done_bytes = 0;
  for (int s = 0; s < nsh; ++s) {
    char fname_buf[64];
    std::snprintf(fname_buf, sizeof fname_buf, "model-%05d-of-%05d.safetensors", s + 1, nsh);
    const std::string fname = nsh == 1 ? "model.safetensors" : fname_buf;
    SafetensorsStreamWriter w((dir / fname).string(), 1);
    for (const Item* it : shards[s]) {
      if (it->copy) {
        const TensorView& t0 = rc.tensor(it->name);
        w.add_array(it->name, t0.dtype, t0.shape, t0.data, t0.nbytes);
      } else {
        mg.merge_tensor(it->name, it->dt, w);
      }
      weight_map[it->name] = fname;
      done_bytes += it->bytes;
      if (progress) progress(++done, items.size(), done_bytes, total, it->name);
    }
    w.finish({{"format", "pt"}});
  }
  if (nsh > 1) {
    ordered_json idx = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
    write_text_file((dir / "model.safetensors.index.json").string(), idx.dump(2) + "\n");
  }

  // config.json of the reference model, side files of the tokenizer source, the recipe.
  {
    std::string text;
    UPG_CHECK(rc.read_file("config.json", text), in.dirs[ref], ": config.json is missing");
    auto cfg = ordered_json::parse(text, nullptr, false);
    UPG_CHECK(cfg.is_object(), in.dirs[ref], ": config.json is not a JSON object");
    if (r.dtype) {
      bool set = false;
      for (const char* k : {"torch_dtype", "dtype"})
        if (cfg.contains(k)) cfg[k] = torch_dtype_name(*r.dtype), set = true;
      if (!set) cfg["torch_dtype"] = torch_dtype_name(*r.dtype);
    }
    write_text_file((dir / "config.json").string(), cfg.dump(2) + "\n");
  }
  for (const std::string& f : side_files()) {
    const fs::path src = fs::path(tok_dir) / f;
    if (!fs::is_regular_file(src, ec)) continue;
    fs::copy_file(src, dir / f, ec);
    UPG_CHECK(!ec, "merge: cannot copy '", src.string(), "': ", ec.message());
  }
  {
    ordered_json rec = r.to_json();
    rec["merged_by"] = std::string("upg ") + UPG_VERSION;
    write_text_file((dir / "merge_recipe.json").string(), rec.dump(2) + "\n");
  }

  // Into place.
  if (empty_dir) fs::remove(out, ec);
  std::string backup;
  if (exists && !empty_dir) {
    backup = tmp.path() + ".old";
    fs::rename(out, backup, ec);
    UPG_CHECK(!ec, "merge: cannot move the existing '", out.string(), "' aside: ", ec.message());
  }
  fs::rename(dir, out, ec);
  if (ec) {
    std::error_code ec2;
    if (!backup.empty()) fs::rename(backup, out, ec2);
    throw Error(str_cat("merge: cannot rename '", dir.string(), "' to '", out.string(), "': ", ec.message()));
  }
  tmp.keep();
  if (!backup.empty()) fs::remove_all(backup, ec);

  rep.out_dir = out.string();
  rep.tensors = items.size();
  rep.bytes = total;
  rep.files = nsh;
  return rep;
}

}  // namespace upg
