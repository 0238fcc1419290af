// A directory an output is written into before it is renamed into place: "<target>.tmp-XXXXXX"
// beside the target (same file system, so the rename is atomic), removed with whatever it holds
// when the writer fails, kept once the caller has moved it into place. Used by `upg decompress`
// and `upg merge`.
#pragma once
#include <string>

namespace upg {

class StagingDir {
 public:
  // Throws Error "<what>cannot create a temporary directory beside '<target>': <reason>".
  explicit StagingDir(const std::string& target, const std::string& what = "");
  ~StagingDir();
  StagingDir(const StagingDir&) = delete;
  StagingDir& operator=(const StagingDir&) = delete;

  const std::string& path() const { return path_; }
  // The directory was renamed into place: nothing to remove any more.
  void keep() { path_.clear(); }

 private:
  std::string path_;
};

}  // namespace upg
