// The libFuzzer target, built with gcc, over its seed corpus (each file as
// is, then with every split and a few byte flips): it keeps building and
// working between fuzzing runs (`make fuzz`).
#include <dirent.h>

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace modelplane::proxy {
namespace {

std::vector<std::string> Corpus() {
  std::string dir =
      std::string(getenv("TEST_SRCDIR")) + "/modelplane/proxy/fuzz/corpus";
  std::vector<std::string> files;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] == '.') continue;
      std::ifstream in(dir + "/" + e->d_name, std::ios::binary);
      std::stringstream s;
      s << in.rdbuf();
      files.push_back(s.str());
    }
    closedir(d);
  }
  return files;
}

int FuzzOne(const std::string& input) {
  return LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()),
                                input.size());
}

TEST(LibFuzzerTargetTest, RunsEverySeedWholeSplitAndFlipped) {
  std::vector<std::string> corpus = Corpus();
  ASSERT_GE(corpus.size(), 8u) << "the seed corpus is missing";
  std::vector<bool> targets(5);
  for (const std::string& seed : corpus) {
    ASSERT_GE(seed.size(), 2u);
    targets[static_cast<uint8_t>(seed[0]) % 5] = true;
    for (int split = 0; split < 64; ++split) {
      std::string input = seed;
      input[1] = static_cast<char>(split);
      EXPECT_EQ(FuzzOne(input), 0);
      input[2 + split % (input.size() - 2)] ^= 0x5a;  // One byte flipped.
      EXPECT_EQ(FuzzOne(input), 0);
    }
  }
  for (int t = 0; t < 5; ++t) EXPECT_TRUE(targets[t]) << "no seed for " << t;
}

}  // namespace
}  // namespace modelplane::proxy
