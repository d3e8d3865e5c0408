// Checks the shape of the modelplane.v1 API contract (model_manager.proto):
// the RPCs and their streaming kinds, the enum values and oneof members that
// clients switch on, and that every message survives a wire round trip with
// every field set.

#include <algorithm>
#include <cstdint>
#include <memory>
#include <ostream>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "modelplane/v1/model_manager.grpc.pb.h"
#include "modelplane/v1/model_manager.pb.h"

namespace modelplane::v1 {
namespace {

using ::google::protobuf::Descriptor;
using ::google::protobuf::EnumDescriptor;
using ::google::protobuf::FieldDescriptor;
using ::google::protobuf::FileDescriptor;
using ::google::protobuf::Message;
using ::google::protobuf::MessageFactory;
using ::google::protobuf::OneofDescriptor;
using ::google::protobuf::Reflection;
using ::google::protobuf::ServiceDescriptor;
using ::google::protobuf::util::MessageDifferencer;

using Names = std::set<std::string>;

// Messages nested deeper than this are left empty by the filler, which bounds
// the recursion through google.protobuf.Struct and Value.
constexpr int kMaxDepth = 5;

const FileDescriptor& ProtoFile() { return *Model::descriptor()->file(); }

// The shape of one RPC as a client sees it.
struct MethodShape {
  std::string name;
  std::string input;
  std::string output;
  bool client_streaming;
  bool server_streaming;
};

auto Tie(const MethodShape& m) {
  return std::tie(m.name, m.input, m.output, m.client_streaming,
                  m.server_streaming);
}

bool operator==(const MethodShape& a, const MethodShape& b) {
  return Tie(a) == Tie(b);
}

bool operator<(const MethodShape& a, const MethodShape& b) {
  return Tie(a) < Tie(b);
}

void PrintTo(const MethodShape& m, std::ostream* os) {
  *os << m.name << "(" << (m.client_streaming ? "stream " : "") << m.input
      << ") returns (" << (m.server_streaming ? "stream " : "") << m.output
      << ")";
}

Names EnumValueNames(const EnumDescriptor& e) {
  Names names;
  for (int i = 0; i < e.value_count(); ++i) names.insert(e.value(i)->name());
  return names;
}

Names FieldNames(const Descriptor& d) {
  Names names;
  for (int i = 0; i < d.field_count(); ++i) names.insert(d.field(i)->name());
  return names;
}

Names OneofMemberNames(const OneofDescriptor& o) {
  Names names;
  for (int i = 0; i < o.field_count(); ++i) names.insert(o.field(i)->name());
  return names;
}

// Every message type declared in the file, nested ones included, except the
// synthetic map-entry types (they are covered through their map fields).
void CollectMessages(const Descriptor& d, std::vector<const Descriptor*>* out) {
  if (d.options().map_entry()) return;
  out->push_back(&d);
  for (int i = 0; i < d.nested_type_count(); ++i) {
    CollectMessages(*d.nested_type(i), out);
  }
}

std::vector<const Descriptor*> AllMessages(const FileDescriptor& file) {
  std::vector<const Descriptor*> all;
  for (int i = 0; i < file.message_type_count(); ++i) {
    CollectMessages(*file.message_type(i), &all);
  }
  return all;
}

// How many variants it takes to set every member of every oneof once. Real
// oneofs come before the synthetic ones of proto3 `optional` fields.
int VariantCount(const Descriptor& d) {
  int count = 1;
  for (int i = 0; i < d.real_oneof_decl_count(); ++i) {
    count = std::max(count, d.oneof_decl(i)->field_count());
  }
  return count;
}

// Fills messages generically through reflection: every singular field gets a
// non-default value, every repeated (and map) field two distinct elements.
// Each real oneof gets exactly one member, chosen by the variant number.
class Filler {
 public:
  // `depth` is the nesting level of `message`; it must be below kMaxDepth.
  void Fill(Message& message, int variant, int depth) {
    const Descriptor& d = *message.GetDescriptor();
    for (int i = 0; i < d.field_count(); ++i) {
      const FieldDescriptor& field = *d.field(i);
      const OneofDescriptor* oneof = field.real_containing_oneof();
      if (oneof != nullptr &&
          oneof->field(variant % oneof->field_count()) != &field) {
        continue;
      }
      if (field.is_repeated()) {
        // Past the depth bound, repeated messages (maps included) stay empty.
        if (field.cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE &&
            depth + 1 >= kMaxDepth) {
          continue;
        }
        AddValue(message, field, depth);
        AddValue(message, field, depth);
      } else {
        SetValue(message, field, depth);
      }
    }
  }

