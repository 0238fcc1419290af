// Recorded stream work (CUDA graphs): a decode step's ~20 launches per layer captured once and
// replayed with one launch (cuda_ops.h, class Graph).
#include <memory>

#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/cuda_ops.h"

namespace upg::cuda {

struct Graph::Impl {
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  size_t nodes = 0;
  ~Impl() {
    if (exec) cudaGraphExecDestroy(exec);
    if (graph) cudaGraphDestroy(graph);
  }
};

Graph::Graph() = default;
Graph::~Graph() { delete impl_; }
Graph::Graph(Graph&& o) noexcept : impl_(o.impl_) { o.impl_ = nullptr; }
Graph& Graph::operator=(Graph&& o) noexcept {
  if (this != &o) {
    delete impl_;
    impl_ = o.impl_;
    o.impl_ = nullptr;
  }
  return *this;
}

void Graph::begin_capture(void* stream) {
  // Relaxed: the capturing thread may still allocate (nothing it records may depend on that).
  UPG_CUDA_CHECK(cudaStreamBeginCapture(as_stream(stream), cudaStreamCaptureModeRelaxed));
}

Graph Graph::end_capture(void* stream, std::string* why) {
  cudaGraph_t g = nullptr;
  const cudaError_t e = cudaStreamEndCapture(as_stream(stream), &g);
  Graph out;
  if (e != cudaSuccess || !g) {
    cudaGetLastError();  // not sticky: clear it
    if (g) cudaGraphDestroy(g);
    if (why) *why = str_cat("cudaStreamEndCapture: ", cudaGetErrorString(e));
    return out;
  }
  auto impl = std::make_unique<Impl>();
  impl->graph = g;
  cudaGraphGetNodes(g, nullptr, &impl->nodes);
  if (const cudaError_t ie = cudaGraphInstantiate(&impl->exec, g, 0); ie != cudaSuccess) {
    cudaGetLastError();
    impl->exec = nullptr;
    if (why) *why = str_cat("cudaGraphInstantiate: ", cudaGetErrorString(ie));
    return out;
  }
  out.impl_ = impl.release();
  return out;
}

void Graph::launch(void* stream) const {
  UPG_CHECK(impl_ && impl_->exec, "Graph::launch: no graph");
  UPG_CUDA_CHECK(cudaGraphLaunch(impl_->exec, as_stream(stream)));
}

size_t Graph::nodes() const { return impl_ ? impl_->nodes : 0; }

}  // namespace upg::cuda
