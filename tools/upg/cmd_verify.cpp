// upg verify MODEL.upg [--against HF_DIR]: checks a UPG model completely, as loading it does not.
// For every tensor: recomputes the XXH64 of its arrays and compares it with the recorded one,
// checks that every array starts 64-byte aligned, opens it with its codec and decodes every row
// (decode_rows) checking that all values are finite. With --against, also compares every tensor
// with the original checkpoint: relative Frobenius error ||decoded - original|| / ||original||,
// printed per tensor, checked against the "err" recorded at conversion (must agree within 1% +
// 1e-6; --no-recorded skips this) and against --max-err; tensors missing on either side or with another shape fail.
// Exit status 1, with every failing tensor named, on any problem.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>
#include <set>

#include "base/error.h"
#include "codecs/dense/dense_matrix.h"
#include "commands.h"
#include "loaded_model.h"
#include "format/hf_checkpoint.h"
#include "format/upg_container.h"
#include "format/upg_format.h"
#include "progress.h"

namespace upg::cli {

namespace {

struct VerifyOptions {
  std::string model, against;
  double max_err = -1;
  bool progress = false, no_recorded = false;
  int threads = 0;
};

struct Check {
  bool finite = true;
  int64_t bad_row = -1, bad_col = -1;
  float bad_value = 0;
  double err = NAN;  // vs the original (with --against)
};

// Decodes every row of m (and of the original `ref`, when given) in chunks, in parallel.
Check decode_all(const WeightMatrix& m, const WeightMatrix* ref) {
  const int64_t rows = m.rows(), cols = m.cols();
  const int64_t chunk = std::max<int64_t>(1, (1 << 18) / std::max<int64_t>(cols, 1));
  const int64_t nchunks = (rows + chunk - 1) / chunk;
  Check c;
  double num = 0, den = 0;
  int64_t first_bad = INT64_MAX;
#pragma omp parallel reduction(+ : num, den)
  {
    std::vector<float> buf(static_cast<size_t>(chunk * cols)), orig(ref ? buf.size() : 0);
#pragma omp for schedule(dynamic)
    for (int64_t k = 0; k < nchunks; ++k) {
      const int64_t r0 = k * chunk, r1 = std::min(rows, r0 + chunk);
      const size_t n = static_cast<size_t>((r1 - r0) * cols);
      m.decode_rows(r0, r1, buf.data());
      for (size_t i = 0; i < n; ++i) {
        if (!std::isfinite(buf[i])) {
#pragma omp critical
          if (r0 * cols + static_cast<int64_t>(i) < first_bad) {
            first_bad = r0 * cols + static_cast<int64_t>(i);
            c.bad_value = buf[i];
          }
          break;
        }
      }
      if (ref) {
        ref->decode_rows(r0, r1, orig.data());
        for (size_t i = 0; i < n; ++i) {
          const double d = static_cast<double>(buf[i]) - orig[i];
          num += d * d;
          den += static_cast<double>(orig[i]) * orig[i];
        }
      }
    }
  }
  if (first_bad != INT64_MAX) {
    c.finite = false;
    c.bad_row = first_bad / cols;
    c.bad_col = first_bad % cols;
  }
  if (ref) c.err = den > 0 ? std::sqrt(num / den) : (num == 0 ? 0.0 : INFINITY);
  return c;
}

void verify(const VerifyOptions& o) {
  apply_threads(o.threads);  // the thread pool (forward passes, matmuls) and OpenMP
  const auto t0 = std::chrono::steady_clock::now();
  auto c = UpgContainer::open(o.model);
  std::unique_ptr<HfCheckpoint> hf;
  if (!o.against.empty()) hf = HfCheckpoint::open(o.against);

  std::vector<std::string> problems;
  auto fail = [&](const std::string& msg) {
    problems.push_back(msg);
    std::fprintf(stderr, "%sFAIL %s\n", o.progress ? "\n" : "", msg.c_str());
  };
  uint64_t total_bytes = 0, done_bytes = 0;
  for (const UpgTensor* t : c->tensors()) total_bytes += t->stored_bytes();
  if (hf) {
    std::printf("%-56s %-10s %12s %12s\n", "tensor", "codec", "err", "recorded");
    std::set<std::string> ours;
    for (const UpgTensor* t : c->tensors()) ours.insert(t->name);
    for (const std::string& n : hf->names())
      if (!ours.count(n)) fail(str_cat("tensor '", n, "' of ", o.against, " is missing from the UPG model"));
  }
  Progress progress("verify", c->tensors().size(), total_bytes, o.progress);
  size_t done = 0;
  for (const UpgTensor* t : c->tensors()) {
    const std::string who = str_cat("tensor '", t->name, "' (", t->file, ")");
    const std::string sum = t->compute_xxh64();
    if (sum != t->xxh64)
      fail(str_cat(who, ": checksum mismatch: recorded xxh64 ", t->xxh64, ", computed ", sum,
                   " (the stored arrays are damaged)"));
    for (const UpgArray& a : t->arrays)
      // Mappings start page-aligned, so an address's alignment is its file offset's.
      if (reinterpret_cast<uintptr_t>(a.view->data) % kUpgAlign != 0 && a.view->nbytes > 0)
        fail(str_cat(who, ": array '", a.view->name, "' does not start at a multiple of ", kUpgAlign, " bytes"));
    try {
      auto m = t->open_matrix();
      std::unique_ptr<WeightMatrix> ref;
      if (hf) {
        const TensorView* h = hf->find(t->name);
        if (!h) {
          fail(str_cat(who, ": not in ", o.against));
        } else if (h->shape != t->shape) {
          fail(str_cat(who, ": shape ", shape_to_string(t->shape), " but ", o.against, " has ", h->shape_str()));
        } else {
          ref = std::make_unique<DenseMatrix>(h->data, h->dtype, t->rows(), t->cols());
        }
      }
      const Check ck = decode_all(*m, ref.get());
      if (!ck.finite)
        fail(str_cat(who, ": decodes to a non-finite value ", ck.bad_value, " at row ", ck.bad_row, ", column ",
                     ck.bad_col));
      if (ref) {
        char rec[32] = "-";
        if (t->err) std::snprintf(rec, sizeof rec, "%.4g", *t->err);
        std::printf("%-56s %-10s %12.4g %12s\n", t->name.c_str(), t->codec.c_str(), ck.err, rec);
        if (t->err && !o.no_recorded && !(std::fabs(ck.err - *t->err) <= 1e-6 + 0.01 * std::fabs(*t->err)))
          fail(str_cat(who, ": relative error vs ", o.against, " is ", ck.err, " but ", *t->err,
                       " was recorded at conversion"));
        if (o.max_err >= 0 && !(ck.err <= o.max_err))
          fail(str_cat(who, ": relative error ", ck.err, " exceeds --max-err ", o.max_err));
      }
    } catch (const Error& e) {
      fail(str_cat(who, ": ", e.what()));
    }
    done_bytes += t->stored_bytes();
    progress.update(++done, done_bytes, t->name);
  }
  progress.finish();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!problems.empty()) {
    std::string msg = str_cat(c->path(), ": verification failed: ", problems.size(), " problem",
                              problems.size() == 1 ? "" : "s", "; first: ", problems[0]);
    throw Error(msg);
  }
  std::printf("OK: %zu tensors in %zu file%s, %.1f MB of arrays: checksums match, arrays aligned, all values finite%s "
              "(%.2f s)\n",
              c->tensors().size(), c->files().size(), c->files().size() == 1 ? "" : "s", total_bytes / 1e6,
              hf ? ", every tensor present in both" : "", secs);
}

}  // namespace

void add_verify_command(CLI::App& app) {
  auto o = std::make_shared<VerifyOptions>();
  auto* cmd = app.add_subcommand("verify", "Check every checksum of a UPG model and decode every tensor");
  cmd->add_option("model", o->model, ".upg file, .upg.index.json or a directory holding one")->required();
  cmd->add_option("--against", o->against, "Original Hugging Face directory: report each tensor's relative error");
  cmd->add_option("--max-err", o->max_err, "With --against: fail when a tensor's relative error exceeds this");
  cmd->add_flag("--no-recorded", o->no_recorded,
                "With --against: do not compare with the err recorded at conversion (HF_DIR is not the original)");
  cmd->add_flag("--progress", o->progress, "Show progress even when stderr is not a terminal");
  cmd->add_option("-t,--threads", o->threads, "Worker threads (0 = all cores)")->check(CLI::NonNegativeNumber);
  cmd->callback([o] { verify(*o); });
}

}  // namespace upg::cli
