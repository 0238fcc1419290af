// Turning a small run-time integer into a template argument: the kernels are templates on code
// width or token count, and one switch picks the instance.
#pragma once
#include <cstdint>

namespace upg::kernels {

// Calls f.template operator()<V>() for v in 1..8 (any other value: 8).
template <class F>
void dispatch_1_to_8(int64_t v, F&& f) {
  switch (v) {
    case 1: return f.template operator()<1>();
    case 2: return f.template operator()<2>();
    case 3: return f.template operator()<3>();
    case 4: return f.template operator()<4>();
    case 5: return f.template operator()<5>();
    case 6: return f.template operator()<6>();
    case 7: return f.template operator()<7>();
    default: return f.template operator()<8>();
  }
}

}  // namespace upg::kernels
