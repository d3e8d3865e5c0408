// Finds a JSON request body's top-level "model" and "stream" while the body
// arrives, without parsing it whole: a small state machine over the JSON
// grammar that tracks nesting and strings, captures only those two values,
// and skips everything else. A 50 MB audio transcription body or a long chat
// history costs one pass and no allocation beyond the model name and one
// hash per top-level key.
//
// Routing must read the value the model will: a top-level key that appears
// twice (after its escapes are decoded: "\u006dodel" is "model"; in any
// letter case: Go's encoding/json takes "Model" for "model") is an error,
// since the upstream's parser takes the last one and this scanner would
// route by the first. So the whole top level is walked, to its '}'.
//
//   JsonScanner s;
//   s.Feed(chunk1);
//   s.Feed(chunk2);
//   if (s.model()) route(*s.model());   // Known as soon as it went by.
//   s.Finish();                          // At the end of the body.
//
// Only the top level counts: {"messages":[{"model":"x"}],"model":"y"} is
// "y". It validates only what it walks through (the top level's structure,
// its keys and strings; nested values only for their nesting); the upstream
// validates the rest. Single-threaded.
#ifndef MODELPLANE_PROXY_ROUTER_JSON_SCANNER_H_
#define MODELPLANE_PROXY_ROUTER_JSON_SCANNER_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/base/attributes.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/string_view.h"

namespace modelplane::proxy::router {

class JsonScanner {
 public:
  // A model name longer than this is an error (no real id is).
  static constexpr size_t kMaxModelBytes = 1024;
  static constexpr int kMaxDepth = 512;
  // More top-level keys than this is an error (no API has nearly as many;
  // each costs a hash in the duplicate check).
  static constexpr size_t kMaxKeys = 4096;
  // Of a key, this much is kept for the error message (all of it hashed).
  static constexpr size_t kMaxKeyBytes = 128;

  void Feed(absl::string_view data);
  // The same, every byte through the state machine: the reference Feed's
  // fast paths are tested against.
  void FeedEachByte(absl::string_view data);
  // The body ended: anything left open is an error.
  void Finish();

  // Set once the top-level "model" string was read completely.
  const std::optional<std::string>& model() const { return model_; }
  // Set once a top-level "stream" true/false was read.
  std::optional<bool> stream() const { return stream_; }
  // The top-level object closed, or an error: more input cannot change
  // the answers.
  bool done() const { return error_ || closed_; }
  bool error() const { return error_; }
  // What was wrong, e.g. "invalid JSON at byte 17: expected ':'".
  const std::string& error_message() const { return error_message_; }

 private:
  enum class State {
    kBeforeObject,  // Leading whitespace, then '{'.
    kBeforeKey,     // '"' or '}' (after '{'), or '"' (after ',').
    kInKey,
    kAfterKey,  // ':'
    kBeforeValue,
    kInString,     // A value string (captured when it is "model").
    kInLiteral,    // true/false/null/number: up to a delimiter.
    kInNested,     // Inside a nested object or array, skipping.
    kAfterValue,   // ',' or '}'
    kAfterObject,  // Only whitespace may follow.
  };

  // One byte through the state machine. The states a request body passes
  // through most (between keys and values) are handled here; a string's
  // bytes go to StringStep, and errors to Fail, both out of line, so that
  // Step itself stays small (its cost is mostly its entry and exit: about
  // 30 bytes of a chat body go through it).
  void Step(char c);
  ABSL_ATTRIBUTE_NOINLINE void StringStep(char c);
  ABSL_ATTRIBUTE_NOINLINE void Fail(absl::string_view what);
  void EndValue();
  // Decoded bytes of the key or string being read (the key's hash and
  // kept prefix, or the model name).
  void StringBytes(const char* p, size_t n);
  // A \u escape's code unit: surrogate pairs become one code point.
  void CodeUnit(uint32_t unit);
  // A high surrogate not followed by its low half is kept as it is.
  void FlushSurrogate() {
    if (high_surrogate_ != 0) WriteSurrogate();
  }
  void WriteSurrogate();
  void EndKey();
  // Inside a nested value: the first byte from `p` that ends it or is one
  // level too deep (left to Step), or `end`.
  const char* SkipNested(const char* p, const char* end);

  State state_ = State::kBeforeObject;
  uint64_t offset_ = 0;
  bool after_comma_ = false;
  std::string key_;        // The top-level key being read (truncated).
  size_t key_bytes_ = 0;   // Its decoded length.
  uint64_t key_hash_ = 0;  // FNV-1a of its decoded bytes, folded.
  // A multibyte character of the key not yet complete (key_fold.h: two of
  // them fold to ASCII letters).
  char fold_pending_[4] = {};
  size_t fold_have_ = 0, fold_need_ = 0;
  void HashKeyByte(unsigned char c);
  void FlushFold() {
    if (fold_have_ != 0) WriteFold();
  }
  void WriteFold();
  uint64_t key_offset_ = 0;  // Where it began (for the message).
  uint32_t high_surrogate_ = 0;
  // Hashes of the keys seen: the first kInlineKeys in place (a request
  // has a handful; no allocation for them), all of them in keys_ past that.
  static constexpr size_t kInlineKeys = 16;
  uint64_t inline_keys_[kInlineKeys] = {};
  absl::flat_hash_set<uint64_t> keys_;
  size_t key_count_ = 0;
  // False if `hash` was seen (a duplicate key).
  bool InsertKey(uint64_t hash);
  enum class Target { kNone, kModel, kStream } target_ = Target::kNone;
  std::string value_;  // The captured string or literal.
  bool escape_ = false;
  int unicode_left_ = 0;  // Hex digits of a \u escape still to read.
  uint32_t unicode_ = 0;
  int depth_ = 0;  // Inside kInNested.
  bool nested_in_string_ = false;
  bool nested_escape_ = false;
  std::optional<std::string> model_;
  std::optional<bool> stream_;
  bool closed_ = false;
  bool error_ = false;
  std::string error_message_;
};

}  // namespace modelplane::proxy::router

#endif  // MODELPLANE_PROXY_ROUTER_JSON_SCANNER_H_
