// NCCL communicators over CUDA backends (backend/communicator.h: make_nccl_communicators, which
// calls this in builds with the CUDA backend).
#pragma once
#include <memory>
#include <vector>

#include "backend/backend.h"
#include "backend/communicator.h"

namespace upg {

std::vector<std::shared_ptr<Communicator>> make_cuda_nccl_communicators(const std::vector<std::shared_ptr<Backend>>& backends);

}  // namespace upg
