// upg merge RECIPE.json -o OUT_DIR [--force] [--shard-size GB] [--progress] [-t THREADS]
// Merges Hugging Face checkpoints of one architecture and shape into one (linear, slerp,
// task_arithmetic, ties; see src/convert/merge.h for the recipe and the formulas). The output is a
// Hugging Face directory that `upg run` loads and `upg convert` compresses.
#include <cstdio>
#include <memory>

#include "base/error.h"
#include "commands.h"
#include "loaded_model.h"
#include "convert/merge.h"
#include "progress.h"

namespace upg::cli {

namespace {

struct MergeCliOptions {
  std::string recipe, out;
  bool force = false, progress = false;
  double shard_gb = 5.0;
  int threads = 0;
};

void run_merge(const MergeCliOptions& c) {
  apply_threads(c.threads);  // the thread pool (forward passes, matmuls) and OpenMP
  const MergeRecipe recipe = MergeRecipe::load(c.recipe);
  MergeOutputOptions oo;
  oo.force = c.force;
  oo.shard_bytes = static_cast<uint64_t>(c.shard_gb * 1e9);
  std::unique_ptr<Progress> bar;
  const MergeReport r = merge_checkpoints(
      recipe, c.out,
      [&](size_t done, size_t total, uint64_t bytes, uint64_t total_bytes, const std::string& name) {
        if (!bar) bar = std::make_unique<Progress>("merge", total, total_bytes, c.progress);
        bar->update(done, bytes, name);
      },
      oo);
  if (bar) bar->finish();
  for (const auto& w : r.warnings) std::fprintf(stderr, "upg: warning: %s\n", w.c_str());
  std::printf("wrote %s: %s merge of %zu model%s, %zu tensors in %d file%s (%.1f MB)\n", r.out_dir.c_str(),
              merge_method_name(recipe.method), recipe.models.size(), recipe.models.size() == 1 ? "" : "s", r.tensors,
              r.files, r.files == 1 ? "" : "s", r.bytes / 1e6);
}

}  // namespace

void add_merge_command(CLI::App& app) {
  auto o = std::make_shared<MergeCliOptions>();
  auto* cmd = app.add_subcommand(
      "merge", "Merge Hugging Face checkpoints of one architecture and shape (linear, slerp, task_arithmetic, ties)");
  cmd->add_option("recipe", o->recipe,
                  "JSON recipe: {\"method\": ..., \"base_model\": DIR, \"models\": [{\"model\": DIR, \"weight\": W}], ...}")
      ->required();
  cmd->add_option("-o,--output", o->out, "Hugging Face directory to create (written beside it, then renamed)")->required();
  cmd->add_flag("--force", o->force, "Replace OUT_DIR if it exists");
  cmd->add_option("--shard-size", o->shard_gb, "Split model.safetensors above this many GB (0 = never)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_flag("--progress", o->progress, "Show progress even when stderr is not a terminal");
  cmd->add_option("-t,--threads", o->threads, "Worker threads (0 = all cores)")->check(CLI::NonNegativeNumber);
  cmd->callback([o] { run_merge(*o); });
}

}  // namespace upg::cli
