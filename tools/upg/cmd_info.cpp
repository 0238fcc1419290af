// upg info MODEL.upg: what a UPG model holds. One row per tensor (name, shape, codec, stored bits
// per weight, stored bytes, relative error recorded at conversion), a summary per codec, and totals:
// parameters, file size, bits per weight of the whole file (file bytes x 8 / parameters, headers and
// padding included), and the size ratio against FP32 and BF16.
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>

#include "base/error.h"
#include "commands.h"
#include "format/safetensors.h"
#include "format/upg_container.h"

namespace upg::cli {

namespace {

struct InfoOptions {
  std::string model;
  bool summary_only = false;
};

std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) b /= 1024, ++u;
  char buf[32];
  std::snprintf(buf, sizeof buf, u ? "%.2f %s" : "%.0f %s", b, units[u]);
  return buf;
}

void info(const InfoOptions& o) {
  auto c = UpgContainer::open(o.model);
  const auto& md = c->metadata();
  auto get = [&](const char* k) {
    auto it = md.find(k);
    return it == md.end() ? std::string("-") : it->second;
  };
  std::printf("file:     %s\n", c->path().c_str());
  std::printf("format:   %s %s, %zu file%s%s\n", get("format").c_str(), get("format_version").c_str(),
              c->files().size(), c->files().size() == 1 ? "" : "s", c->sharded() ? " (sharded, index)" : "");
  if (auto cfg = c->text("config.json")) {
    auto j = nlohmann::json::parse(*cfg, nullptr, false);
    if (j.is_object() && j.contains("architectures") && j["architectures"].is_array() && !j["architectures"].empty())
      std::printf("model:    %s\n", j["architectures"][0].dump().c_str());
  }
  if (md.count("converter")) std::printf("converter: %s\n", md.at("converter").c_str());

  size_t width = 6;
  for (const UpgTensor* t : c->tensors()) width = std::max(width, t->name.size());
  struct CodecSum {
    size_t tensors = 0;
    double params = 0, bytes = 0;
  };
  std::map<std::string, CodecSum> by_codec;
  double params = 0, stored = 0;
  if (!o.summary_only) {
    std::printf("\n%-*s  %-14s %-10s %7s %14s %10s\n", static_cast<int>(width), "tensor", "shape", "codec", "bits/w",
                "stored bytes", "err");
  }
  for (const UpgTensor* t : c->tensors()) {
    const double n = static_cast<double>(t->numel());
    params += n;
    stored += t->stored_bytes();
    auto& s = by_codec[t->codec];
    ++s.tensors, s.params += n, s.bytes += t->stored_bytes();
    if (o.summary_only) continue;
    char err[32] = "-";
    if (t->err) std::snprintf(err, sizeof err, "%.3g", *t->err);
    std::printf("%-*s  %-14s %-10s %7.3f %14zu %10s\n", static_cast<int>(width), t->name.c_str(),
                shape_to_string(t->shape).c_str(), t->codec.c_str(), t->bits_per_weight(), t->stored_bytes(), err);
  }
  std::printf("\n%-10s %8s %16s %14s %8s\n", "codec", "tensors", "parameters", "stored", "bits/w");
  for (const auto& [name, s] : by_codec)
    std::printf("%-10s %8zu %16.0f %14s %8.3f\n", name.c_str(), s.tensors, s.params, human_bytes(s.bytes).c_str(),
                s.params ? 8 * s.bytes / s.params : 0.0);
  const double file = static_cast<double>(c->total_bytes());
  std::printf("\ntensors:          %zu\n", c->tensors().size());
  std::printf("parameters:       %.0f (%.2f M)\n", params, params / 1e6);
  std::printf("stored arrays:    %s\n", human_bytes(stored).c_str());
  std::printf("file size:        %s (%.0f bytes)\n", human_bytes(file).c_str(), file);
  if (params > 0) {
    std::printf("bits per weight:  %.3f (whole file: file bytes x 8 / parameters)\n", file * 8 / params);
    std::printf("ratio vs FP32:    %.2fx smaller (%s)\n", params * 4 / file, human_bytes(params * 4).c_str());
    std::printf("ratio vs BF16:    %.2fx smaller (%s)\n", params * 2 / file, human_bytes(params * 2).c_str());
  }
}

}  // namespace

void add_info_command(CLI::App& app) {
  auto o = std::make_shared<InfoOptions>();
  auto* cmd = app.add_subcommand("info", "Show the tensors, codecs and size of a UPG model");
  cmd->add_option("model", o->model, ".upg file, .upg.index.json or a directory holding one")->required();
  cmd->add_flag("-s,--summary", o->summary_only, "Only the per-codec summary and totals");
  cmd->callback([o] { info(*o); });
}

}  // namespace upg::cli
