// Channel credentials for talking to modelmanager: cleartext, or TLS (the
// manager's --tls-cert) with an optional client certificate (its
// --tls-client-ca, mTLS). Shared by mpctl and modelproxy.
//
//   absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> c =
//       client::MakeCredentials({.ca = "/etc/modelplane/ca.pem"});
#ifndef MODELPLANE_CLIENT_CREDENTIALS_H_
#define MODELPLANE_CLIENT_CREDENTIALS_H_

#include <grpcpp/security/credentials.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace modelplane::client {

struct TlsFiles {
  std::string ca;    // PEM roots that sign the manager's certificate.
  std::string cert;  // A client certificate (mTLS), with its key.
  std::string key;
  // Any file named (a key alone too: MakeCredentials then says what is
  // missing instead of falling back to cleartext).
  bool enabled() const { return !ca.empty() || !cert.empty() || !key.empty(); }
};

// The bearer token in `path` (whitespace around it stripped). Errors name
// the file: unreadable, or holding no token.
absl::StatusOr<std::string> ReadTokenFile(const std::string& path);

// Insecure credentials when no file is named; TLS otherwise (no `ca`: the
// system's roots). Errors name the file that could not be read, or a
// certificate without its key.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeCredentials(
    const TlsFiles& files);

}  // namespace modelplane::client

#endif  // MODELPLANE_CLIENT_CREDENTIALS_H_
