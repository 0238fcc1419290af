#include "models/registry.h"

#include "base/error.h"

namespace upg {

const std::vector<const ArchSpec*>& all_archs() {
  static const std::vector<const ArchSpec*> table = {&phi3_arch(), &llama_arch(), &mistral_arch(), &qwen2_arch(),
                                                       &gemma2_arch(), &mixtral_arch(), &qwen2_moe_arch(),
                                                       &deepseek_v3_arch(), &grok1_arch()};
  return table;
}

std::vector<ModelTensor> model_tensors(const ModelConfig& c, const ArchSpec& a) {
  return expand_tensors(a.tensors, c);
}

const ArchSpec* find_arch(const std::string& name) {
  for (const ArchSpec* a : all_archs())
    if (name == a->name) return a;
  return nullptr;
}

std::string supported_architectures() {
  std::string s;
  for (const ArchSpec* a : all_archs()) {
    if (!s.empty()) s += ", ";
    s += a->name;
  }
  return s;
}

const ArchSpec& get_arch(const std::string& name, const std::string& source) {
  const ArchSpec* a = find_arch(name);
  UPG_CHECK(a, source, ": unsupported architecture '", name, "' (supported: ", supported_architectures(), ")");
  return *a;
}

}  // namespace upg
