// Errors: every failure a user can cause (bad path, bad file, bad input) is reported by throwing
// upg::Error with a message that names the file/tensor/field, what was expected and what was found.
// Library code never calls exit(); the command line turns an Error into a message and exit code 1.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace upg {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

// Concatenates any streamable values into one string: str_cat("tensor ", name, " has ", n, " rows").
template <class... Args>
std::string str_cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

// Always-on check for conditions that depend on input data.
#define UPG_CHECK(cond, ...)                                  \
  do {                                                        \
    if (!(cond)) throw ::upg::Error(::upg::str_cat(__VA_ARGS__)); \
  } while (0)

}  // namespace upg
