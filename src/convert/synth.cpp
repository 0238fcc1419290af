#include "convert/synth.h"

#include <cmath>
#include <filesystem>

#include "base/error.h"
#include "base/half.h"
#include "base/mapped_file.h"
#include "codecs/codebook/codebook_codec.h"
#include "codecs/codebook/levels.h"
#include "codecs/codec_util.h"
#include "codecs/compose.h"
#include "codecs/trellis/trellis_codec.h"
#include "models/registry.h"
#include "format/upg_writer.h"
#include "models/model_config.h"
#include "tokenizer/byte_level.h"

namespace upg {

namespace {

struct SplitMix {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  float uniform() { return static_cast<float>(next() >> 40) * (1.0f / 16777216.0f); }
};

uint64_t tensor_seed(uint64_t seed, const std::string& name) {
  uint64_t h = 1469598103934665603ull ^ seed;
  for (unsigned char c : name) h = (h ^ c) * 1099511628211ull;
  return h;
}

// The "rotate" params of a synthetic matrix: its own seed (tensor seeds halved: rotation seeds are
// < 2^63), the default block.
nlohmann::json rotate_params(uint64_t seed, int64_t cols) {
  return {{"seed", seed >> 1}, {"block", default_rotation_block(cols)}};
}

// Random codebook arrays (see the header comment), built directly in the codec's layout.
EncodedTensor random_codebook(int64_t rows, int64_t cols, int k, uint64_t seed, bool rotate) {
  const CodecParams params = {{"bits", k}, {"group", 64}, {"levels", "gaussian"}};
  const CodebookLayout l = read_codebook_layout(params, rows, cols);
  std::vector<uint8_t> codes(static_cast<size_t>(rows * cols));
  std::vector<float> scales(static_cast<size_t>(rows * l.ngroups));
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    SplitMix g{seed + static_cast<uint64_t>(r) * 0x632BE59BD9B4E019ull};
    uint8_t* c = codes.data() + r * cols;
    const uint32_t mask = (1u << k) - 1;
    for (int64_t j = 0; j < cols; j += 8) {
      uint64_t bits = g.next();
      for (int64_t t = j; t < std::min(cols, j + 8); ++t, bits >>= 8) c[t] = static_cast<uint8_t>(bits & mask);
    }
    for (int64_t i = 0; i < l.ngroups; ++i) scales[r * l.ngroups + i] = 0.05f * (0.75f + 0.5f * g.uniform());
  }
  const std::vector<float> levels = gaussian_levels(k);
  EncodedTensor t = codebook_from_codes(params, rows, cols, codes.data(), scales.data(), levels.data());
  if (rotate) t.params["rotate"] = rotate_params(seed, cols);
  return t;
}

// Random trellis arrays: K bits, L = 12, one scale per 512 columns, rotated (the converter's trellis
// candidates). Every bit stream is a valid trellis row, so the streams are random bytes (the bits past
// the last state zero, as the format requires); scales 0.0173 * U(0.75, 1.25), so that weights (codes
// of standard deviation 1.155) look roughly like N(0, 0.02^2).
CodecParams trellis_synth_params(int k) { return {{"bits", k}, {"state_bits", 12}, {"group", 512}}; }

EncodedTensor random_trellis(int64_t rows, int64_t cols, int k, uint64_t seed) {
  const TrellisLayout l = read_trellis_layout(trellis_synth_params(k), cols);
  EncodedTensor t;
  t.codec = "trellis";
  t.params = trellis_params(l);
  Array q = make_array(DType::U8, {rows, l.row_bytes});
  Array s = make_array(DType::F16, {rows, l.ngroups});
  const int64_t used = l.l + (cols - 1) * l.k;  // stream bits holding states
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    SplitMix g{seed + static_cast<uint64_t>(r) * 0x632BE59BD9B4E019ull};
    uint8_t* row = q.bytes.data() + r * l.row_bytes;
    for (int64_t b = 0; b < l.row_bytes; b += 8) {
      uint64_t bits = g.next();
      for (int64_t i = b; i < std::min(l.row_bytes, b + 8); ++i, bits >>= 8) row[i] = static_cast<uint8_t>(bits);
    }
    for (int64_t bit = used; bit < l.row_bytes * 8; ++bit) row[bit / 8] &= static_cast<uint8_t>(~(0x80u >> (bit % 8)));
    for (int64_t i = 0; i < l.ngroups; ++i)
      store_le<uint16_t>(s.bytes.data(), r * l.ngroups + i, f32_to_f16(0.0173f * (0.75f + 0.5f * g.uniform())));
  }
  t.arrays["qweight"] = std::move(q);
  t.arrays["scales"] = std::move(s);
  t.params["rotate"] = rotate_params(seed, cols);
  return t;
}

}  // namespace

