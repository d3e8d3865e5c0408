#include "common/tls/test_cert.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

namespace modelplane::tls {

TestCertFiles::TestCertFiles() {
  const char* tmp = getenv("TEST_TMPDIR");
  std::string templ =
      std::string(tmp != nullptr ? tmp : "/tmp") + "/test_cert.XXXXXX";
  dir = mkdtemp(templ.data());
  cert = dir + "/cert.pem";
  key = dir + "/key.pem";
  EVP_PKEY* pkey = EVP_EC_gen("P-256");
  X509* x = X509_new();
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), 0);
  X509_gmtime_adj(X509_getm_notAfter(x), 3600);
  X509_set_pubkey(x, pkey);
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("test"), -1,
                             -1, 0);
  X509_set_issuer_name(x, name);
  X509_sign(x, pkey, EVP_sha256());
  FILE* f = fopen(cert.c_str(), "w");
  PEM_write_X509(f, x);
  fclose(f);
  f = fopen(key.c_str(), "w");
  PEM_write_PrivateKey(f, pkey, nullptr, nullptr, 0, nullptr, nullptr);
  fclose(f);
  X509_free(x);
  EVP_PKEY_free(pkey);
}

TestCertFiles::~TestCertFiles() {
  unlink(cert.c_str());
  unlink(key.c_str());
  rmdir(dir.c_str());
}

}  // namespace modelplane::tls
