#include "base/git_lfs.h"

#include <filesystem>

namespace zaya {

bool IsGitLfsPointer(std::string_view head) {
  return head.starts_with("version https://git-lfs.github.com/spec/");
}

std::string GitLfsPointerAdvice(const std::string& file) {
  const std::string dir = std::filesystem::path(file).parent_path().string();
  return "this is a Git LFS pointer file, not the real " +
         std::filesystem::path(file).filename().string() +
         " (the repository was cloned without git-lfs); run `git lfs pull` in " +
         (dir.empty() ? std::string("the model directory") : dir) + " to fetch the real files";
}

}  // namespace zaya
