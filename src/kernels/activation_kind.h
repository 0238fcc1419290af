// The activation of a gated MLP, act(gate) * up: shared by the model configs (models/model_config.h)
// and every backend's kernels (kernels/cpu/activation.h, kernels/cuda).
#pragma once

namespace upg {

enum class Activation { Silu, GeluTanh, Gelu };

}  // namespace upg