std::string synth_tokenizer_json(int64_t vocab_size) {
  UPG_CHECK(vocab_size >= 256, "synth: vocab_size ", vocab_size, " is below the 256 byte tokens");
  nlohmann::ordered_json vocab = nlohmann::ordered_json::object();
  int64_t id = 0;
  for (int b = 0; b < 256; ++b) vocab[byte_level::encode(std::string(1, static_cast<char>(b)))] = id++;
  while (id < vocab_size) {
    vocab["<|synth_" + std::to_string(id) + "|>"] = id;
    ++id;
  }
  nlohmann::ordered_json j = {
      {"version", "1.0"},
      {"added_tokens", nlohmann::ordered_json::array()},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"post_processor", nullptr},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", nlohmann::ordered_json::array()}}}};
  return j.dump();
}

SynthReport synth_model(const nlohmann::json& config, const std::string& source, const std::string& out_path,
                        const SynthOptions& o) {
  UPG_CHECK(o.bpw >= 1.0 && o.bpw <= 32.0, "synth: --bpw ", o.bpw, " is out of range (expected 1 to 32)");
  const ModelConfig cfg = parse_model_config(config, source);
  const ArchSpec& arch = get_arch(cfg.architecture, source);
  const std::vector<ModelTensor> plan = model_tensors(cfg, arch);
  SynthReport rep;
  UPG_CHECK(o.codec == "codebook" || o.codec == "trellis", "synth: --codec '", o.codec,
            "' is not one of: codebook, trellis");
  rep.bits = o.bpw >= 12 ? 0 : static_cast<int>(std::clamp<long>(std::lround(o.bpw - 0.25), 1, 8));
  if (o.codec == "trellis" && rep.bits > 0) {  // the codec's own range check, before anything is written
    try {
      read_trellis_layout(trellis_synth_params(rep.bits), 512);
    } catch (const Error& e) {
      throw Error(str_cat("synth: --bpw ", o.bpw, " asks for ", rep.bits, "-bit trellis codes: ", e.what()));
    }
  }
  rep.codec = rep.bits == 0 ? "bf16" : o.codec;
  uint64_t total = 0;
  for (const auto& t : plan) {
    rep.params += t.numel();
    total += t.role == TensorRole::Vector || rep.bits == 0 ? t.numel() * 2 : t.numel() * rep.bits / 8;
  }

  UpgWriter w(out_path);
  w.set_text("config.json", config.dump(2));
  if (o.tokenizer_dir.empty()) {
    w.set_text("tokenizer.json", synth_tokenizer_json(cfg.vocab_size));
  } else {
    const std::string tj = o.tokenizer_dir + "/tokenizer.json";
    UPG_CHECK(std::filesystem::exists(tj), "synth: tokenizer directory '", o.tokenizer_dir, "' has no tokenizer.json");
    w.set_text("tokenizer.json", read_text_file(tj, kMaxTokenizerFileBytes));
    for (const char* f : {"tokenizer_config.json", "generation_config.json", "chat_template.jinja"}) {
      const std::string p = o.tokenizer_dir + "/" + f;
      if (std::filesystem::exists(p)) w.set_text(f, read_text_file(p, kMaxConfigFileBytes));
    }
  }
  w.set_converter({{"name", "upg synth"},
                   {"version", UPG_VERSION},
                   {"options", {{"bpw", o.bpw}, {"seed", o.seed}, {"bits", rep.bits}, {"codec", rep.codec}, {"rotate", o.rotate || o.codec == "trellis"}, {"random", true}}}});
  uint64_t done = 0;
  for (size_t i = 0; i < plan.size(); ++i) {
    const ModelTensor& t = plan[i];
    const UpgTensorMeta meta{t.shape, TensorDType::BF16, std::nullopt};
    const uint64_t seed = tensor_seed(o.seed, t.name);
    if (t.role == TensorRole::Vector) {
      const bool bias = t.name.size() > 5 && t.name.substr(t.name.size() - 5) == ".bias";
      std::vector<float> v(static_cast<size_t>(t.numel()), bias ? 0.f : 1.f);
      w.add_f32(t.name, meta, v.data(), TensorDType::BF16);
      done += t.numel() * 2;
    } else if (rep.bits == 0) {
      std::vector<uint16_t> v(static_cast<size_t>(t.numel()));
      SplitMix g{seed};
      for (auto& x : v) x = f32_to_bf16(0.04f * (g.uniform() - 0.5f));
      w.add_raw(t.name, meta, TensorDType::BF16, v.data(), v.size() * 2);
      done += t.numel() * 2;
    } else {
      w.add(t.name, meta, o.codec == "trellis" ? random_trellis(t.shape[0], t.shape[1], rep.bits, seed)
                                               : random_codebook(t.shape[0], t.shape[1], rep.bits, seed, o.rotate));
      done += t.numel() * rep.bits / 8;
    }
    if (o.progress) o.progress(i + 1, plan.size(), done, total, t.name);
  }
  rep.files = w.finish();
  for (const auto& f : rep.files) rep.file_bytes += std::filesystem::file_size(f);
  rep.bpw = 8.0 * static_cast<double>(rep.file_bytes) / static_cast<double>(rep.params);
  return rep;
}

}  // namespace upg