 private:
  // The nested variant rotates so that nested oneofs (google.protobuf.Value)
  // take different members across elements.
  void FillNested(Message& message, int depth) {
    if (depth < kMaxDepth) Fill(message, next_++, depth);
  }

  const google::protobuf::EnumValueDescriptor* NonZeroEnumValue(
      const FieldDescriptor& field) {
    const EnumDescriptor& e = *field.enum_type();
    for (int i = 0; i < e.value_count(); ++i) {
      if (e.value(i)->number() != 0) return e.value(i);
    }
    // Only google.protobuf.NullValue gets here; it lives in a oneof, so its
    // zero value still has presence.
    return e.value(0);
  }

  std::string NextString() { return "v" + std::to_string(next_++); }

  std::string NextBytes() {
    return std::string("\0\xff", 2) + std::to_string(next_++);
  }

  void SetValue(Message& message, const FieldDescriptor& field, int depth) {
    const Reflection& r = *message.GetReflection();
    const int n = ++next_;
    switch (field.cpp_type()) {
      case FieldDescriptor::CPPTYPE_INT32:
        r.SetInt32(&message, &field, -n);
        break;
      case FieldDescriptor::CPPTYPE_INT64:
        r.SetInt64(&message, &field, (int64_t{1} << 40) + n);
        break;
      case FieldDescriptor::CPPTYPE_UINT32:
        r.SetUInt32(&message, &field, static_cast<uint32_t>(n));
        break;
      case FieldDescriptor::CPPTYPE_UINT64:
        r.SetUInt64(&message, &field, (uint64_t{1} << 40) + n);
        break;
      case FieldDescriptor::CPPTYPE_DOUBLE:
        r.SetDouble(&message, &field, n + 0.5);
        break;
      case FieldDescriptor::CPPTYPE_FLOAT:
        r.SetFloat(&message, &field, n + 0.5f);
        break;
      case FieldDescriptor::CPPTYPE_BOOL:
        r.SetBool(&message, &field, true);
        break;
      case FieldDescriptor::CPPTYPE_ENUM:
        r.SetEnum(&message, &field, NonZeroEnumValue(field));
        break;
      case FieldDescriptor::CPPTYPE_STRING:
        r.SetString(&message, &field,
                    field.type() == FieldDescriptor::TYPE_BYTES ? NextBytes()
                                                                : NextString());
        break;
      case FieldDescriptor::CPPTYPE_MESSAGE:
        // Mutating the field gives it presence even if it stays empty.
        FillNested(*r.MutableMessage(&message, &field), depth + 1);
        break;
    }
  }

  void AddValue(Message& message, const FieldDescriptor& field, int depth) {
    const Reflection& r = *message.GetReflection();
    const int n = ++next_;
    switch (field.cpp_type()) {
      case FieldDescriptor::CPPTYPE_INT32:
        r.AddInt32(&message, &field, -n);
        break;
      case FieldDescriptor::CPPTYPE_INT64:
        r.AddInt64(&message, &field, (int64_t{1} << 40) + n);
        break;
      case FieldDescriptor::CPPTYPE_UINT32:
        r.AddUInt32(&message, &field, static_cast<uint32_t>(n));
        break;
      case FieldDescriptor::CPPTYPE_UINT64:
        r.AddUInt64(&message, &field, (uint64_t{1} << 40) + n);
        break;
      case FieldDescriptor::CPPTYPE_DOUBLE:
        r.AddDouble(&message, &field, n + 0.5);
        break;
      case FieldDescriptor::CPPTYPE_FLOAT:
        r.AddFloat(&message, &field, n + 0.5f);
        break;
      case FieldDescriptor::CPPTYPE_BOOL:
        r.AddBool(&message, &field, true);
        break;
      case FieldDescriptor::CPPTYPE_ENUM:
        r.AddEnum(&message, &field, NonZeroEnumValue(field));
        break;
      case FieldDescriptor::CPPTYPE_STRING:
        r.AddString(&message, &field,
                    field.type() == FieldDescriptor::TYPE_BYTES ? NextBytes()
                                                                : NextString());
        break;
      case FieldDescriptor::CPPTYPE_MESSAGE:
        // Map entries are filled like any message; their string keys come
        // from the counter, so the two entries never collide.
        Fill(*r.AddMessage(&message, &field), next_++, depth + 1);
        break;
    }
  }

