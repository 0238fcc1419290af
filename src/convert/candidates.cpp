#include "convert/candidates.h"

#include "base/error.h"
#include "codecs/codec_registry.h"

namespace upg {

Candidate parse_codec_spec(const std::string& spec) {
  Candidate c;
  c.label = spec;
  const size_t colon = spec.find(':');
  c.codec = spec.substr(0, colon);
  if (!c.dense()) find_codec(c.codec);  // throws listing the known codecs
  if (colon == std::string::npos) return c;
  const std::string rest = spec.substr(colon + 1);
  size_t pos = 0;
  while (pos <= rest.size()) {
    size_t end = rest.find(',', pos);
    if (end == std::string::npos) end = rest.size();
    const std::string kv = rest.substr(pos, end - pos);
    const size_t eq = kv.find('=');
    UPG_CHECK(eq != std::string::npos && eq > 0, "codec spec '", spec, "': expected key=value, found '", kv, "'");
    const std::string key = kv.substr(0, eq), val = kv.substr(eq + 1);
    nlohmann::json v = nlohmann::json::parse(val, nullptr, /*allow_exceptions=*/false);
    if (v.is_discarded() || v.is_object() || v.is_array()) v = val;
    c.params[key] = v;
    pos = end + 1;
  }
  return c;
}

std::vector<Candidate> default_candidates() {
  std::vector<Candidate> v;
  // Rotated (randomized Hadamard) weights are near-Gaussian: the Gaussian Lloyd-Max table fits them.
  const std::pair<int, int> rotated[] = {{2, 32}, {2, 64}, {2, 128}, {2, 256}, {3, 64}, {3, 128}, {3, 256},
                                         {4, 64}, {4, 128}, {4, 256}, {5, 128}, {6, 128}};
  for (auto [k, g] : rotated)
    v.push_back(parse_codec_spec("codebook:bits=" + std::to_string(k) + ",group=" + std::to_string(g) +
                                 ",levels=gaussian,rotate=true"));
  v.push_back(parse_codec_spec("codebook:bits=3,group=128,levels=fitted,rotate=true"));
  // Unrotated with levels fitted to the weights: kept where the measurements favour it.
  const std::pair<int, int> fitted[] = {{2, 64}, {3, 64}, {3, 128}, {4, 128}};
  for (auto [k, g] : fitted)
    v.push_back(parse_codec_spec("codebook:bits=" + std::to_string(k) + ",group=" + std::to_string(g)));
  v.push_back(parse_codec_spec("int8:group=128"));
  v.push_back(parse_codec_spec("bf16"));
  return v;
}

std::vector<Candidate> trellis_candidates() {
  std::vector<Candidate> v = default_candidates();
  // Rotated, like QTIP: the rotation makes the weights near-Gaussian, as the computed code is, and
  // leaves little for group scales to do: on refA (3 bits, LDLQ) groups of 512 columns lose the same
  // KL divergence as groups of 64 (0.2075 against 0.2086, 40 windows) at 0.22 bits per weight less,
  // and at 2 bits groups of 64 buy 3% for those 0.22 bits (docs/CONVERT.md).
  for (int k : {2, 3, 4, 5})
    v.push_back(parse_codec_spec("trellis:bits=" + std::to_string(k) + ",group=512,rotate=true"));
  return v;
}

std::vector<Candidate> named_candidates(const std::string& name) {
  if (name == "default") return default_candidates();
  if (name == "trellis") return trellis_candidates();
  throw Error(str_cat("unknown candidate set '", name, "' (known: default, trellis)"));
}

}  // namespace upg
