// make_backend (backend/backend.h). The CUDA backend exists only in builds with
// UPG_CUDA (cmake/UpgCuda.cmake defines UPG_HAVE_CUDA for this file).
#include <cstdlib>

#include "backend/backend.h"
#include "backend/communicator.h"
#include "base/error.h"
#ifdef UPG_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/nccl_communicator.h"
#endif

namespace upg {

namespace {
int cuda_devices(std::string* why) {
#ifdef UPG_HAVE_CUDA
  return cuda::device_count(why);
#else
  if (why) *why = "this build of upg has no CUDA backend (it was built without nvcc: see README, section Install)";
  return 0;
#endif
}
}  // namespace

std::shared_ptr<Backend> make_backend(const std::string& device) {
  if (device == "cpu") return cpu_backend();
  std::string why;
  if (device == "auto") {
#ifdef UPG_HAVE_CUDA
    if (cuda_devices(&why) > 0) return std::make_shared<CudaBackend>(0);
#endif
    return cpu_backend();
  }
  int index = 0;
  if (device.rfind("cuda:", 0) == 0) {
    const std::string num = device.substr(5);
    char* end = nullptr;
    const long v = std::strtol(num.c_str(), &end, 10);
    UPG_CHECK(!num.empty() && *end == '\0' && v >= 0 && v < 1024, "--device ", device,
              ": expected cuda:N with N a device number (0, 1, ...)");
    index = static_cast<int>(v);
  } else {
    UPG_CHECK(device == "cuda", "unknown --device '", device, "': expected cpu, cuda, cuda:N or auto");
  }
#ifdef UPG_HAVE_CUDA
  return std::make_shared<CudaBackend>(index);
#else
  cuda_devices(&why);
  throw Error(str_cat("--device ", device, ": ", why));
#endif
}

std::vector<std::shared_ptr<Communicator>> make_nccl_communicators(const std::vector<std::shared_ptr<Backend>>& backends) {
#ifdef UPG_HAVE_CUDA
  return make_cuda_nccl_communicators(backends);
#else
  std::string why;
  cuda_devices(&why);
  (void)backends;
  throw Error(str_cat("NCCL communicators: ", why));
#endif
}

}  // namespace upg
