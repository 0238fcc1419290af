#include "base/staging_dir.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "base/error.h"

namespace upg {

StagingDir::StagingDir(const std::string& target, const std::string& what) {
  std::string tmpl = target + ".tmp-XXXXXX";
  UPG_CHECK(::mkdtemp(tmpl.data()), what, "cannot create a temporary directory beside '", target, "': ",
            std::strerror(errno));
  path_ = tmpl;
}

StagingDir::~StagingDir() {
  if (path_.empty()) return;
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

}  // namespace upg
