#include "models/model_config.h"

#include <cmath>
#include <cstdlib>

#include "base/error.h"
#include "models/registry.h"

namespace upg {

using nlohmann::json;

namespace {

bool present(const json& j, const char* key) { return j.contains(key) && !j[key].is_null(); }

// An integer field; floats with an integral value (1e4, 32768.0) are accepted, as Python reads them.
// Values outside +-2^53 are refused rather than wrapped (no real size is that large).
int64_t get_int(const json& j, const std::string& src, const char* key) {
  const json& v = j[key];
  constexpr int64_t kLimit = int64_t{1} << 53;
  if (v.is_number_unsigned()) {
    UPG_CHECK(v.get<uint64_t>() <= static_cast<uint64_t>(kLimit), src, ": field '", key, "' is too large, found ",
              v.dump());
    return static_cast<int64_t>(v.get<uint64_t>());
  }
  if (v.is_number_integer()) {
    UPG_CHECK(std::llabs(v.get<int64_t>()) <= kLimit, src, ": field '", key, "' is out of range, found ", v.dump());
    return v.get<int64_t>();
  }
  if (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>()) {
    UPG_CHECK(std::fabs(v.get<double>()) <= static_cast<double>(kLimit), src, ": field '", key,
              "' is out of range, found ", v.dump());
    return static_cast<int64_t>(v.get<double>());
  }
  throw Error(str_cat(src, ": field '", key, "' must be an integer, found ", v.dump()));
}

// A required size in [1, max]: the caps keep a hostile config.json from sizing allocations (real
// models are far below them).
int64_t require_positive(const json& j, const std::string& src, const char* key, int64_t max = kMaxModelDim) {
  UPG_CHECK(present(j, key), src, ": required field '", key, "' is missing");
  int64_t v = get_int(j, src, key);
  UPG_CHECK(v > 0, src, ": field '", key, "' must be positive, found ", v);
  UPG_CHECK(v <= max, src, ": field '", key, "' is ", v, ", larger than the ", max, " accepted");
  return v;
}

// A token id field: an integer in [0, 2^31).
int32_t token_id(const json& v, const std::string& src, const char* key) {
  UPG_CHECK(v.is_number_integer(), src, ": field '", key, "' must hold integers, found ", v.dump());
  UPG_CHECK(v.is_number_unsigned() || v.get<int64_t>() >= 0, src, ": field '", key, "' must not be negative, found ",
            v.dump());
  UPG_CHECK(v.get<uint64_t>() <= 0x7fffffffu, src, ": field '", key, "' is too large, found ", v.dump());
  return static_cast<int32_t>(v.get<uint64_t>());
}

double get_num(const json& j, const std::string& src, const char* key) {
  UPG_CHECK(j[key].is_number(), src, ": field '", key, "' must be a number, found ", j[key].dump());
  return j[key].get<double>();
}

std::optional<int32_t> opt_token(const json& j, const std::string& src, const char* key) {
  if (!present(j, key)) return std::nullopt;
  const json& v = j[key];
  if (v.is_array()) {  // some configs list several; the first is the one used as a single id
    if (v.empty()) return std::nullopt;
    return token_id(v[0], src, key);
  }
  UPG_CHECK(v.is_number_integer(), src, ": field '", key, "' must be an integer, found ", v.dump());
  return token_id(v, src, key);
}

std::vector<double> num_list(const json& rp, const std::string& src, const char* key) {
  std::vector<double> out;
  if (!present(rp, key)) return out;
  UPG_CHECK(rp[key].is_array(), src, ": rope field '", key, "' must be a list of numbers");
  for (const json& x : rp[key]) {
    UPG_CHECK(x.is_number(), src, ": rope field '", key, "' must be a list of numbers, found ", x.dump());
    out.push_back(x.get<double>());
  }
  return out;
}

void parse_rope(const json& j, const std::string& src, const ArchSpec& arch, ModelConfig& c) {
  json rp = json::object();
  const char* rp_name = "rope_parameters";
  if (present(j, "rope_parameters")) {
    rp = j["rope_parameters"];
  } else if (present(j, "rope_scaling")) {
    rp = j["rope_scaling"];
    rp_name = "rope_scaling";
  }
  UPG_CHECK(rp.is_object(), src, ": field '", rp_name, "' must be an object, found ", rp.dump());
  RopeConfig& r = c.rope;
  if (present(rp, "rope_type")) {
    UPG_CHECK(rp["rope_type"].is_string(), src, ": ", rp_name, ".rope_type must be a string");
    r.type = rp["rope_type"].get<std::string>();
  } else if (present(rp, "type")) {
    UPG_CHECK(rp["type"].is_string(), src, ": ", rp_name, ".type must be a string");
    r.type = rp["type"].get<std::string>();
  }
  if (present(rp, "rope_theta")) r.theta = get_num(rp, src, "rope_theta");
  else if (present(j, "rope_theta")) r.theta = get_num(j, src, "rope_theta");
  if (present(rp, "partial_rotary_factor")) r.partial_rotary_factor = get_num(rp, src, "partial_rotary_factor");
  else if (present(j, "partial_rotary_factor")) r.partial_rotary_factor = get_num(j, src, "partial_rotary_factor");
  UPG_CHECK(r.partial_rotary_factor > 0 && r.partial_rotary_factor <= 1, src,
            ": partial_rotary_factor must be in (0, 1], found ", r.partial_rotary_factor);
  UPG_CHECK(r.theta > 0, src, ": rope_theta must be positive, found ", r.theta);
  if (present(rp, "factor")) r.factor = get_num(rp, src, "factor");
  if (present(rp, "attention_factor")) r.attention_factor = get_num(rp, src, "attention_factor");
  if (present(rp, "beta_fast")) r.beta_fast = get_num(rp, src, "beta_fast");
  if (present(rp, "beta_slow")) r.beta_slow = get_num(rp, src, "beta_slow");
  if (present(rp, "mscale")) r.mscale = get_num(rp, src, "mscale");
  if (present(rp, "mscale_all_dim")) r.mscale_all_dim = get_num(rp, src, "mscale_all_dim");
  r.truncate = read_bool(rp, src, "truncate", r.truncate);
  if (present(rp, "low_freq_factor")) r.low_freq_factor = get_num(rp, src, "low_freq_factor");
  if (present(rp, "high_freq_factor")) r.high_freq_factor = get_num(rp, src, "high_freq_factor");
  r.short_factor = num_list(rp, src, "short_factor");
  r.long_factor = num_list(rp, src, "long_factor");
  // As transformers' standardize_rope_params: a top-level original_max_position_embeddings (Phi-3
  // keeps it there; its config class always has one) has priority over the rope dict's.
  if (c.original_max_position_embeddings > 0) r.original_max_position_embeddings = c.original_max_position_embeddings;
  else if (present(rp, "original_max_position_embeddings"))
    r.original_max_position_embeddings = get_int(rp, src, "original_max_position_embeddings");
  else r.original_max_position_embeddings = c.max_position_embeddings;
  (void)arch;
}

void validate_rope(const std::string& src, const ArchSpec& arch, ModelConfig& c) {
  RopeConfig& r = c.rope;
  bool ok = false;
  std::string list;
  for (const auto& t : arch.rope_types) {
    ok |= t == r.type;
    list += (list.empty() ? "" : ", ") + t;
  }
  UPG_CHECK(ok, src, ": rope type '", r.type, "' is not supported for ", arch.name, " (supported: ", list, ")");
  const int64_t dim = static_cast<int64_t>(static_cast<double>(c.head_dim) * r.partial_rotary_factor);
  UPG_CHECK(dim >= 2 && dim % 2 == 0, src, ": rotary dimension int(head_dim ", c.head_dim,
            " * partial_rotary_factor ", r.partial_rotary_factor, ") = ", dim, " must be even and >= 2");
  c.rotary_dim = dim;
  if (r.type == "linear" || r.type == "dynamic" || r.type == "llama3" || r.type == "yarn")
    UPG_CHECK(r.factor.has_value(), src, ": rope type '", r.type, "' needs a 'factor'");
  if (r.type == "longrope") {
    UPG_CHECK(r.short_factor.size() == static_cast<size_t>(dim / 2) && r.long_factor.size() == static_cast<size_t>(dim / 2),
              src, ": longrope short_factor and long_factor must have rotary_dim / 2 = ", dim / 2,
              " values, found ", r.short_factor.size(), " and ", r.long_factor.size());
    UPG_CHECK(r.original_max_position_embeddings > 0, src, ": longrope needs original_max_position_embeddings");
  }
  if (r.type == "llama3")
    UPG_CHECK(r.high_freq_factor != r.low_freq_factor, src, ": llama3 rope needs high_freq_factor != low_freq_factor");
}

}  // namespace

bool read_bool(const json& j, const std::string& src, const char* key, bool def) {
  if (!present(j, key)) return def;
  UPG_CHECK(j[key].is_boolean(), src, ": field '", key, "' must be true or false, found ", j[key].dump());
  return j[key].get<bool>();
}

int64_t read_int(const json& j, const std::string& src, const char* key, int64_t def) {
  return present(j, key) ? get_int(j, src, key) : def;
}

std::optional<int64_t> read_sliding_window(const json& j, const std::string& src, std::optional<int64_t> def) {
  if (!j.contains("sliding_window")) return def;
  if (j["sliding_window"].is_null()) return std::nullopt;
  int64_t w = get_int(j, src, "sliding_window");
  UPG_CHECK(w > 0, src, ": sliding_window must be positive, found ", w);
  return w;
}

bool windows_from_layer_types(const json& j, const std::string& src, ModelConfig& c) {
  if (!present(j, "layer_types")) return false;
  const json& lt = j["layer_types"];
  UPG_CHECK(lt.is_array() && lt.size() == static_cast<size_t>(c.num_hidden_layers), src,
            ": layer_types must list one type per layer (", c.num_hidden_layers, ")");
  for (size_t i = 0; i < lt.size(); ++i) {
    const std::string t = lt[i].is_string() ? lt[i].get<std::string>() : "";
    if (t == "full_attention") {
      c.layer_window[i] = 0;
    } else if (t == "sliding_attention") {
      UPG_CHECK(c.sliding_window.has_value(), src, ": layer ", i, " is sliding_attention but sliding_window is null");
      c.layer_window[i] = *c.sliding_window;
    } else {
      throw Error(str_cat(src, ": layer_types[", i, "] = ", lt[i].dump(), " is not supported (full_attention, sliding_attention)"));
    }
  }
  return true;
}

double read_positive(const json& j, const std::string& src, const char* key, double def) {
  if (!j.contains(key) || j[key].is_null()) return def;
  UPG_CHECK(j[key].is_number(), src, ": ", key, " must be a number, found ", j[key].dump());
  const double v = j[key].get<double>();
  UPG_CHECK(v > 0 && std::isfinite(v), src, ": ", key, " must be positive, found ", v);
  return v;
}

KvGeometry kv_geometry(const ModelConfig& c) {
  if (c.mla.enabled()) return {1, c.mla.kv_lora_rank + c.mla.qk_rope_head_dim, true};
  return {c.num_key_value_heads, c.head_dim, false};
}

void check_moe_config(const std::string& src, const ModelConfig& c) {
  const MoeConfig& m = c.moe;
  bool any = false;
  for (bool b : m.layers) any = any || b;
  if (!any) return;
  UPG_CHECK(m.num_experts >= 1 && m.num_experts <= 4096, src, ": the number of experts must be in [1, 4096], found ",
            m.num_experts);
  UPG_CHECK(m.experts_per_token >= 1 && m.experts_per_token <= m.num_experts, src,
            ": num_experts_per_tok must be in [1, ", m.num_experts, "], found ", m.experts_per_token);
  UPG_CHECK(m.intermediate_size >= 1 && m.intermediate_size <= kMaxModelDim, src,
            ": the experts' intermediate size must be in [1, ", kMaxModelDim, "], found ", m.intermediate_size);
  UPG_CHECK(m.shared_intermediate_size >= 0 && m.shared_intermediate_size <= kMaxModelDim, src,
            ": shared_expert_intermediate_size must be in [0, ", kMaxModelDim, "], found ", m.shared_intermediate_size);
}

Activation parse_activation(const std::string& name, const std::string& src, const char* field) {
  if (name == "silu" || name == "swish") return Activation::Silu;
  if (name == "gelu_pytorch_tanh" || name == "gelu_new") return Activation::GeluTanh;
  if (name == "gelu") return Activation::Gelu;
  throw Error(str_cat(src, ": ", field, " '", name,
                      "' is not supported (supported: silu, swish, gelu_pytorch_tanh, gelu_new, gelu)"));
}

ModelConfig parse_model_config(const json& j, const std::string& src) {
  UPG_CHECK(j.is_object(), src, ": expected a JSON object");
  ModelConfig c;
  if (present(j, "architectures")) {
    UPG_CHECK(j["architectures"].is_array() && !j["architectures"].empty() && j["architectures"][0].is_string(),
              src, ": field 'architectures' must be a non-empty list of names");
    c.architecture = j["architectures"][0].get<std::string>();
  } else {
    // No architectures list: infer from model_type.
    UPG_CHECK(present(j, "model_type"), src, ": neither 'architectures' nor 'model_type' is given (supported: ",
              supported_architectures(), ")");
    UPG_CHECK(j["model_type"].is_string(), src, ": field 'model_type' must be a string, found ", j["model_type"].dump());
    const std::string mt = j["model_type"].get<std::string>();
    for (const ArchSpec* a : all_archs())
      if (mt == a->model_type) c.architecture = a->name;
    UPG_CHECK(!c.architecture.empty(), src, ": unsupported model_type '", mt, "' (supported architectures: ",
              supported_architectures(), ")");
  }
  const ArchSpec& arch = get_arch(c.architecture, src);
  c.model_type = present(j, "model_type") && j["model_type"].is_string() ? j["model_type"].get<std::string>()
                                                                         : arch.model_type;
  c.hidden_size = require_positive(j, src, "hidden_size");
  c.num_hidden_layers = require_positive(j, src, "num_hidden_layers", kMaxModelLayers);
  c.num_attention_heads = require_positive(j, src, "num_attention_heads");
  c.intermediate_size = require_positive(j, src, "intermediate_size");
  c.vocab_size = require_positive(j, src, "vocab_size", kMaxModelVocab);
  c.num_key_value_heads = present(j, "num_key_value_heads") ? require_positive(j, src, "num_key_value_heads")
                                                            : c.num_attention_heads;
  UPG_CHECK(c.num_attention_heads % c.num_key_value_heads == 0, src, ": num_attention_heads ",
            c.num_attention_heads, " is not a multiple of num_key_value_heads ", c.num_key_value_heads);
  if (present(j, "head_dim")) {
    c.head_dim = require_positive(j, src, "head_dim");
  } else if (arch.default_head_dim > 0) {
    c.head_dim = arch.default_head_dim;
  } else {
    UPG_CHECK(c.hidden_size % c.num_attention_heads == 0, src, ": hidden_size ", c.hidden_size,
              " is not a multiple of num_attention_heads ", c.num_attention_heads, " and head_dim is not given");
    c.head_dim = c.hidden_size / c.num_attention_heads;
  }
  c.rms_norm_eps = present(j, "rms_norm_eps") ? get_num(j, src, "rms_norm_eps") : arch.default_rms_norm_eps;
  UPG_CHECK(c.rms_norm_eps >= 0, src, ": rms_norm_eps must not be negative");
  c.max_position_embeddings = read_int(j, src, "max_position_embeddings", arch.default_max_position_embeddings);
  UPG_CHECK(c.max_position_embeddings > 0 && c.max_position_embeddings <= kMaxModelContext, src,
            ": max_position_embeddings must be in [1, ", kMaxModelContext, "], found ", c.max_position_embeddings);
  c.original_max_position_embeddings =
      read_int(j, src, "original_max_position_embeddings", arch.default_original_max_position_embeddings);
  c.tie_word_embeddings = read_bool(j, src, "tie_word_embeddings", arch.default_tie_word_embeddings);
  c.bos_token_id = opt_token(j, src, "bos_token_id");
  c.pad_token_id = opt_token(j, src, "pad_token_id");
  if (present(j, "eos_token_id")) {
    const json& e = j["eos_token_id"];
    if (e.is_array()) {
      for (const json& x : e) {
        c.eos_token_ids.push_back(token_id(x, src, "eos_token_id"));
      }
    } else {
      c.eos_token_ids.push_back(*opt_token(j, src, "eos_token_id"));
    }
  }
  if (present(j, "hidden_act")) {
    UPG_CHECK(j["hidden_act"].is_string(), src, ": hidden_act must be a string");
    c.hidden_act = j["hidden_act"].get<std::string>();
  }
  c.block.activation = parse_activation(c.hidden_act, src, "hidden_act");
  if (present(j, "dtype") && j["dtype"].is_string()) c.dtype = j["dtype"].get<std::string>();
  else if (present(j, "torch_dtype") && j["torch_dtype"].is_string()) c.dtype = j["torch_dtype"].get<std::string>();
  c.layer_window.assign(static_cast<size_t>(c.num_hidden_layers), 0);
  parse_rope(j, src, arch, c);
  arch.finish_config(j, src, c);
  validate_rope(src, arch, c);
  return c;
}

}  // namespace upg
