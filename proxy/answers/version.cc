// GET /api/version: llama-swap's shape, {"version","commit","build_date"}.
#include "common/version.h"

#include "absl/strings/str_cat.h"
#include "common/json_string.h"
#include "proxy/answers/answer.h"

namespace modelplane::proxy::answers {

void Version(Responder* r) {
  r->Respond(200, "application/json",
             absl::StrCat(R"({"version":)", JsonString(modelplane::Version()),
                          R"(,"commit":)", JsonString(Commit()),
                          R"(,"build_date":)", JsonString(BuildDate()), "}"));
}

}  // namespace modelplane::proxy::answers
