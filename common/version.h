// What this build of modelplane is: the version (the VERSION file), the
// commit it was built from and when (tools/workspace_status.sh, stamped
// into the binaries at build time), for `--version` and GET /api/version.
#ifndef MODELPLANE_COMMON_VERSION_H_
#define MODELPLANE_COMMON_VERSION_H_

#include <string>

namespace modelplane {

const char* Version();    // "0.19.0"
const char* Commit();     // "1a2b3c4d5e6f", "...-dirty" or "unknown".
const char* BuildDate();  // RFC 3339, UTC.

// `--version`'s line: "modelmanager 0.19.0 (commit 1a2b3c4d5e6f, built
// 2026-12-07T05:19:04Z)".
inline std::string VersionLine(const char* program) {
  return std::string(program) + " " + Version() + " (commit " + Commit() +
         ", built " + BuildDate() + ")";
}

}  // namespace modelplane

#endif  // MODELPLANE_COMMON_VERSION_H_
