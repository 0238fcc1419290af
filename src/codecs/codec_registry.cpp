#include "codecs/codec_registry.h"

#include "base/error.h"
#include "codecs/codebook/codebook_codec.h"
#include "codecs/int8/int8_codec.h"
#include "codecs/mdcsr/mdcsr_codec.h"
#include "codecs/trellis/trellis_codec.h"

namespace upg {

template <class T>
static std::unique_ptr<Codec> make() {
  return std::make_unique<T>();
}

const std::vector<CodecInfo>& codec_table() {
  static const std::vector<CodecInfo> table = {
      {"int8", 8.125, 128, "symmetric INT8, f16 scale per group of 128", &make<Int8Codec>},
      // 10% kept: 8-bit value + ~8-bit gap per entry, + 96 bits per row (pointers, scale).
      {"mdcsr", 1.6, 0, "sparse: kept entries as INT8 (or u16 level indices) with 8-bit column gaps",
       &make<MdcsrCodec>},
      {"codebook", 3.25, 64, "k-bit indices into a level table (fitted/gaussian/prime), f16 scale per group",
       &make<CodebookCodec>},
      // 3 bits + (12 - 3) bits per row + an f16 scale per 64 weights.
      {"trellis", 3.25, 64, "bitshift trellis (QTIP-style): L-bit windows of a bit stream, computed Gaussian code, Viterbi-encoded",
       &make<TrellisCodec>},
  };
  return table;
}

const CodecInfo& find_codec(const std::string& name) {
  std::string known;
  for (const CodecInfo& c : codec_table()) {
    if (c.name == name) return c;
    known += (known.empty() ? "" : ", ") + c.name;
  }
  throw Error(str_cat("unknown codec '", name, "' (known: ", known, ")"));
}

std::unique_ptr<Codec> make_codec(const std::string& name) { return find_codec(name).factory(); }

}  // namespace upg
