// upg convert HF_DIR -o MODEL.upg [--bpw B --calib TEXT] [--codec SPEC] [--calib-tokens N]
//                  [--calib-window W] [--probe-windows N] [--no-gptq] [--threads T] [--progress]
// upg convert --to safetensors IN_DIR OUT_DIR [--shard-size GB] [--progress]
// Hugging Face checkpoint -> UPG (src/convert/converter.h): with --bpw, calibration on --calib text,
// GPTQ and bit allocation so that the whole file is at most B bits per parameter; without, one
// codec (--codec, default codebook:bits=4,group=64) for every weight matrix.
// --to safetensors: any checkpoint directory (notably a legacy pytorch_model.bin one, read without
// executing its pickle) -> a Hugging Face safetensors directory, tensors unchanged (format/hf_export.h).
#include <cstdio>
#include <memory>

#include "base/error.h"
#include "base/mapped_file.h"
#include "commands.h"
#include "loaded_model.h"
#include "convert/converter.h"
#include "format/hf_export.h"
#include "progress.h"
#include "tokenizer/tokenizer.h"

namespace upg::cli {

namespace {

struct ConvertCliOptions {
  std::string in, out, out_pos, codec, calib, to = "upg", candidates = "default";
  double shard_gb = 5.0;
  double bpw = 0;
  int64_t calib_tokens = 64 * 256, calib_window = 256, probe_windows = 8;
  int threads = 0;
  bool no_gptq = false, progress = false;
};

void run_to_safetensors(const ConvertCliOptions& c, const std::string& out) {
  UPG_CHECK(c.bpw == 0 && c.codec.empty() && c.calib.empty() && !c.no_gptq, "convert: --bpw, --codec, --calib and "
            "--no-gptq apply to --to upg; --to safetensors copies the tensors unchanged");
  auto ck = HfCheckpoint::open(c.in);
  HfExportOptions o;
  o.shard_bytes = static_cast<uint64_t>(c.shard_gb * 1e9);
  uint64_t total_bytes = 0;
  for (const std::string& n : ck->names()) total_bytes += ck->tensor(n).nbytes;
  Progress bar("write    ", ck->names().size(), total_bytes, c.progress);
  o.progress = [&](size_t done, size_t, uint64_t bytes, uint64_t, const std::string& item) {
    bar.update(done, bytes, item);
  };
  const HfExportReport r = write_hf_safetensors_dir(*ck, out, o);
  bar.finish();
  for (const std::string& s : r.skipped) std::fprintf(stderr, "convert: not copied: %s\n", s.c_str());
  std::printf("wrote %s: %zu tensors from %s (%.1f MB) in %zu safetensors file%s; copied %zu other file%s\n",
              r.out_dir.c_str(), r.tensors, ck->format().c_str(), r.bytes / 1e6,
              r.weight_files.size() - (r.weight_files.size() > 1), r.weight_files.size() > 1 ? "s" : "",
              r.copied.size(), r.copied.size() == 1 ? "" : "s");
}

void run_convert(const ConvertCliOptions& c_in) {
  ConvertCliOptions c = c_in;
  UPG_CHECK(c.out.empty() || c.out_pos.empty(), "convert: give the output either as -o or as the second argument, "
            "not both");
  if (c.out.empty()) c.out = c.out_pos;
  UPG_CHECK(!c.out.empty(), "convert: no output given (-o MODEL.upg, or OUT_DIR with --to safetensors)");
  apply_threads(c.threads);  // the thread pool (forward passes, matmuls) and OpenMP
  if (c.to == "safetensors") return run_to_safetensors(c, c.out);
  ConvertOptions o;
  o.bpw = c.bpw;
  o.candidates = named_candidates(c.candidates);
  UPG_CHECK(c.candidates == "default" || c.bpw > 0, "convert: --candidates applies to --bpw (allocation)");
  if (!c.codec.empty()) {
    UPG_CHECK(c.bpw == 0, "convert: give either --bpw (allocation) or --codec (one codec), not both");
    o.codec = c.codec;
  }
  UPG_CHECK(c.bpw == 0 || (c.bpw >= 1 && c.bpw <= 32), "convert: --bpw ", c.bpw,
            " is out of range (expected 1 to 32 bits per parameter)");
  UPG_CHECK(c.bpw == 0 || !c.calib.empty(),
            "convert: --bpw needs --calib FILE (calibration text; never the evaluation text)");
  o.gptq = !c.no_gptq;
  o.calib.window = c.calib_window;
  o.probe_windows = c.probe_windows;
  o.calib.max_windows = std::max<int64_t>(1, c.calib_tokens / c.calib_window);
  if (!c.calib.empty()) set_calibration_text(o, c.in, read_text_file(c.calib), c.calib_tokens, c.calib_window);
  o.info = {{"calib_file", c.calib.empty() ? "" : std::filesystem::path(c.calib).filename().string()}};
  std::unique_ptr<Progress> bar;
  std::string stage;
  o.progress = [&](const std::string& s, size_t done, size_t total, uint64_t bytes, uint64_t total_bytes,
                   const std::string& item) {
    if (s != stage) {
      if (bar) bar->finish();
      bar = std::make_unique<Progress>(s == "calibrate" ? "calibrate" : s == "probe" ? "probe    " : s == "measure" ? "measure  " : "write    ",
                                       total, total_bytes, c.progress);
      stage = s;
    }
    bar->update(done, bytes, item);
  };
  const ConvertReport r = convert_model(c.in, c.out, o);
  if (bar) bar->finish();
  std::printf("wrote %s: %.2f MB, %lld parameters, %.4f bits per parameter (whole file)\n", r.files.back().c_str(),
              r.file_bytes / 1e6, static_cast<long long>(r.params), r.bpw);
}

}  // namespace

void add_convert_command(CLI::App& app) {
  auto o = std::make_shared<ConvertCliOptions>();
  auto* cmd = app.add_subcommand("convert",
                                 "Compress a Hugging Face checkpoint into a UPG file, or (--to safetensors) rewrite a "
                                 "legacy pytorch_model.bin checkpoint as safetensors");
  cmd->add_option("hf_dir", o->in,
                  "Hugging Face model directory: config.json + *.safetensors, or pytorch_model.bin(.index.json) "
                  "(read without executing its pickle: only state-dict tensors are accepted)")
      ->required();
  cmd->add_option("output", o->out_pos, "Output (same as -o)");
  cmd->add_option("-o,--output", o->out, "Output: the .upg file, or with --to safetensors the directory to create "
                  "(written under a temporary name, then renamed)");
  cmd->add_option("--to", o->to, "Output format: upg (compress) or safetensors (a Hugging Face directory, tensors "
                  "unchanged; model.safetensors or shards + index above --shard-size, plus config and tokenizer files)")
      ->check(CLI::IsMember({"upg", "safetensors"}))
      ->capture_default_str();
  cmd->add_option("--shard-size", o->shard_gb, "With --to safetensors: split above this many GB (0 = never)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--bpw", o->bpw, "Whole-file budget in bits per parameter (needs --calib)");
  cmd->add_option("--codec", o->codec, "One codec for every matrix: NAME[:key=value,...], e.g. codebook:bits=3,group=64");
  cmd->add_option("--candidates", o->candidates,
                  "Encodings the allocation (--bpw) chooses among: default (codebook 2-6 bits, int8, bf16), or trellis "
                  "(those plus the trellis codec at 2-5 bits: lower error, slower matmuls on the CPU and the GPU)")
      ->check(CLI::IsMember({"default", "trellis"}));
  cmd->add_option("--calib", o->calib, "Calibration text file (plain text; not the evaluation text)");
  cmd->add_option("--calib-tokens", o->calib_tokens, "Calibration tokens used (default 16384)")->check(CLI::PositiveNumber);
  cmd->add_option("--calib-window", o->calib_window, "Tokens per calibration window (default 256)")
      ->check(CLI::Range(2, 1 << 20));
  cmd->add_option("--probe-windows", o->probe_windows,
                  "Calibration windows the sensitivity probe runs per matrix to turn local error into predicted "
                  "KL divergence (default 8; 0 = off, for very large models)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_flag("--no-gptq", o->no_gptq, "Plain importance-weighted rounding instead of GPTQ");
  cmd->add_flag("--progress", o->progress, "Show progress even when stderr is not a terminal");
  cmd->add_option("-t,--threads", o->threads, "Worker threads (0 = all cores)")->check(CLI::NonNegativeNumber);
  cmd->callback([o] { run_convert(*o); });
}

}  // namespace upg::cli
