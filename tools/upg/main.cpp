// upg: the command line. Each subcommand lives in its own file (tools/upg/cmd_*.cpp).
#include <CLI/CLI.hpp>
#include <iostream>

#include "base/error.h"

int main(int argc, char** argv) {
  CLI::App app{"UPG: compress large language models and run them compressed"};
  app.set_version_flag("--version", std::string(UPG_VERSION));
  app.require_subcommand(1);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const upg::Error& e) {
    std::cerr << "upg: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
