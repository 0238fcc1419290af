// upg: the command line. Each subcommand lives in its own file (tools/upg/cmd_*.cpp).
#include <CLI/CLI.hpp>
#include <iostream>
#include <typeinfo>

#include "base/cpu_features.h"
#include "base/error.h"
#include "commands.h"

int main(int argc, char** argv) {
  CLI::App app{"UPG: compress large language models and run them compressed"};
  app.set_version_flag("--version", std::string(UPG_VERSION));
  app.require_subcommand(1);
  upg::cli::add_run_command(app);
  upg::cli::add_chat_command(app);
  upg::cli::add_info_command(app);
  upg::cli::add_verify_command(app);
  upg::cli::add_decompress_command(app);
  upg::cli::add_eval_command(app);
  upg::cli::add_convert_command(app);
  upg::cli::add_synth_command(app);
  upg::cli::add_compare_command(app);
  upg::cli::add_bench_command(app);
  upg::cli::add_merge_command(app);
  upg::cli::add_serve_command(app);
  upg::cli::add_apply_tuning_command(app);
  // Every failure ends here with a message naming the command and exit status 1: upg::Error (bad
  // input, named by the code that found it), out of memory, and any other exception (a bug, but
  // still a message rather than std::terminate).
  auto command = [&] {
    for (const CLI::App* sub : app.get_subcommands()) return "upg " + sub->get_name();
    return std::string("upg");
  };
  try {
    upg::require_baseline_cpu();
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const upg::Error& e) {
    std::cerr << command() << ": error: " << e.what() << "\n";
    return 1;
  } catch (const std::bad_alloc&) {
    std::cerr << command() << ": error: out of memory\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << command() << ": error: " << e.what() << " (unexpected " << typeid(e).name() << ")\n";
    return 1;
  } catch (...) {
    std::cerr << command() << ": error: unknown exception\n";
    return 1;
  }
  return 0;
}
