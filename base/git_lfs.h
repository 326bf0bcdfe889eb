// Files a clone made without git-lfs holds in place of the real ones.
//
// Such a clone checks out ~130-byte text pointers ("version https://git-lfs.github.com/spec/v1",
// an oid, a size) for every file tracked by LFS: the weights, and often tokenizer.json. Read as
// the real format they fail with errors that hide the cause (an absurd safetensors header length,
// "not a JSON object"), so the weight and tokenizer loaders ask this first.
#pragma once

#include <string>
#include <string_view>

namespace zaya {

// True when `head` (the file's first bytes, any length) starts like a Git LFS pointer.
bool IsGitLfsPointer(std::string_view head);

// What to tell the user about `file` being a pointer: what it is and to run `git lfs pull` in
// its folder.
std::string GitLfsPointerAdvice(const std::string& file);

}  // namespace zaya
