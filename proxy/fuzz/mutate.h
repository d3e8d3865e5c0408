// Seeded input mutation for the proxy's fuzz-style tests: random splits of
// a byte string into reads, and small random edits.
#ifndef MODELPLANE_PROXY_FUZZ_MUTATE_H_
#define MODELPLANE_PROXY_FUZZ_MUTATE_H_

#include <algorithm>
#include <random>
#include <string>
#include <vector>

namespace modelplane::proxy::fuzz {

// Splits `s` into random pieces (1 to 97 bytes).
inline std::vector<std::string> Pieces(const std::string& s,
                                       std::mt19937& rng) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < s.size()) {
    size_t n = 1 + rng() % std::min<size_t>(s.size() - i, 97);
    out.push_back(s.substr(i, n));
    i += n;
  }
  return out;
}

// Flips, inserts, deletes or duplicates a few bytes.
inline std::string Mutate(std::string s, std::mt19937& rng) {
  static const char kInteresting[] = "\"\\{}[]:,\r\n-0 \x00\xff";
  int edits = 1 + rng() % 4;
  for (int e = 0; e < edits && !s.empty(); ++e) {
    size_t at = rng() % s.size();
    switch (rng() % 4) {
      case 0:
        s[at] = kInteresting[rng() % (sizeof(kInteresting) - 1)];
        break;
      case 1:
        s.insert(at, 1, static_cast<char>(rng()));
        break;
      case 2:
        s.erase(at, 1 + rng() % 8);
        break;
      default:
        s.insert(at, s.substr(at, rng() % 32));
    }
  }
  return s;
}

}  // namespace modelplane::proxy::fuzz

#endif  // MODELPLANE_PROXY_FUZZ_MUTATE_H_
