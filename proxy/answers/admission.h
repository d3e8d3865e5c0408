// Who may do what, decided on a request's head: its API key (apiKeys), and
// whether it may change what runs (/unload, the active profile).
#ifndef MODELPLANE_PROXY_ANSWERS_ADMISSION_H_
#define MODELPLANE_PROXY_ANSWERS_ADMISSION_H_

#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "proxy/http1/codec.h"

namespace modelplane::proxy::answers {

// Whether `headers` carry one of `keys` (SHA-256 hex; empty: none needed)
// as llama-swap takes it: `Authorization: Bearer` (the scheme in any case),
// the password of `Basic`, or `x-api-key`. When they do, the key headers
// are removed (keys are the proxy's business, never the upstream's).
bool Authorized(const absl::flat_hash_set<std::string>& keys,
                http1::Headers* headers);

// Whether a request may stop models or switch the profile (else
// PermissionDenied, for a 403): not from another site (its Origin names
// another host than its Host), and, on a loopback proxy without apiKeys,
// only for a Host that is an address or localhost (a DNS-rebinding page's
// Host is its own name).
absl::Status MayChangeState(const http1::Headers& headers,
                            bool loopback_listener, bool keys_required);

}  // namespace modelplane::proxy::answers

#endif  // MODELPLANE_PROXY_ANSWERS_ADMISSION_H_
