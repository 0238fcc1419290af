// libFuzzer target for config.json (parse_model_config: every architecture's fields, rope
// parameters, sliding windows) and generation_config.json (resolve_sampling). The input is the
// JSON text, read as both. Malformed JSON is refused as the loaders do (a json parse error becomes
// their upg::Error); every other problem must surface as upg::Error. A parsed config is then used
// the way loading a model starts: the tensor list and the rope tables.
#include <cstdint>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "fuzz_util.h"
#include "models/model_config.h"
#include "models/registry.h"
#include "models/rope.h"
#include "runtime/sampler.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(upg::fuzz::as_text(data, size));
  try {
    (void)upg::resolve_sampling(text, upg::SamplingOverrides{});
  } catch (const upg::Error&) {
  }
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;
  try {
    const upg::ModelConfig c = upg::parse_model_config(j, "config.json");
    const upg::ArchSpec& arch = upg::get_arch(c.architecture, "config.json");
    if (c.num_hidden_layers <= 64) (void)upg::model_tensors(c, arch);
    for (int64_t len : {int64_t{1}, c.max_position_embeddings, c.max_position_embeddings + 1})
      (void)upg::rope_frequencies(c, len);
  } catch (const upg::Error&) {
  }
  return 0;
}
