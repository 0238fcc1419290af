// Each subcommand registers itself on the app with an add_*_command function defined in its own
// cmd_*.cpp file; main.cpp calls them all. A subcommand's callback throws upg::Error on failure.
#pragma once
#include <CLI/CLI.hpp>

namespace upg::cli {

void add_run_command(CLI::App& app);
void add_chat_command(CLI::App& app);
void add_info_command(CLI::App& app);
void add_verify_command(CLI::App& app);
void add_decompress_command(CLI::App& app);
void add_eval_command(CLI::App& app);
void add_convert_command(CLI::App& app);
void add_synth_command(CLI::App& app);
void add_compare_command(CLI::App& app);
void add_bench_command(CLI::App& app);
void add_merge_command(CLI::App& app);
void add_serve_command(CLI::App& app);
void add_apply_tuning_command(CLI::App& app);

}  // namespace upg::cli
