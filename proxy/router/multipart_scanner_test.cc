#include "proxy/router/multipart_scanner.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace modelplane::proxy::router {
namespace {

using ::testing::Optional;

std::string Part(const std::string& b, const std::string& name,
                 const std::string& data, const std::string& extra = "") {
  return "--" + b + "\r\nContent-Disposition: form-data; name=\"" + name +
         "\"" + extra + "\r\n\r\n" + data + "\r\n";
}

std::string Body(const std::string& b, const std::string& parts) {
  return parts + "--" + b + "--\r\n";
}

MultipartScanner Scan(const std::string& boundary, const std::string& body,
                      size_t piece) {
  MultipartScanner s(boundary);
  for (size_t i = 0; i < body.size(); i += piece) s.Feed(body.substr(i, piece));
  s.Finish();
  return s;
}

TEST(MultipartScannerTest, FindsTheModelAfterALargeFileInAnyPieces) {
  std::string b = "----WebKitFormBoundary7MA4YWxkTrZu0gW";
  std::string audio(300000, '\0');
  for (size_t i = 0; i < audio.size(); ++i) audio[i] = static_cast<char>(i * 7);
  // A delimiter-like sequence inside the file must not fool it.
  audio.replace(1000, b.size() + 4, "\r\n-" + b);
  std::string body =
      Body(b, Part(b, "file", audio,
                   "; filename=\"a.wav\"\r\nContent-Type: audio/wav") +
                  Part(b, "model", "whisper-1") + Part(b, "language", "en"));
  for (size_t piece : {1ul, 7ul, 4096ul, body.size()}) {
    MultipartScanner s = Scan(b, body, piece);
    EXPECT_FALSE(s.error()) << s.error_message();
    EXPECT_THAT(s.model(), Optional(std::string("whisper-1"))) << piece;
  }
}

TEST(MultipartScannerTest, ModelFirstIsKnownBeforeTheFile) {
  std::string b = "xyz";
  MultipartScanner s(b);
  s.Feed(Part(b, "model", "m") +
         "--xyz\r\nContent-Disposition: form-data; "
         "name=\"file\"\r\n\r\npartial");
  EXPECT_THAT(s.model(), Optional(std::string("m")));
  EXPECT_FALSE(s.done());  // The rest is read too: a second model field?
  s.Feed("\r\n--xyz--\r\n");
  s.Finish();
  EXPECT_FALSE(s.error()) << s.error_message();
  EXPECT_THAT(s.model(), Optional(std::string("m")));
}

TEST(MultipartScannerTest, ASecondModelFieldIsAnError) {
  std::string b = "bnd";
  for (const std::string& second :
       {Part(b, "model", "gamma"),
        // Parameter names are case-insensitive, spaces around '=' allowed:
        // form parsers upstream read these as "model" too.
        std::string("--bnd\r\nContent-Disposition: form-data; NAME=\"model\""
                    "\r\n\r\ngamma\r\n"),
        std::string("--bnd\r\ncontent-disposition: form-data; name = model"
                    "\r\n\r\ngamma\r\n")}) {
    std::string body =
        Body(b, Part(b, "model", "beta") + Part(b, "file", "x") + second);
    for (size_t piece : {1ul, 5ul, body.size()}) {
      MultipartScanner s = Scan(b, body, piece);
      EXPECT_TRUE(s.error()) << second;
      EXPECT_EQ(s.error_message(),
                "invalid multipart body: the form has more than one model "
                "field");
    }
  }
  // One model field named in another case is found.
  MultipartScanner one =
      Scan(b,
           Body(b,
                "--bnd\r\nContent-Disposition: form-data; Name=\"model\"\r\n"
                "\r\nm\r\n"),
           3);
  EXPECT_FALSE(one.error()) << one.error_message();
  EXPECT_THAT(one.model(), Optional(std::string("m")));
}

TEST(MultipartScannerTest, NoModelFieldIsNotAnError) {
  MultipartScanner s = Scan("b", Body("b", Part("b", "file", "data")), 3);
  EXPECT_FALSE(s.error()) << s.error_message();
  EXPECT_FALSE(s.model().has_value());
}

TEST(MultipartScannerTest, TruncatedOrOversizedIsAnError) {
  MultipartScanner t = Scan("b", Part("b", "file", "data"), 5);
  EXPECT_EQ(
      t.error_message(),
      "invalid multipart body: the body ends before its closing delimiter");
  MultipartScanner big =
      Scan("b", Body("b", Part("b", "model", std::string(5000, 'x'))), 100);
  EXPECT_EQ(big.error_message(),
            "invalid multipart body: the model field is too long");
}

TEST(MultipartScannerTest, BoundaryFromContentType) {
  EXPECT_THAT(
      MultipartScanner::BoundaryFrom("multipart/form-data; boundary=abc"),
      Optional(std::string("abc")));
  EXPECT_THAT(MultipartScanner::BoundaryFrom(
                  "Multipart/Form-Data;charset=utf-8; BOUNDARY=\"a b\""),
              Optional(std::string("a b")));
  EXPECT_FALSE(MultipartScanner::BoundaryFrom("application/json").has_value());
  // A form with no usable boundary: "" (refused).
  EXPECT_THAT(MultipartScanner::BoundaryFrom("multipart/form-data"),
              Optional(std::string()));
  // Two boundaries: servers split by either; refused.
  EXPECT_THAT(MultipartScanner::BoundaryFrom(
                  "multipart/form-data; boundary=B; boundary=C"),
              Optional(std::string()));
}

TEST(MultipartScannerTest, PartsServersWouldNameOtherwiseAreErrors) {
  std::string b = "bnd";
  for (const auto& [head, message] :
       std::vector<std::pair<std::string, std::string>>{
           {"Content-Disposition: form-data; name*=utf-8''model",
            "a part is named with name* (RFC 7578 allows only name)"},
           {"Content-Disposition: form-data; name=\"x\"\r\n"
            "Content-Disposition: form-data; name=\"model\"",
            "a part has two Content-Disposition headers"},
           {"Content-Disposition: form-data; name=\"x\"; name=\"model\"",
            "a part names itself twice"}}) {
    std::string body = Body(
        b, Part(b, "model", "beta") + "--bnd\r\n" + head + "\r\n\r\nthird\r\n");
    MultipartScanner s = Scan(b, body, 4);
    EXPECT_TRUE(s.error()) << head;
    EXPECT_EQ(s.error_message(), "invalid multipart body: " + message);
  }
}

}  // namespace
}  // namespace modelplane::proxy::router
