#include "server/core/logs/log_buffer.h"

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace modelplane::logs {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

// Reads everything from *offset, failing on any drop.
std::string ReadAll(const LogBuffer& buffer, uint64_t* offset) {
  LogBuffer::Chunk chunk = buffer.Read(offset, SIZE_MAX);
  EXPECT_EQ(chunk.dropped, 0u);
  return chunk.data;
}

TEST(LogBufferTest, WrapsAroundAtCapacity) {
  LogBuffer buffer(8);
  buffer.Append("abcdef");
  buffer.Append("ghij");
  EXPECT_EQ(buffer.begin_offset(), 2u);
  EXPECT_EQ(buffer.end_offset(), 10u);
  uint64_t offset = 2;
  EXPECT_EQ(ReadAll(buffer, &offset), "cdefghij");
  EXPECT_EQ(offset, 10u);
  buffer.Append("klm");  // Wraps a second time.
  offset = 5;
  EXPECT_EQ(ReadAll(buffer, &offset), "fghijklm");
}

TEST(LogBufferTest, AppendLargerThanCapacityKeepsTheTail) {
  LogBuffer buffer(4);
  buffer.Append("abc");
  buffer.Append("0123456789");
  EXPECT_EQ(buffer.begin_offset(), 9u);
  EXPECT_EQ(buffer.end_offset(), 13u);
  uint64_t offset = 0;
  LogBuffer::Chunk chunk = buffer.Read(&offset, 100);
  EXPECT_EQ(chunk.dropped, 9u);
  EXPECT_EQ(chunk.data, "6789");
  EXPECT_EQ(offset, 13u);
}

TEST(LogBufferTest, CloseWakesFollowersOnceAndKeepsTheData) {
  LogBuffer buffer(64);
  int wakes = 0;
  int id = buffer.Subscribe([&] { ++wakes; });
  buffer.Append("last words\n");
  EXPECT_FALSE(buffer.closed().has_value());
  buffer.Close(absl::NotFoundError("removed"));
  buffer.Close(absl::UnavailableError("ignored: the first close wins"));
  EXPECT_EQ(wakes, 2);  // The append, then the close.
  ASSERT_TRUE(buffer.closed().has_value());
  EXPECT_EQ(buffer.closed()->code(), absl::StatusCode::kNotFound);
  uint64_t offset = 0;
  EXPECT_EQ(buffer.Read(&offset, 64).data, "last words\n");
  buffer.Unsubscribe(id);
}

TEST(LogBufferTest, ReaderThatKeepsUpNeverSeesDrops) {
  LogBuffer buffer(16);
  std::string written;
  std::string read;
  uint64_t offset = 0;
  for (int i = 0; i < 200; ++i) {
    const std::string data(1 + i % 16, static_cast<char>('a' + i % 26));
    buffer.Append(data);
    written += data;
    // Small reads, so that a read often straddles the wrap point.
    for (;;) {
      LogBuffer::Chunk chunk = buffer.Read(&offset, 5);
      ASSERT_EQ(chunk.dropped, 0u) << "at append " << i;
      if (chunk.data.empty()) break;
      read += chunk.data;
    }
  }
  EXPECT_EQ(read, written);
}

TEST(LogBufferTest, ReaderThatFallsBehindIsToldHowMuchItMissed) {
  LogBuffer buffer(10);
  buffer.Append("0123456789");
  uint64_t offset = 0;
  EXPECT_EQ(buffer.Read(&offset, 3).data, "012");
  buffer.Append("abcdefghijklmno");  // Retained: offsets [15, 25).
  LogBuffer::Chunk chunk = buffer.Read(&offset, 4);
  EXPECT_EQ(chunk.dropped, 12u);  // Offsets [3, 15).
  EXPECT_EQ(chunk.data, "fghi");
  EXPECT_EQ(offset, 19u);
  chunk = buffer.Read(&offset, 100);
  EXPECT_EQ(chunk.dropped, 0u);
  EXPECT_EQ(chunk.data, "jklmno");
  EXPECT_EQ(offset, 25u);
}

TEST(LogBufferTest, OffsetBeyondEndIsClamped) {
  LogBuffer buffer(10);
  buffer.Append("hello");
  uint64_t offset = 100;
  LogBuffer::Chunk chunk = buffer.Read(&offset, 100);
  EXPECT_EQ(chunk.dropped, 0u);
  EXPECT_THAT(chunk.data, IsEmpty());
  EXPECT_EQ(offset, 5u);
  buffer.Append("xy");
  EXPECT_EQ(ReadAll(buffer, &offset), "xy");
}

TEST(LogBufferTest, HistoryStartLandsOnALineStart) {
  LogBuffer buffer(100);
  EXPECT_EQ(buffer.HistoryStart(10), 0u);  // Empty.
  // "first\n" [0, 6), "second\n" [6, 13), "third\n" [13, 19).
  buffer.Append("first\nsecond\nthird\n");
  EXPECT_EQ(buffer.HistoryStart(0), 19u);
  EXPECT_EQ(buffer.HistoryStart(1000), 0u);  // All of it, from offset 0.
  EXPECT_EQ(buffer.HistoryStart(8), 13u);    // 11 is mid-line: skip to 13.
  EXPECT_EQ(buffer.HistoryStart(6), 13u);    // Already a line start.
  EXPECT_EQ(buffer.HistoryStart(3), 16u);    // No line start: "rd\n" whole.
  buffer.Append("partial");
  EXPECT_EQ(buffer.HistoryStart(10), 19u);
}

TEST(LogBufferTest, HistoryStartSkipsAnOverwrittenLineHead) {
  LogBuffer buffer(10);
  buffer.Append("aaaa\nbb\ncc");
  buffer.Append("\ndd");  // Retained: "a\nbb\ncc\ndd" at [3, 13).
  EXPECT_EQ(buffer.begin_offset(), 3u);
  EXPECT_EQ(buffer.HistoryStart(1000), 5u);
  uint64_t offset = buffer.HistoryStart(1000);
  EXPECT_EQ(ReadAll(buffer, &offset), "bb\ncc\ndd");
}

TEST(LogBufferTest, LastLinesSkipsEmptyLinesAndStripsCarriageReturns) {
  LogBuffer buffer(100);
  EXPECT_THAT(buffer.LastLines(5), IsEmpty());
  buffer.Append("one\r\ntwo\n\n\r\nthree\r\nfour");
  EXPECT_THAT(buffer.LastLines(3), ElementsAre("two", "three", "four"));
  EXPECT_THAT(buffer.LastLines(10), ElementsAre("one", "two", "three", "four"));
  EXPECT_THAT(buffer.LastLines(0), IsEmpty());
  buffer.Append("\n\n");
  EXPECT_THAT(buffer.LastLines(1), ElementsAre("four"));
}

TEST(LogBufferTest, LastLinesTruncatesLongLines) {
  LogBuffer buffer(100);
  buffer.Append("CUDA out of memory\nx\xc3\xa9y\n");  // "xéy".
  EXPECT_THAT(buffer.LastLines(2, 3), ElementsAre("CUD", "x\xc3\xa9"));
  EXPECT_THAT(buffer.LastLines(1, 2), ElementsAre("x"));  // Not mid-'é'.
}

TEST(LogBufferTest, LastLinesStartsAtTheOldestRetainedByte) {
  LogBuffer buffer(8);
  buffer.Append("hello\nworld\n");  // Retained: "o\nworld\n".
  EXPECT_THAT(buffer.LastLines(5), ElementsAre("o", "world"));
}

TEST(LogBufferTest, DropMarkerText) {
  EXPECT_EQ(DropMarker(12), "[12 bytes dropped]\n");
}

TEST(LogBufferTest, SubscribersAreCalledOncePerAppend) {
  LogBuffer buffer(16);
  int a = 0;
  int b = 0;
  const int id_a = buffer.Subscribe([&] { ++a; });
  buffer.Subscribe([&] { ++b; });
  buffer.Append("x");
  buffer.Append("0123456789abcdefXYZ");  // Larger than capacity: still once.
  buffer.Append("");                     // Nothing new: no call.
  EXPECT_EQ(a, 2);
  EXPECT_EQ(b, 2);
  buffer.Unsubscribe(id_a);
  buffer.Unsubscribe(12345);  // Unknown: ignored.
  buffer.Append("y");
  EXPECT_EQ(a, 2);
  EXPECT_EQ(b, 3);
}

TEST(LogBufferTest, UnsubscribeFromInsideACallback) {
  LogBuffer buffer(16);
  int first_calls = 0;
  int second_calls = 0;
  int added_calls = 0;
  int first = 0;
  int second = 0;
  first = buffer.Subscribe([&] {
    ++first_calls;
    buffer.Unsubscribe(first);   // Itself.
    buffer.Unsubscribe(second);  // A later one, not yet called this round.
    buffer.Subscribe([&] { ++added_calls; });
  });
  second = buffer.Subscribe([&] { ++second_calls; });
  buffer.Append("a");
  EXPECT_EQ(first_calls, 1);
  EXPECT_EQ(second_calls, 0);
  EXPECT_EQ(added_calls, 0);  // Added during the round: from the next one.
  buffer.Append("b");
  EXPECT_EQ(first_calls, 1);
  EXPECT_EQ(second_calls, 0);
  EXPECT_EQ(added_calls, 1);
}

// The byte at `offset` of the concurrency test's output: 12-byte lines of 11
// letters and '\n', the letter changing with each line.
char ExpectedByte(uint64_t offset) {
  return offset % 12 == 11 ? '\n' : static_cast<char>('a' + offset / 12 % 26);
}

TEST(LogBufferTest, ConcurrentReadersNeverBlockTheWriter) {
  constexpr int kLines = 100000;
  constexpr uint64_t kTotal = uint64_t{kLines} * 12;
  LogBuffer buffer(4096);
  std::atomic<bool> writer_done{false};
  std::atomic<int> permanent_calls{0};
  buffer.Subscribe([&] { permanent_calls.fetch_add(1); });

  struct ReaderResult {
    uint64_t bytes = 0;
    uint64_t dropped = 0;
    uint64_t offset = 0;
    uint64_t mismatches = 0;
  };
  std::vector<ReaderResult> results(4);
  std::vector<std::thread> threads;
  for (ReaderResult& result : results) {
    threads.emplace_back([&buffer, &writer_done, &result] {
      for (;;) {
        // Read after seeing the writer done: an empty read is then the end.
        const bool done = writer_done.load(std::memory_order_acquire);
        LogBuffer::Chunk chunk = buffer.Read(&result.offset, 1000);
        result.dropped += chunk.dropped;
        result.bytes += chunk.data.size();
        const uint64_t start = result.offset - chunk.data.size();
        for (size_t i = 0; i < chunk.data.size(); ++i) {
          if (chunk.data[i] != ExpectedByte(start + i)) ++result.mismatches;
        }
        if (chunk.data.empty() && chunk.dropped == 0) {
          if (done) break;
          std::this_thread::yield();
        }
      }
    });
  }
  std::atomic<int> late_calls{0};
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&] {
      while (!writer_done.load(std::memory_order_acquire)) {
        auto unsubscribed = std::make_shared<std::atomic<bool>>(false);
        const int id = buffer.Subscribe([unsubscribed, &late_calls] {
          if (unsubscribed->load()) late_calls.fetch_add(1);
        });
        buffer.Unsubscribe(id);
        unsubscribed->store(true);
      }
    });
  }

  std::thread writer([&] {
    std::string line(12, '\n');
    for (int i = 0; i < kLines; ++i) {
      line.replace(0, 11, 11, static_cast<char>('a' + i % 26));
      buffer.Append(line);
    }
    writer_done.store(true, std::memory_order_release);
  });
  writer.join();
  for (std::thread& thread : threads) thread.join();

  EXPECT_TRUE(writer_done.load());
  EXPECT_EQ(buffer.end_offset(), kTotal);
  EXPECT_EQ(permanent_calls.load(), kLines);
  EXPECT_EQ(late_calls.load(), 0);
  for (const ReaderResult& result : results) {
    EXPECT_EQ(result.bytes + result.dropped, kTotal);
    EXPECT_EQ(result.offset, kTotal);
    EXPECT_EQ(result.mismatches, 0u);
  }
}

}  // namespace
}  // namespace modelplane::logs
