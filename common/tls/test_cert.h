// Tests only: a self-signed P-256 certificate (CN "test", an hour's
// validity) and its key, written as PEM files into a directory of their own
// under $TEST_TMPDIR (else /tmp), removed when the object goes.
#ifndef MODELPLANE_COMMON_TLS_TEST_CERT_H_
#define MODELPLANE_COMMON_TLS_TEST_CERT_H_

#include <string>

namespace modelplane::tls {

struct TestCertFiles {
  TestCertFiles();
  ~TestCertFiles();
  TestCertFiles(const TestCertFiles&) = delete;
  TestCertFiles& operator=(const TestCertFiles&) = delete;

  std::string dir, cert, key;
};

}  // namespace modelplane::tls

#endif  // MODELPLANE_COMMON_TLS_TEST_CERT_H_
