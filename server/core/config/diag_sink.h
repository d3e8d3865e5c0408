// Collects the errors and warnings of one config load, so that the loader
// can report every problem in a file, not only the first.
#ifndef MODELPLANE_SERVER_CORE_CONFIG_DIAG_SINK_H_
#define MODELPLANE_SERVER_CORE_CONFIG_DIAG_SINK_H_

#include <string>
#include <utility>
#include <vector>

#include "server/core/config/config.h"

namespace modelplane::config {

class DiagSink {
 public:
  explicit DiagSink(std::string file) : files_{std::move(file)} {}

  void Error(SourcePos pos, std::string key_path, std::string message) {
    errors_.push_back(
        Diagnostic{NameOf(pos), pos, std::move(key_path), std::move(message)});
  }
  void Warn(SourcePos pos, std::string key_path, std::string message) {
    warnings_.push_back(
        Diagnostic{NameOf(pos), pos, std::move(key_path), std::move(message)});
  }

  // The first file's name (Config::file).
  const std::string& file() const { return files_[0]; }
  // The files of a merged load, in SourcePos::file order.
  void AddFile(std::string name) { files_.push_back(std::move(name)); }
  const std::string& NameOf(SourcePos pos) const {
    return pos.file > 0 && static_cast<size_t>(pos.file) < files_.size()
               ? files_[pos.file]
               : files_[0];
  }
  size_t error_count() const { return errors_.size(); }
  std::vector<Diagnostic> TakeErrors() { return std::move(errors_); }
  std::vector<Diagnostic> TakeWarnings() { return std::move(warnings_); }

 private:
  std::vector<std::string> files_;
  std::vector<Diagnostic> errors_;
  std::vector<Diagnostic> warnings_;
};

}  // namespace modelplane::config

#endif  // MODELPLANE_SERVER_CORE_CONFIG_DIAG_SINK_H_
