// Helpers shared by the unit tests: where the repository and ../shared/data are; error checks.
#pragma once
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace upg::test {

inline std::string source_dir() {
  const char* env = std::getenv("UPG_SOURCE_DIR");
  return env ? env : UPG_SOURCE_DIR;
}

// ../shared/data beside the repository, or "" when absent (a user's machine has no ../shared).
inline std::string shared_data_dir() {
  std::filesystem::path p = std::filesystem::path(source_dir()) / ".." / "shared" / "data";
  return std::filesystem::is_directory(p) ? p.lexically_normal().string() : std::string();
}

// Expects fn() to throw an exception whose message contains `needle`.
template <class F>
void expect_error(F&& fn, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one mentioning '" << needle << "'";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

}  // namespace upg::test

// Skips the current test, with a clear message, when ../shared/data is absent.
// CI has ../shared, so there these tests always run; set UPG_REQUIRE_SHARED=1 to turn skips into failures.
#define UPG_NEED_SHARED_DATA(var)                                                             \
  std::string var = ::upg::test::shared_data_dir();                                           \
  if (var.empty()) {                                                                          \
    if (std::getenv("UPG_REQUIRE_SHARED")) FAIL() << "../shared/data is required but absent"; \
    GTEST_SKIP() << "../shared/data not found beside the repository; skipping test that needs it"; \
  }
