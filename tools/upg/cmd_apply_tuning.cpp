// upg apply-tuning MODEL.upg TUNED.safetensors -o OUT.upg
// Folds fine-tuned row multipliers and norm weights (python3 -m upg.finetune writes them) into a copy
// of a UPG file: codes untouched, the rows' scales multiplied, dense tensors replaced
// (src/convert/tuning.h).
#include <cstdio>
#include <filesystem>
#include <memory>

#include "base/error.h"
#include "commands.h"
#include "convert/tuning.h"

namespace upg::cli {

namespace {

struct ApplyTuningOptions {
  std::string model, tuned, out;
  bool force = false;
};

void run_apply_tuning(const ApplyTuningOptions& o) {
  namespace fs = std::filesystem;
  std::error_code ec;
  UPG_CHECK(o.force || !fs::exists(o.out, ec), "output '", o.out, "' exists (--force replaces it)");
  UPG_CHECK(!fs::exists(o.out, ec) || !fs::equivalent(o.out, o.model, ec), "output '", o.out,
            "' is the model itself; write to another path");
  const TuningReport r = apply_tuning(o.model, o.tuned, o.out);
  std::printf("wrote %s: %zu tensors, rows of %zu scaled, %zu replaced\n", r.out.c_str(), r.tensors, r.rows_scaled,
              r.replaced);
}

}  // namespace

void add_apply_tuning_command(CLI::App& app) {
  auto o = std::make_shared<ApplyTuningOptions>();
  auto* cmd = app.add_subcommand("apply-tuning",
                                 "Fold fine-tuned row multipliers and norms (python3 -m upg.finetune) into a UPG file");
  cmd->add_option("model", o->model, "UPG model (.upg file, index or directory)")->required()->check(CLI::ExistingPath);
  cmd->add_option("tuned", o->tuned, "safetensors of '<tensor>.row_scale' [rows] and dense tensors' new values (F32)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("-o,--output", o->out, "UPG file to write (written beside it, then renamed)")->required();
  cmd->add_flag("--force", o->force, "Replace OUT if it exists");
  cmd->callback([o] { run_apply_tuning(*o); });
}

}  // namespace upg::cli
