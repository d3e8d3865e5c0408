// CORS: the answer to a preflight (OPTIONS), permissive as llama-swap's.
#ifndef MODELPLANE_PROXY_ANSWERS_CORS_H_
#define MODELPLANE_PROXY_ANSWERS_CORS_H_

#include "proxy/http1/codec.h"

namespace modelplane::proxy::answers {

// The 204's headers: any origin, the usual methods, and the headers the
// browser asks for reduced to token characters (a header value never
// carries what the client sent verbatim). `origin` set: the exchange
// echoes the request's Origin itself; else `*`.
http1::Headers PreflightHeaders(const http1::Headers& request, bool origin);

}  // namespace modelplane::proxy::answers

#endif  // MODELPLANE_PROXY_ANSWERS_CORS_H_
