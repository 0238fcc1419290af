// libFuzzer target for the UPG readers: the safetensors header + "upg.tensors" table parser
// (UpgFile::open), the codecs' validation of stored arrays (open_matrix) with a decode of small
// tensors, and the sharded-index parser (parse_upg_index).
//
// Input: first byte selects the parser (even: a whole .upg file, odd: an index JSON text), the rest
// is the file. Every problem must surface as upg::Error; anything else (a crash, an ASan report,
// another exception type, a hang) is a bug. Build and run: tests/fuzz/run_fuzz.sh.
//
// With UPG_FUZZ_SEED_DIR set, LLVMFuzzerInitialize first writes seed inputs there (small valid
// files made with UpgWriter) for an empty corpus.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "base/error.h"
#include "codecs/codec_registry.h"
#include "format/upg_container.h"
#include "format/upg_file.h"
#include "format/upg_writer.h"

namespace {

int g_fd = -1;
std::string g_path;

void write_seed(const std::string& dir, const std::string& name, uint8_t mode, const std::string& body) {
  std::ofstream f(dir + "/" + name, std::ios::binary);
  f.put(static_cast<char>(mode));
  f.write(body.data(), static_cast<std::streamsize>(body.size()));
}

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

void make_seeds(const std::string& dir) {
  const std::string tmp = dir + "/seed.tmp.upg";
  std::vector<float> w(8 * 16), v(16);
  for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>(static_cast<int>(i % 13) - 6) * 0.01f;
  for (size_t i = 0; i < v.size(); ++i) v[i] = 1.0f + 0.1f * static_cast<float>(i);
  for (const auto& info : upg::codec_table()) {
    upg::UpgWriter wr(tmp);
    wr.set_text("config.json", R"({"architectures": ["LlamaForCausalLM"]})");
    upg::CodecParams p = upg::CodecParams::object();
    if (info.name == "mdcsr") p = {{"keep_fraction", 0.25}};
    wr.add("m.weight", {{8, 16}, upg::TensorDType::BF16, 0.01}, upg::make_codec(info.name)->encode(w.data(), 8, 16, p));
    wr.add_f32("n.weight", {{16}, upg::TensorDType::BF16, {}}, v.data(), upg::TensorDType::BF16);
    wr.finish();
    write_seed(dir, "seed_" + info.name, 0, slurp(tmp));
  }
  {
    upg::UpgWriter wr(tmp);
    upg::CodecParams p = {{"group", 8}, {"rotate", true}, {"outliers", {{"fraction", 0.05}}}};
    wr.add("m.weight", {{8, 16}, upg::TensorDType::F32, {}}, upg::make_codec("int8")->encode(w.data(), 8, 16, p));
    wr.finish();
    write_seed(dir, "seed_int8_rotate_outliers", 0, slurp(tmp));
  }
  std::remove(tmp.c_str());
  write_seed(dir, "seed_index", 1,
             R"({"metadata": {"format": "upg", "format_version": "2.0", "config.json": "{}", "total_size": 100},)"
             R"( "weight_map": {"a.weight": "model-00001-of-00002.upg", "b.weight": "model-00002-of-00002.upg"}})");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  g_fd = ::memfd_create("upg_fuzz", 0);
  if (g_fd < 0) std::abort();
  g_path = "/proc/self/fd/" + std::to_string(g_fd);
  if (const char* seeds = std::getenv("UPG_FUZZ_SEED_DIR")) make_seeds(seeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t mode = data[0];
  ++data, --size;
  try {
    if (mode & 1) {
      upg::parse_upg_index(std::string(reinterpret_cast<const char*>(data), size), "index");
      return 0;
    }
    if (::ftruncate(g_fd, 0) != 0 || ::pwrite(g_fd, data, size, 0) != static_cast<ssize_t>(size)) std::abort();
    auto f = upg::UpgFile::open(g_path);
    for (const upg::UpgTensor& t : f->tensors()) {
      (void)t.compute_xxh64();  // a mismatch is verify's business; decoding must be safe regardless
      if (t.numel() > (1 << 16)) continue;         // keep iterations fast and small
      auto m = t.open_matrix();
      std::vector<float> out(static_cast<size_t>(m->rows() * m->cols()));
      if (!out.empty()) m->decode_rows(0, m->rows(), out.data());
      std::vector<float> x(static_cast<size_t>(m->cols()), 1.0f), y(static_cast<size_t>(m->rows()));
      if (!x.empty() && !y.empty()) m->matmul(x.data(), 1, y.data());
    }
  } catch (const upg::Error&) {
  }
  return 0;
}