  int next_ = 0;
};

// Asserts that the filler reached every field of `message` (and, within the
// depth bound, of its nested messages), and chose oneof members by `variant`.
void ExpectEveryFieldSet(const Message& message, int variant, int depth,
                         const std::string& path) {
  if (depth >= kMaxDepth) return;
  const Descriptor& d = *message.GetDescriptor();
  const Reflection& r = *message.GetReflection();
  for (int i = 0; i < d.real_oneof_decl_count(); ++i) {
    const OneofDescriptor& oneof = *d.oneof_decl(i);
    const FieldDescriptor* set = r.GetOneofFieldDescriptor(message, &oneof);
    ASSERT_NE(set, nullptr) << path << "." << oneof.name();
    if (depth == 0) {
      EXPECT_EQ(set, oneof.field(variant % oneof.field_count()))
          << path << "." << oneof.name();
    }
  }
  for (int i = 0; i < d.field_count(); ++i) {
    const FieldDescriptor& field = *d.field(i);
    const std::string field_path = path + "." + field.name();
    if (field.is_repeated()) {
      const bool nested_past_bound =
          field.cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE &&
          depth + 1 >= kMaxDepth;
      if (!nested_past_bound) {
        EXPECT_EQ(r.FieldSize(message, &field), 2) << field_path;
      }
    } else if (field.real_containing_oneof() == nullptr) {
      EXPECT_TRUE(r.HasField(message, &field)) << field_path;
    }
    if (field.cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE) continue;
    if (field.is_repeated()) {
      for (int j = 0; j < r.FieldSize(message, &field); ++j) {
        ExpectEveryFieldSet(r.GetRepeatedMessage(message, &field, j), 0,
                            depth + 1, field_path);
      }
    } else if (r.HasField(message, &field)) {
      ExpectEveryFieldSet(r.GetMessage(message, &field), 0, depth + 1,
                          field_path);
    }
  }
}

// Asserts that `got` has exactly the fields `want` has, recursively. Map
// fields are compared by size only: their order is not preserved on the wire
// (MessageDifferencer compares their contents).
void ExpectSamePresence(const Message& want, const Message& got,
                        const std::string& path) {
  const Descriptor& d = *want.GetDescriptor();
  const Reflection& r = *want.GetReflection();
  for (int i = 0; i < d.field_count(); ++i) {
    const FieldDescriptor& field = *d.field(i);
    const std::string field_path = path + "." + field.name();
    if (field.is_repeated()) {
      ASSERT_EQ(r.FieldSize(got, &field), r.FieldSize(want, &field))
          << field_path;
      if (field.cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE ||
          field.is_map()) {
        continue;
      }
      for (int j = 0; j < r.FieldSize(want, &field); ++j) {
        ExpectSamePresence(r.GetRepeatedMessage(want, &field, j),
                           r.GetRepeatedMessage(got, &field, j), field_path);
      }
    } else {
      ASSERT_EQ(r.HasField(got, &field), r.HasField(want, &field))
          << field_path;
      if (field.cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE &&
          r.HasField(want, &field)) {
        ExpectSamePresence(r.GetMessage(want, &field),
                           r.GetMessage(got, &field), field_path);
      }
    }
  }
}

// Succeeds if `all` holds every name of `wanted`; otherwise names the missing.
testing::AssertionResult HasAll(const Names& all, const Names& wanted) {
  std::string missing;
  for (const std::string& name : wanted) {
    if (all.count(name) == 0) missing += " " + name;
  }
  if (missing.empty()) return testing::AssertionSuccess();
  return testing::AssertionFailure() << "missing:" << missing;
}

TEST(ModelManagerProtoTest, ServiceListsEveryRpc) {
  EXPECT_STREQ(ModelManager::service_full_name(), "modelplane.v1.ModelManager");
  const ServiceDescriptor* service =
      ProtoFile().FindServiceByName("ModelManager");
  ASSERT_NE(service, nullptr);

  const auto rpc = [](const char* name, const char* input, const char* output,
                      bool client_streaming, bool server_streaming) {
    const std::string package = "modelplane.v1.";
    return MethodShape{name, package + input, package + output,
                       client_streaming, server_streaming};
  };
  const std::set<MethodShape> expected = {
      rpc("Start", "StartRequest", "Model", false, false),
      rpc("Stop", "StopRequest", "Model", false, false),
      rpc("WaitReady", "WaitReadyRequest", "Model", false, false),
      rpc("Watch", "WatchRequest", "WatchEvent", false, true),
      rpc("ListModels", "ListModelsRequest", "ListModelsResponse", false,
          false),
      rpc("GetModel", "GetModelRequest", "Model", false, false),
      rpc("PlanStart", "PlanStartRequest", "PlanStartResponse", false, false),
      rpc("Drain", "DrainRequest", "DrainResponse", false, false),
      rpc("StreamLogs", "StreamLogsRequest", "LogChunk", false, true),
      rpc("StopAll", "StopAllRequest", "StopAllResponse", false, false),
      rpc("ReloadConfig", "ReloadConfigRequest", "ReloadConfigResponse", false,
          false),
      rpc("Acquire", "AcquireRequest", "AcquireResponse", true, true),
  };

  std::set<MethodShape> actual;
  for (int i = 0; i < service->method_count(); ++i) {
    const auto* method = service->method(i);
    actual.insert({method->name(), method->input_type()->full_name(),
                   method->output_type()->full_name(),
                   method->client_streaming(), method->server_streaming()});
  }
  EXPECT_EQ(service->method_count(), 12);
  EXPECT_EQ(actual, expected);
}

TEST(ModelManagerProtoTest, EveryMessageRoundTrips) {
  const std::vector<const Descriptor*> messages = AllMessages(ProtoFile());
  Names names;
  for (const Descriptor* d : messages) names.insert(d->full_name());
  // Guards the iteration itself: nested types must be visited too.
  ASSERT_TRUE(HasAll(names, {"modelplane.v1.Model", "modelplane.v1.Failure",
                             "modelplane.v1.AcquireRequest.Hello",
                             "modelplane.v1.AcquireResponse.Granted"}));

  for (const Descriptor* d : messages) {
    for (int variant = 0; variant < VariantCount(*d); ++variant) {
      SCOPED_TRACE(d->full_name() + " variant " + std::to_string(variant));
      const Message* prototype =
          MessageFactory::generated_factory()->GetPrototype(d);
      ASSERT_NE(prototype, nullptr);
      std::unique_ptr<Message> original(prototype->New());
      Filler().Fill(*original, variant, /*depth=*/0);
      ExpectEveryFieldSet(*original, variant, /*depth=*/0, d->name());

      std::string wire;
      ASSERT_TRUE(original->SerializeToString(&wire));
      std::unique_ptr<Message> parsed(prototype->New());
      ASSERT_TRUE(parsed->ParseFromString(wire));

      std::string diff;
      MessageDifferencer differencer;
      differencer.ReportDifferencesToString(&diff);
      EXPECT_TRUE(differencer.Compare(*original, *parsed)) << diff;
      EXPECT_TRUE(MessageDifferencer::Equals(*original, *parsed));
      ExpectSamePresence(*original, *parsed, d->name());
    }
  }
}

TEST(ModelManagerProtoTest, ModelStateHasEveryLifecycleState) {
  EXPECT_EQ(MODEL_STATE_UNSPECIFIED, 0);
  EXPECT_EQ(EnumValueNames(*ModelState_descriptor()),
            Names({"MODEL_STATE_UNSPECIFIED", "MODEL_STATE_STOPPED",
                   "MODEL_STATE_STARTING", "MODEL_STATE_READY",
                   "MODEL_STATE_STOPPING", "MODEL_STATE_FAILED",
                   "MODEL_STATE_SHUTDOWN", "MODEL_STATE_SLEEPING"}));
}

TEST(ModelManagerProtoTest, FailureReasonHasEveryType) {
  EXPECT_EQ(FAILURE_REASON_UNSPECIFIED, 0);
  EXPECT_EQ(
      EnumValueNames(*FailureReason_descriptor()),
      Names({"FAILURE_REASON_UNSPECIFIED", "FAILURE_REASON_SPAWN_ERROR",
             "FAILURE_REASON_EXITED_DURING_START",
             "FAILURE_REASON_HEALTH_CHECK_TIMEOUT", "FAILURE_REASON_CRASHED",
             "FAILURE_REASON_ABORTED", "FAILURE_REASON_WAKE_FAILED"}));
}

TEST(ModelManagerProtoTest, FailureCarriesEitherExitCodeOrSignal) {
  const OneofDescriptor* exit_status =
      Failure::descriptor()->FindOneofByName("exit_status");
  ASSERT_NE(exit_status, nullptr);
  EXPECT_EQ(OneofMemberNames(*exit_status), Names({"exit_code", "signal"}));

  Failure failure;
  failure.set_exit_code(1);
  failure.set_signal(9);
  EXPECT_FALSE(failure.has_exit_code());
  EXPECT_EQ(failure.exit_status_case(), Failure::kSignal);
}

TEST(ModelManagerProtoTest, ModelCarriesEveryDesignField) {
  const Descriptor& model = *Model::descriptor();
  EXPECT_TRUE(
      HasAll(FieldNames(model),
             {"id", "name", "description", "aliases", "group", "unlisted",
              "state", "upstream_url", "pid", "state_since", "active_leases",
              "lease_holders", "queued_requests", "last_used", "ttl",
              "revision", "failure", "metadata", "concurrency_limit"}));
  EXPECT_EQ(model.FindFieldByName("revision")->type(),
            FieldDescriptor::TYPE_UINT64);
  EXPECT_EQ(model.FindFieldByName("ttl")->message_type()->full_name(),
            "google.protobuf.Duration");
  EXPECT_EQ(model.FindFieldByName("last_used")->message_type()->full_name(),
            "google.protobuf.Timestamp");
  EXPECT_EQ(model.FindFieldByName("metadata")->message_type()->full_name(),
            "google.protobuf.Struct");
}

TEST(ModelManagerProtoTest, WatchEventTypes) {
  EXPECT_EQ(WatchEvent::TYPE_UNSPECIFIED, 0);
  EXPECT_EQ(
      EnumValueNames(*WatchEvent::Type_descriptor()),
      Names({"TYPE_UNSPECIFIED", "TYPE_ADDED", "TYPE_MODIFIED", "TYPE_DELETED",
             "TYPE_BOOKMARK", "TYPE_SETTINGS", "TYPE_GPUS"}));
  EXPECT_EQ(WatchEvent::descriptor()->FindFieldByName("model")->message_type(),
            Model::descriptor());
  EXPECT_EQ(
      WatchEvent::descriptor()->FindFieldByName("settings")->message_type(),
      DataPlaneSettings::descriptor());
  const FieldDescriptor* gpus =
      WatchEvent::descriptor()->FindFieldByName("gpus");
  ASSERT_NE(gpus, nullptr);
  EXPECT_TRUE(gpus->is_repeated());
  EXPECT_EQ(gpus->message_type(), Gpu::descriptor());
}

TEST(ModelManagerProtoTest, AcquireRequestCarriesEveryClientMessage) {
  const OneofDescriptor* kind =
      AcquireRequest::descriptor()->FindOneofByName("kind");
  ASSERT_NE(kind, nullptr);
  EXPECT_EQ(OneofMemberNames(*kind), Names({"acquire", "release", "hello"}));
  EXPECT_EQ(FieldNames(*AcquireRequest::Acquire::descriptor()),
            Names({"model", "priority", "request_id"}));
  EXPECT_EQ(FieldNames(*AcquireRequest::Release::descriptor()),
            Names({"model", "lease_id", "last_used"}));
  EXPECT_EQ(FieldNames(*AcquireRequest::Hello::descriptor()),
            Names({"client_id"}));
}

TEST(ModelManagerProtoTest, AcquireResponseCarriesEveryServerMessage) {
  const OneofDescriptor* kind =
      AcquireResponse::descriptor()->FindOneofByName("kind");
  ASSERT_NE(kind, nullptr);
  EXPECT_EQ(OneofMemberNames(*kind),
            Names({"queued", "starting", "granted", "revoked", "failed"}));
  EXPECT_TRUE(HasAll(FieldNames(*AcquireResponse::Granted::descriptor()),
                     {"model", "request_id", "lease_id", "upstream_url"}));
  EXPECT_TRUE(HasAll(FieldNames(*AcquireResponse::Revoked::descriptor()),
                     {"model", "lease_id", "reason"}));
  EXPECT_EQ(AcquireResponse::Failed::descriptor()
                ->FindFieldByName("failure")
                ->message_type(),
            Failure::descriptor());
}

}  // namespace
}  // namespace modelplane::v1
