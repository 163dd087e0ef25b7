#pragma once

namespace ferry {
const char* Version();
const char* GitCommit();
}  // namespace ferry
