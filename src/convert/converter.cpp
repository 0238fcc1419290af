#include "convert/converter.h"

#include <cmath>
#include <filesystem>
#include <optional>

#include "base/error.h"
#include "base/half.h"
#include "codecs/codec_registry.h"
#include "codecs/dense/dense_matrix.h"
#include "convert/allocate.h"
#include "convert/gptq.h"
#include "convert/sensitivity.h"
#include "models/fused_layout.h"
#include "models/registry.h"
#include "format/fp8_block.h"
#include "format/hf_checkpoint.h"
#include "format/upg_from_hf.h"
#include "format/upg_format.h"
#include "format/upg_writer.h"
#include "models/model_config.h"
#include "tokenizer/tokenizer.h"

namespace upg {

namespace {

namespace fs = std::filesystem;

// One encoding of a matrix with its measured damage.
struct Encoded {
  std::optional<EncodedTensor> enc;  // absent for dense candidates
  std::vector<float> decoded;
  uint64_t bytes = 0;
  double damage = 0, energy = 0;
};

class Encoder {
 public:
  Encoder(const ConvertOptions& o, const CalibrationStats* cal) : o_(o), cal_(cal) {
    gptq_.act_order = o.act_order;
  }

  // Statistics of the tensor's input (projections, lm_head; for a tied embedding its lm_head use).
  const InputStats* stats(const ModelTensor& t) const {
    if (!cal_) return nullptr;
    return cal_->find(t.role == TensorRole::Embedding ? "model.embed_tokens.weight" : t.name);
  }

  Encoded encode(const ModelTensor& t, const std::vector<float>& W, const Candidate& c) {
    const int64_t rows = t.shape[0], cols = t.shape[1];
    const InputStats* h = stats(t);
    Encoded e;
    if (c.dense()) {
      const TensorDType dt = *upg_dense_codec_dtype(c.codec);
      e.decoded.resize(W.size());
      for (size_t i = 0; i < W.size(); ++i)
        e.decoded[i] = dt == TensorDType::BF16 ? bf16_to_f32(f32_to_bf16(W[i]))
                       : dt == TensorDType::F16 ? f16_to_f32(f32_to_f16(W[i]))
                                                : W[i];
      e.bytes = W.size() * (dt == TensorDType::F32 ? 4 : 2);
    } else {
      const bool use_gptq = o_.gptq && h && h->full() && (c.codec == "codebook" || c.codec == "trellis") &&
                            !c.params.contains("outliers");
      if (use_gptq) {
        // The factor depends only on H, the rotation and the column order: shared by q/k/v, gate/up
        // and all candidates. The trellis codec's LDLQ runs in natural order (no act-order).
        const bool trellis = c.codec == "trellis";
        const RotateOpt rot = read_rotate(c.params, c.codec, cols, /*encoding=*/true);
        const std::string key = str_cat(trellis ? "natural" : "", rot.on ? str_cat(rot.seed, "/", rot.block) : "");
        if (u_stats_ != h) {
          u_.clear();
          u_stats_ = h;
        }
        auto it = u_.find(key);
        if (it == u_.end()) {
          GptqOptions fo = gptq_;
          if (trellis) fo.act_order = false;
          it = u_.emplace(key, make_gptq_factor(*h, rot, fo)).first;
        }
        e.enc = trellis ? ldlq_trellis(W.data(), rows, cols, *h, c.params, gptq_, &e.decoded, &it->second)
                        : gptq_codebook(W.data(), rows, cols, *h, c.params, gptq_, &e.decoded, &it->second);
      } else {
        e.enc = make_codec(c.codec)->encode(W.data(), rows, cols, c.params, h ? h->diag().data() : nullptr);
        e.decoded = decode_encoded(*e.enc, rows, cols);
      }
      e.bytes = e.enc->total_bytes();
    }
    if (h) {
      e.damage = output_error(W.data(), e.decoded.data(), rows, cols, *h);
      e.energy = output_energy(W.data(), rows, cols, *h);
    }
    if (t.role == TensorRole::Embedding && cal_) {
      double d = 0, en = 0;
      for (int64_t r = 0; r < rows; ++r) {
        const double wr = cal_->token_counts[r] + 0.25;
        double s = 0, s0 = 0;
        for (int64_t j = 0; j < cols; ++j) {
          const double x = W[r * cols + j], dx = x - e.decoded[r * cols + j];
          s += dx * dx;
          s0 += x * x;
        }
        d += wr * s;
        en += wr * s0;
      }
      e.damage += d;
      e.energy += en;
    }
    if (!cal_) e.damage = e.energy = 0;
    return e;
  }

 private:
  const ConvertOptions& o_;
  const CalibrationStats* cal_;
  const InputStats* u_stats_ = nullptr;
  std::map<std::string, GptqFactor> u_;  // GPTQ factors of u_stats_ by column order and rotation ("" = act-order, none)
  GptqOptions gptq_;
};

// Text files of the model, JSON ones re-serialised compactly (key order kept).
std::map<std::string, std::string> read_texts(const HfCheckpoint& ck, bool compact) {
  std::map<std::string, std::string> texts;
  for (const std::string& f : upg_text_file_names()) {
    std::string s;
    if (!ck.read_file(f, s)) continue;
    if (compact && f.size() > 5 && f.substr(f.size() - 5) == ".json") {
      auto j = nlohmann::ordered_json::parse(s, nullptr, false);
      if (!j.is_discarded()) s = j.dump();
    }
    texts[f] = std::move(s);
  }
  return texts;
}

uint64_t output_bytes(const std::vector<std::string>& files) {
  uint64_t b = 0;
  for (const auto& f : files) b += fs::file_size(f);
  return b;
}

}  // namespace

void set_calibration_text(ConvertOptions& o, const std::string& hf_dir, const std::string& text, int64_t max_tokens,
                          int64_t window) {
  UPG_CHECK(max_tokens > 0, "convert: calibration tokens must be positive, got ", max_tokens);
  UPG_CHECK(window >= 2, "convert: calibration window must be at least 2 tokens, got ", window);
  o.calib.window = window;
  o.calib.max_windows = std::max<int64_t>(1, max_tokens / window);
  const Tokenizer tok = Tokenizer::from_dir(hf_dir);
  o.calib_tokens = tok.encode(text, /*add_special_tokens=*/false);
  if (static_cast<int64_t>(o.calib_tokens.size()) > max_tokens) o.calib_tokens.resize(static_cast<size_t>(max_tokens));
}

ConvertReport convert_model(const std::string& hf_dir, const std::string& out_path, const ConvertOptions& o) {
  UPG_CHECK(o.bpw == 0 || (o.bpw >= 1.0 && o.bpw <= 32.0), "convert: --bpw ", o.bpw,
            " is out of range (expected 1 to 32 bits per parameter)");
  UPG_CHECK(o.vector_storage == "bf16" || o.vector_storage == "f32", "convert: vector storage must be bf16 or f32, not '",
            o.vector_storage, "'");
  {
    // Fail before any work when the output cannot be written.
    const fs::path parent = fs::path(out_path).parent_path().empty() ? fs::path(".") : fs::path(out_path).parent_path();
    std::error_code ec;
    UPG_CHECK(fs::is_directory(parent, ec), "convert: output directory '", parent.string(), "' does not exist");
    UPG_CHECK(!fs::is_directory(out_path, ec), "convert: output '", out_path, "' is a directory");
    UPG_CHECK(fs::absolute(out_path).lexically_normal().parent_path() != fs::absolute(hf_dir).lexically_normal() ||
                  fs::path(out_path).extension() == ".upg",
              "convert: refusing to write '", out_path, "' inside the source directory without a .upg extension");
  }
  auto ck = HfCheckpoint::open(hf_dir);
  const std::optional<Fp8BlockScheme> fp8 = fp8_block_scheme(ck->config(), ck->dir() + "/config.json");
  const ModelConfig cfg = parse_model_config(ck->config(), hf_dir + "/config.json");
  const ArchSpec& arch = get_arch(cfg.architecture, hf_dir);
  const std::vector<ModelTensor> plan = model_tensors(cfg, arch);
  register_fused_layout(*ck, plan);
  for (const auto& t : plan) ck->tensor(t.name, t.shape);  // names the tensor and both shapes on mismatch
  const Candidate fixed = parse_codec_spec(o.codec);
  for (const auto& c : o.candidates) (void)c;
  UPG_CHECK(o.bpw == 0 || !o.calib_tokens.empty(),
            "convert: --bpw needs calibration text (--calib FILE): the allocation measures damage on it");

  ConvertReport rep;
  for (const auto& t : plan) rep.params += t.numel();
  auto progress = [&](const std::string& stage, size_t d, size_t n, uint64_t b, uint64_t bt, const std::string& item) {
    if (o.progress) o.progress(stage, d, n, b, bt, item);
  };

  // 1. Calibration.
  std::optional<CalibrationStats> cal;
  if (!o.calib_tokens.empty()) {
    auto model = Model::load(hf_dir);
    CalibrationOptions co = o.calib;
    auto user = co.progress;
    co.progress = [&](int64_t d, int64_t n) {
      progress("calibrate", d, n, 0, 0, "window");
      if (user) user(d, n);
    };
    cal = collect_calibration(*model, o.calib_tokens, co);
  }
  Encoder encoder(o, cal ? &*cal : nullptr);
  const std::map<std::string, std::string> texts = read_texts(*ck, o.compact_texts);

  uint64_t src_bytes = 0, matrix_count = 0;
  for (const auto& t : plan) {
    src_bytes += ck->tensor(t.name).nbytes;
    matrix_count += t.role != TensorRole::Vector;
  }
  const uint64_t vec_elem = o.vector_storage == "f32" ? 4 : 2;

  // 2. Allocation: per matrix, every candidate's bytes and damage.
  std::vector<size_t> choice(plan.size(), 0);  // index into o.candidates (bpw > 0)
  std::vector<std::vector<AllocOption>> items;
  std::vector<size_t> item_of(plan.size(), SIZE_MAX);
  std::map<std::string, double> gains;  // tensor -> predicted KL per unit of local damage (probe)
  double fixed_bytes = 0;
  if (o.bpw > 0) {
    UPG_CHECK(!o.candidates.empty(), "convert: no candidate encodings for the allocation");
    std::optional<SensitivityProbe> probe;
    if (o.probe_windows > 0) {
      progress("probe", 0, 1, 0, 0, "original model");
      probe.emplace(hf_dir, o.calib_tokens, o.calib.window, o.probe_windows);
    }
    size_t done = 0;
    uint64_t bytes_done = 0;
    for (size_t i = 0; i < plan.size(); ++i) {
      const ModelTensor& t = plan[i];
      const TensorView& tv = ck->tensor(t.name);
      if (t.role == TensorRole::Vector) {
        fixed_bytes += t.numel() * vec_elem + 64 + 400;
        continue;
      }
      const std::vector<float> W = checkpoint_tensor_f32(*ck, t.name, fp8);
      std::vector<AllocOption> opts;
      // The probe's operating point: the candidate whose size is nearest the budget.
      std::vector<float> probe_w;
      double probe_damage = 0, best_gap = INFINITY;
      for (const Candidate& c : o.candidates) {
        Encoded e = encoder.encode(t, W, c);
        const size_t narrays = e.enc ? e.enc->arrays.size() : 1;
        // Per-tensor file overhead: header entries (~500 B) and alignment padding (<64 B per array).
        opts.push_back({static_cast<double>(e.bytes) + 600.0 + 160.0 * narrays, e.damage});
        const double gap = std::fabs(8.0 * e.bytes / static_cast<double>(t.numel()) - o.bpw);
        if (probe && e.damage > 0 && gap < best_gap) {
          best_gap = gap;
          probe_damage = e.damage;
          probe_w = std::move(e.decoded);
        }
      }
      if (probe && probe_damage > 0) {
        // Damage in predicted KL (nats per token): scale every candidate by this tensor's gain.
        const double kl = probe->kld_with(t.name, probe_w.data(), t.shape[0], t.shape[1]);
        const double gain = std::max(kl, 1e-12) / probe_damage;
        for (auto& op : opts) op.damage *= gain;
        gains[t.name] = gain;
      }
      item_of[i] = items.size();
      items.push_back(std::move(opts));
      bytes_done += tv.nbytes;
      progress("measure", ++done, matrix_count, bytes_done, src_bytes, t.name);
    }
    for (const auto& [k, v] : texts) fixed_bytes += k.size() + v.size() * 1.02 + 16;
    fixed_bytes += 4096;  // header framing, format keys, converter options
    double min_bytes = fixed_bytes;
    for (const auto& opts : items) {
      double m = INFINITY;
      for (const auto& op : opts) m = std::min(m, op.bytes);
      min_bytes += m;
    }
    UPG_CHECK(min_bytes <= o.bpw * static_cast<double>(rep.params) / 8.0, "convert: --bpw ", o.bpw,
              " is below the smallest file the candidate encodings allow for this model (about ",
              std::ceil(800.0 * min_bytes / static_cast<double>(rep.params)) / 100.0, " bits per parameter)");
  }

  // 3. Writing (repeated with a tighter budget if the estimate of the header was short).
  double budget = o.bpw > 0 ? o.bpw * static_cast<double>(rep.params) / 8.0 : 0;
  double slack = 0;
  for (int attempt = 0;; ++attempt) {
    if (o.bpw > 0) {
      const std::vector<size_t> pick = allocate_bits(items, budget - fixed_bytes - slack);
      for (size_t i = 0; i < plan.size(); ++i)
        if (item_of[i] != SIZE_MAX) choice[i] = pick[item_of[i]];
    }
    rep.tensors.clear();
    UpgWriter w(out_path);
    for (const auto& [k, v] : texts) w.set_text(k, v);
    nlohmann::json tensors_info = nlohmann::json::object();
    uint64_t bytes_done = 0;
    for (size_t i = 0; i < plan.size(); ++i) {
      const ModelTensor& t = plan[i];
      const TensorView& tv = ck->tensor(t.name);
      try {
        ConvertedTensor ct{t.name, "", t.numel()};
        std::vector<float> W = checkpoint_tensor_f32(*ck, t.name, fp8);
        if (t.role == TensorRole::Vector) {
          const TensorDType dt = o.vector_storage == "f32" ? TensorDType::F32 : TensorDType::BF16;
          std::vector<float> r(W.size());
          for (size_t j = 0; j < W.size(); ++j) r[j] = dt == TensorDType::BF16 ? bf16_to_f32(f32_to_bf16(W[j])) : W[j];
          ct.choice = o.vector_storage;
          ct.bytes = W.size() * vec_elem;
          ct.rel_frobenius = relative_frobenius_error(r.data(), W.data(), W.size());
          w.add_f32(t.name, {t.shape, tv.dtype, ct.rel_frobenius}, W.data(), dt);
        } else {
          const Candidate& c = o.bpw > 0 ? o.candidates[choice[i]] : fixed;
          Encoded e = encoder.encode(t, W, c);
          ct.choice = c.label;
          ct.bytes = e.bytes;
          ct.rel_frobenius = relative_frobenius_error(e.decoded.data(), W.data(), W.size());
          if (cal && e.energy > 0) ct.rel_output = e.damage / e.energy;
          const UpgTensorMeta meta{t.shape, tv.dtype, ct.rel_frobenius};
          if (e.enc) w.add(t.name, meta, *e.enc);
          else w.add_f32(t.name, meta, W.data(), *upg_dense_codec_dtype(c.codec));
          nlohmann::json ti = {{"codec", c.label}};
          if (ct.rel_output >= 0) ti["out_err"] = std::round(ct.rel_output * 1e6) / 1e6;
          if (auto g = gains.find(t.name); g != gains.end()) {
            ct.predicted_kl = g->second * e.damage;
            ti["pred_kl"] = std::round(ct.predicted_kl * 1e7) / 1e7;
          }
          tensors_info[t.name] = ti;
        }
        rep.tensors.push_back(ct);
      } catch (const Error& e) {
        const std::string msg = e.what();
        if (msg.find(t.name) != std::string::npos) throw;
        throw Error(str_cat("convert: tensor '", t.name, "': ", msg));
      }
      bytes_done += tv.nbytes;
      progress("write", i + 1, plan.size(), bytes_done, src_bytes, t.name);
    }
    nlohmann::json info = {{"name", "upg convert"},
                           {"version", UPG_VERSION},
                           {"source", fs::path(hf_dir).filename().string()},
                           {"options",
                            {{"bpw", o.bpw},
                             {"codec", o.bpw > 0 ? nlohmann::json("allocated") : nlohmann::json(o.codec)},
                             {"gptq", o.gptq},
                             {"calib_tokens", cal ? cal->tokens : 0},
                             {"calib_window", o.calib.window},
                             {"probe_windows", o.bpw > 0 ? o.probe_windows : 0},
                             {"vector_storage", o.vector_storage}}},
                           {"tensors", tensors_info}};
    for (const auto& [k, v] : o.info.items()) info["options"][k] = v;
    w.set_converter(info);
    rep.files = w.finish();
    rep.file_bytes = output_bytes(rep.files);
    rep.bpw = 8.0 * static_cast<double>(rep.file_bytes) / static_cast<double>(rep.params);
    if (o.bpw <= 0 || rep.file_bytes <= budget) break;
    if (attempt >= 3) {
      for (const auto& f : rep.files) fs::remove(f);
      throw Error(str_cat("convert: could not meet the budget of ", o.bpw, " bits per parameter (file came out at ",
                          rep.bpw, ")"));
    }
    slack += static_cast<double>(rep.file_bytes) - budget + 1024;
  }
  return rep;
}

}  // namespace upg
