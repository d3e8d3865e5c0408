// Every rule the loader enforces, one broken file each: the exact message,
// with file, line, column and key path, is what an operator sees.
#include <map>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/config/loader.h"

namespace modelplane::config {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

EnvLookup TestEnv() {
  return [](const std::string& name) -> std::optional<std::string> {
    static const std::map<std::string, std::string> env = {
        {"HOME", "/home/test"}, {"BAD", "two\nlines"}};
    auto it = env.find(name);
    if (it == env.end()) return std::nullopt;
    return it->second;
  };
}

std::vector<std::string> Errors(const std::string& yaml) {
  LoadResult r = LoadConfigText("test.yaml", yaml, TestEnv());
  std::vector<std::string> out;
  for (const Diagnostic& d : r.errors) out.push_back(d.ToString());
  EXPECT_EQ(r.ok(), out.empty());
  return out;
}

struct ErrorCase {
  std::string name;
  std::string yaml;
  std::string want;  // The one error expected.
};

void PrintTo(const ErrorCase& c, std::ostream* os) { *os << c.name; }

class LoaderErrorTest : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(LoaderErrorTest, ReportsExactlyThisError) {
  EXPECT_THAT(Errors(GetParam().yaml), ElementsAre(GetParam().want));
}

INSTANTIATE_TEST_SUITE_P(
    Rules, LoaderErrorTest,
    ::testing::Values(
        ErrorCase{"YamlSyntax", "models:\n  a: [b\n",
                  "test.yaml:3:1: YAML syntax: end of sequence flow not found"},
        ErrorCase{"EmptyFile", "",
                  "test.yaml: the file is empty: it needs a 'models' mapping"},
        // Every model commented out: refused like an empty file (a reload
        // would otherwise stop them all).
        ErrorCase{"ModelsNull", "models:\n#  a:\n#    cmd: x\n",
                  "test.yaml:1:1: models: is empty (null): a config needs a "
                  "'models' mapping (write 'models: {}' to run no models)"},
        ErrorCase{"ModelsTaggedNull", "models: !!null\n",
                  "test.yaml:1:1: models: is empty (null): a config needs a "
                  "'models' mapping (write 'models: {}' to run no models)"},
        ErrorCase{"ModelsMissing", "healthCheckTimeout: 5\n",
                  "test.yaml: models: missing: a config needs a 'models' "
                  "mapping (write 'models: {}' to run no models)"},
        ErrorCase{"NotAMapping", "- a\n- b\n",
                  "test.yaml:1:1: the file must be a mapping of settings, not "
                  "a list"},
        ErrorCase{"DuplicateKey",
                  "models:\n  a:\n    cmd: x\n  a:\n    cmd: y\n",
                  "test.yaml:4:3: mapping key \"a\" already defined"},
        ErrorCase{"ModelsNotAMapping", "models: [a, b]\n",
                  "test.yaml:1:9: models: must be a mapping of model id to "
                  "settings, not a list"},
        ErrorCase{"ModelNotAMapping", "models:\n  a: run-it\n",
                  "test.yaml:2:6: models.a: must be a mapping with at least "
                  "'cmd', not a scalar"},
        ErrorCase{"MissingCmd",
                  "models:\n  a:\n    proxy: http://127.0.0.1:9000\n",
                  "test.yaml:2:3: models.a: missing required key 'cmd'"},
        ErrorCase{"CmdWrongType",
                  "models:\n  a:\n    cmd: [x, y]\n    proxy: http://h:1\n",
                  "test.yaml:3:10: models.a.cmd: must be a string, not a list"},
        ErrorCase{"EmptyCmdAfterMacros",
                  "macros:\n  e: \"\"\nmodels:\n  a:\n    cmd: ${e}\n"
                  "    proxy: http://h:1\n",
                  "test.yaml:5:10: models.a.cmd: is empty after macro "
                  "expansion"},
        ErrorCase{"UnterminatedQuoteInCmd",
                  "models:\n  a:\n    cmd: run 'x\n    proxy: http://h:1\n",
                  "test.yaml:3:10: models.a.cmd: unterminated single quote"},
        ErrorCase{"WrongTypeTtl",
                  "models:\n  a:\n    cmd: x ${PORT}\n    ttl: soon\n",
                  "test.yaml:4:10: models.a.ttl: must be a number of seconds, "
                  "not \"soon\""},
        ErrorCase{"WrongTypeBool",
                  "models:\n  a:\n    cmd: x ${PORT}\n    unlisted: maybe\n",
                  "test.yaml:4:15: models.a.unlisted: must be true or false, "
                  "not \"maybe\""},
        ErrorCase{
            "WrongTypeInt",
            "models:\n  a:\n    cmd: x ${PORT}\n    concurrencyLimit: 2.5\n",
            "test.yaml:4:23: models.a.concurrencyLimit: must be an "
            "integer, not \"2.5\""},
        ErrorCase{"ActivityKeptOutOfRange",
                  "metricsMaxInMemory: 0\nmodels: {}\n",
                  "test.yaml:1:21: metricsMaxInMemory: must be between 1 and "
                  "1000000"},
        ErrorCase{"StartupProfileUnknown",
                  "hooks: {on_startup: {profile: nope}}\nmodels: {}\n",
                  "test.yaml:1:31: hooks.on_startup.profile: 'nope' is not a "
                  "profile"},
        ErrorCase{"CapabilitiesBadModality",
                  "models:\n  a:\n    cmd: x ${PORT}\n"
                  "    capabilities: {in: [text, video]}\n",
                  "test.yaml:4:31: models.a.capabilities.in[1]: invalid "
                  "modality 'video': text, audio or image"},
        ErrorCase{"CapabilitiesNegativeContext",
                  "models:\n  a:\n    cmd: x ${PORT}\n"
                  "    capabilities: {context: -1}\n",
                  "test.yaml:4:29: models.a.capabilities.context: must not be "
                  "negative"},
        ErrorCase{"StoreNotAMapping", "store: x.db\nmodels: {}\n",
                  "test.yaml:1:8: store: must be a mapping, not a scalar"},
        ErrorCase{"StorePathEmpty", "store: {path: ''}\nmodels: {}\n",
                  "test.yaml:1:15: store.path: must not be empty"},
        ErrorCase{"StoreRowsOutOfRange",
                  "store: {path: a.db, maxRows: 0}\nmodels: {}\n",
                  "test.yaml:1:30: store.maxRows: must be between 1 and "
                  "100000000"},
        ErrorCase{"ReplicasMaxOutOfRange",
                  "models:\n  a:\n    cmd: x ${PORT}\n    replicas: {max: 0}\n",
                  "test.yaml:4:21: models.a.replicas.max: must be between 1 "
                  "and 1000"},
        ErrorCase{"ReplicasNegativeSpillover",
                  "models:\n  a:\n    cmd: x ${PORT}\n"
                  "    replicas: {spilloverAfterMs: -5}\n",
                  "test.yaml:4:34: models.a.replicas.spilloverAfterMs: must "
                  "not be negative"},
        ErrorCase{"ReplicasNotAMapping",
                  "models:\n  a:\n    cmd: x ${PORT}\n    replicas: 3\n",
                  "test.yaml:4:15: models.a.replicas: must be a mapping "
                  "({max: N, spilloverAfterMs: T}), not a scalar"},
        ErrorCase{
            "UnknownMacro",
            "models:\n  a:\n    cmd: run ${nope}\n    proxy: http://h:1\n",
            "test.yaml:3:10: models.a.cmd: unknown macro '${nope}'"},
        ErrorCase{"UnknownMacroInGlobalSetting",
                  "logLevel: ${lvl}\nmodels: {}\n",
                  "test.yaml:1:11: logLevel: unknown macro '${lvl}'"},
        ErrorCase{"MacroForwardReference",
                  "macros:\n  a: \"x-${b}\"\n  b: y\nmodels: {}\n",
                  "test.yaml:2:6: macros.a: macro 'a' uses ${b}, which is "
                  "defined after it (a macro may use only the macros defined "
                  "before it)"},
        ErrorCase{"BadIgnorePath",
                  "upstream:\n  ignorePaths: ['ok$', '(']\nmodels: {}\n",
                  "test.yaml:2:24: upstream.ignorePaths[1]: invalid pattern: "
                  "missing ): ("},
        ErrorCase{"IgnorePathsNotAList",
                  "upstream: {ignorePaths: 3}\nmodels: {}\n",
                  "test.yaml:1:25: upstream.ignorePaths: must be a list of "
                  "strings, not \"3\""},
        ErrorCase{"SelectorUnknownTarget",
                  "selectors:\n  s: {targets: [nope]}\n"
                  "models:\n  a: {cmd: x, proxy: 'http://h:1'}\n",
                  "test.yaml:2:17: selectors.s.targets[0]: unknown model "
                  "'nope'"},
        ErrorCase{"SelectorWarmOnAPeersModel",
                  "peers:\n  r:\n    proxy: http://h:1\n    models: [m]\n"
                  "selectors:\n  s: {strategy: warm, targets: [a, m]}\n"
                  "models:\n  a: {cmd: x, proxy: 'http://h:1'}\n",
                  "test.yaml:6:36: selectors.s.targets[1]: 'm' is a peer's "
                  "model: strategy warm takes local models only"},
        ErrorCase{"SelectorBareNameTwoPeersHave",
                  "peers:\n  r:\n    proxy: http://h:1\n    models: [m]\n"
                  "  q:\n    proxy: http://h:2\n    models: [m]\n"
                  "selectors:\n  s: {targets: [m]}\n"
                  "models:\n  a: {cmd: x, proxy: 'http://h:1'}\n",
                  "test.yaml:9:17: selectors.s.targets[0]: unknown model 'm'"},
        ErrorCase{"SelectorSpilloverTargetTwice",
                  "selectors:\n  s:\n    strategy: spillover\n"
                  "    targets: [a, b]\n"
                  "models:\n  a: {cmd: x, proxy: 'http://h:1', aliases: [b]}\n",
                  "test.yaml:4:18: selectors.s.targets[1]: 'b' is 'a' again: "
                  "spillover targets must differ"},
        ErrorCase{"SelectorSpilloverTargetsSwap",
                  "selectors:\n  s:\n    strategy: spillover\n"
                  "    targets: [a, b]\n"
                  "models:\n  a: {cmd: x, proxy: 'http://h:1'}\n"
                  "  b: {cmd: x, proxy: 'http://h:2'}\n",
                  "test.yaml:2:3: selectors.s.targets: spillover targets must "
                  "share a group with swap: false (as in llama-swap); "
                  "'(default)' swaps them"},
        ErrorCase{"SelectorSpilloverTargetsInTwoGroups",
                  "groups:\n  g1: {swap: false, members: [a]}\n"
                  "  g2: {swap: false, members: [b]}\n"
                  "selectors:\n  s: {strategy: spillover, targets: [a, b]}\n"
                  "models:\n  a: {cmd: x, proxy: 'http://h:1'}\n"
                  "  b: {cmd: x, proxy: 'http://h:2'}\n",
                  "test.yaml:5:3: selectors.s.targets: spillover targets must "
                  "share one group (as in llama-swap), so that they may run "
                  "together"},
        ErrorCase{"SelectorSpilloverTargetsInNoMatrixSet",
                  "matrix:\n  sets: {x: a, y: b}\n"
                  "selectors:\n  s: {strategy: spillover, targets: [a, b]}\n"
                  "models:\n  a: {cmd: x, proxy: 'http://h:1'}\n"
                  "  b: {cmd: x, proxy: 'http://h:2'}\n",
                  "test.yaml:4:3: selectors.s.targets: spillover targets must "
                  "all appear together in one matrix set (as in llama-swap)"},
        ErrorCase{"MatrixVarBadCharacters",
                  "matrix:\n  vars: {a_b: a}\n  sets: {x: a}\n"
                  "models:\n  a: {cmd: x, proxy: 'http://h:1'}\n",
                  "test.yaml:2:10: matrix.vars.a_b: a var is 1 to 32 letters, "
                  "digits, '-' or '.'"},
        ErrorCase{
            "MatrixVarNamesAnAlias",
            "matrix:\n  vars: {v: al}\n  sets: {x: a}\n"
            "models:\n  a: {cmd: x, proxy: 'http://h:1', aliases: [al]}\n",
            "test.yaml:2:13: matrix.vars.v: 'al' is an alias of 'a': a "
            "var names a model id"},
        ErrorCase{"SetParamsByIdKeysResolveToOneName",
                  "models:\n  a:\n    cmd: x ${PORT}\n    filters:\n"
                  "      setParamsByID:\n        a:fast: {top_k: 1}\n"
                  "        ${MODEL_ID}:fast: {top_k: 2}\n",
                  "test.yaml:7:9: models.a.filters.setParamsByID.${MODEL_ID}:"
                  "fast: '${MODEL_ID}:fast' is 'a:fast', a name another key "
                  "already gives"},
        // llama-swap overwrites such a group with its own default one
        // (its members then in no group); refused here instead.
        ErrorCase{"GroupNamedDefault",
                  "groups:\n  (default): {members: [a]}\n"
                  "models:\n  a: {cmd: x, proxy: 'http://h:1'}\n",
                  "test.yaml:2:3: groups.(default): the group id '(default)' "
                  "is reserved"},
        ErrorCase{"ProfileWithoutPins",
                  "profiles:\n  p: {description: none}\n"
                  "models:\n  a: {cmd: x, proxy: 'http://h:1'}\n",
                  "test.yaml:2:3: profiles.p.pins: must pin at least one name"},
        ErrorCase{
            "ProfilePinTakesAPeersModelName",
            "peers:\n  r: {proxy: 'http://h:2', models: [m]}\n"
            "profiles:\n  p: {pins: {r/m: a}}\n"
            "models:\n  a: {cmd: x, proxy: 'http://h:1'}\n",
            "test.yaml:4:14: profiles.p.pins.r/m: 'r/m' is a peer's model "
            "name; a pin may not take it (as in llama-swap)"},
        ErrorCase{"SelectorChained",
                  "selectors:\n  s: {targets: [t]}\n  t: {targets: [a]}\n"
                  "models:\n  a: {cmd: x, proxy: 'http://h:1'}\n",
                  "test.yaml:2:17: selectors.s.targets[0]: 't' is a selector: "
                  "selectors cannot be chained"},
        ErrorCase{"SelectorNamesAModel",
                  "selectors:\n  b: {targets: [a]}\n"
                  "models:\n  a: {cmd: x, proxy: 'http://h:1', aliases: [b]}\n",
                  "test.yaml:2:3: selectors.b: 'b' is already a name of model "
                  "'a'"},
        ErrorCase{"SelectorBadStrategy",
                  "selectors:\n  s: {strategy: random, targets: [a]}\n"
                  "models:\n  a: {cmd: x, proxy: 'http://h:1'}\n",
                  "test.yaml:2:17: selectors.s.strategy: must be pin, warm or "
                  "spillover, not \"random\""},
        ErrorCase{"SelectorSpilloverZero",
                  "selectors:\n  s: {targets: [a], settings: {spillover: 0}}\n"
                  "models:\n  a: {cmd: x, proxy: 'http://h:1'}\n",
                  "test.yaml:2:43: selectors.s.settings.spillover: must be "
                  "between 1 and 1000000"},
        ErrorCase{"SelectorWithoutTargets",
                  "selectors:\n  s: {strategy: pin}\n"
                  "models:\n  a: {cmd: x, proxy: 'http://h:1'}\n",
                  "test.yaml:2:3: selectors.s: missing required key 'targets'"},
        ErrorCase{"PeerKeyWithANewline",
                  "peers:\n  p:\n    proxy: http://h:1\n    models: [m]\n"
                  "    apiKey: \"k\\n\"\nmodels: {}\n",
                  "test.yaml:5:13: peers.p.apiKey: must not contain spaces or "
                  "control characters (a trailing newline from a file?)"},
        ErrorCase{
            "PeerModelHiddenByALocalName",
            "peers:\n  p:\n    proxy: http://h:1\n    models: [m]\n"
            "models:\n  a: {cmd: x, proxy: 'http://h:2', aliases: [p/m]}\n",
            "test.yaml:2:3: peers.p: 'p/m' is also the name of model 'a': "
            "the peer's model could never be reached"},
        ErrorCase{"ProfilePinToNothing",
                  "profiles:\n  p: {pins: {x: nope}}\n"
                  "models:\n  a: {cmd: x, proxy: 'http://h:1'}\n",
                  "test.yaml:2:17: profiles.p.pins.x: unknown model 'nope' (a "
                  "model, a selector or a peer's model; null disables the "
                  "name)"},
        ErrorCase{"LogToStdoutUnknown", "logToStdout: all\nmodels: {}\n",
                  "test.yaml:1:14: logToStdout: must be proxy, upstream, both "
                  "or none, not \"all\""},
        ErrorCase{"MatrixUnknownName",
                  "matrix:\n  sets: {s: 'a & nope'}\n"
                  "models:\n  a: {cmd: x, proxy: 'http://h:1'}\n",
                  "test.yaml:2:13: matrix.sets.s: unknown model or var 'nope'"},
        ErrorCase{
            "MatrixWithGroups",
            "matrix:\n  sets: {s: a}\ngroups:\n  g: {members: [a]}\n"
            "models:\n  a: {cmd: x, proxy: 'http://h:1'}\n",
            "test.yaml:2:3: matrix: cannot be used together with 'groups' "
            "(the matrix decides which models run together)"},
        ErrorCase{"MatrixBadCost",
                  "matrix:\n  evict_costs: {a: 0}\n  sets: {s: a}\n"
                  "models:\n  a: {cmd: x, proxy: 'http://h:1'}\n",
                  "test.yaml:2:20: matrix.evict_costs.a: must be between 1 and "
                  "1000000"},
        ErrorCase{
            "MatrixNoSets",
            "matrix:\n  vars: {x: a}\n"
            "models:\n  a: {cmd: x, proxy: 'http://h:1'}\n",
            "test.yaml:2:3: matrix.sets: must be a mapping of set name to "
            "expression, with at least one"},
        ErrorCase{"PeerWithoutProxy",
                  "peers:\n  p:\n    models: [m]\nmodels: {}\n",
                  "test.yaml:2:3: peers.p: missing required key 'proxy'"},
        ErrorCase{"PeerWithoutModels",
                  "peers:\n  p:\n    proxy: http://h:1\nmodels: {}\n",
                  "test.yaml:2:3: peers.p: missing required key 'models'"},
        ErrorCase{"PeerHttpsWithoutHost",
                  "peers:\n  p:\n    proxy: https://:1\n    models: [m]\n"
                  "models: {}\n",
                  "test.yaml:3:12: peers.p.proxy: must be an http:// or "
                  "https:// URL, not \"https://:1\""},
        ErrorCase{"PeerCaFileUnreadable",
                  "peers:\n  p:\n    proxy: https://h\n    models: [m]\n"
                  "    tls: {caFile: /nonexistent/ca.pem}\nmodels: {}\n",
                  "test.yaml:5:19: peers.p.tls.caFile: cannot read "
                  "/nonexistent/ca.pem"},
        ErrorCase{"PeerIdWithSlash",
                  "peers:\n  a/b:\n    proxy: http://h:1\n    models: [m]\n"
                  "models: {}\n",
                  "test.yaml:2:3: peers.a/b: a peer id must be non-empty and "
                  "without '/' (its models are named <peer>/<model>)"},
        ErrorCase{"PeerNoModels",
                  "peers:\n  p:\n    proxy: http://h:1\n    models: []\n"
                  "models: {}\n",
                  "test.yaml:4:13: peers.p.models: must name at least one "
                  "model"},
        ErrorCase{"MacroSelfReference",
                  "macros:\n  a: \"x-${a}\"\nmodels: {}\n",
                  "test.yaml:2:6: macros.a: macro 'a' refers to itself"},
        ErrorCase{"ModelMacroForwardReference",
                  "models:\n  m:\n    macros:\n      a: ${b}\n      b: c\n"
                  "    cmd: x ${PORT}\n",
                  "test.yaml:4:10: models.m.macros.a: macro 'a' uses ${b}, "
                  "which is defined after it (a macro may use only the macros "
                  "defined before it)"},
        ErrorCase{"MacroReservedName", "macros:\n  PORT: 80\nmodels: {}\n",
                  "test.yaml:2:3: macros.PORT: macro name 'PORT' is reserved "
                  "(PORT, MODEL_ID and PID are set by modelplane)"},
        ErrorCase{"MacroBadName", "macros:\n  \"a b\": 1\nmodels: {}\n",
                  "test.yaml:2:3: macros.a b: macro names use only letters, "
                  "digits, '_' and '-', and are at most 63 characters long"},
        ErrorCase{"MacroNotScalar", "macros:\n  a: [1, 2]\nmodels: {}\n",
                  "test.yaml:2:6: macros.a: a macro's value must be a string, "
                  "number or bool, not a list"},
        ErrorCase{
            "MissingEnv",
            "models:\n  a:\n    cmd: x ${env.NOPE_X}\n    proxy: http://h:1\n",
            "test.yaml:3:10: models.a.cmd: environment variable "
            "'NOPE_X' is not set (used as ${env.NOPE_X})"},
        ErrorCase{"EnvWithNewline", "macros:\n  a: ${env.BAD}\nmodels: {}\n",
                  "test.yaml:2:6: macros.a: environment variable 'BAD' holds "
                  "a newline or NUL, which a config value cannot take"},
        ErrorCase{"DuplicateAlias",
                  "models:\n  a:\n    cmd: x ${PORT}\n    aliases: [fast]\n"
                  "  b:\n    cmd: y ${PORT}\n    aliases:\n      - fast\n",
                  "test.yaml:8:9: models.b.aliases[0]: alias 'fast' is "
                  "already used by model 'a'"},
        ErrorCase{
            "AliasIsAModelId",
            "models:\n  a:\n    cmd: x ${PORT}\n  b:\n    cmd: y ${PORT}\n"
            "    aliases: [c, a]\n",
            "test.yaml:6:18: models.b.aliases[1]: alias 'a' is the id "
            "of model 'a'"},
        ErrorCase{"ModelInTwoGroups",
                  "models:\n  a:\n    cmd: x ${PORT}\ngroups:\n  g1:\n"
                  "    members: [a]\n  g2:\n    members: [a]\n",
                  "test.yaml:8:15: groups.g2.members[0]: model 'a' is already "
                  "a member of group 'g1' (a model is in at most one group)"},
        ErrorCase{"GroupsInBothForms",
                  "models:\n  a:\n    cmd: x ${PORT}\ngroups:\n  g1:\n"
                  "    members: [a]\nrouting:\n  router:\n    use: group\n",
                  "test.yaml:9:5: routing.router: cannot be used together "
                  "with the legacy top-level 'groups' or 'matrix' keys"},
        ErrorCase{"PortInProxyNotCmd",
                  "models:\n  a:\n    cmd: llama-server --port 9000\n"
                  "    proxy: http://127.0.0.1:${PORT}\n",
                  "test.yaml:4:12: models.a.proxy: uses ${PORT} but cmd does "
                  "not (${PORT} is assigned only to models whose cmd uses it)"},
        // llama-swap refuses it too (the default proxy is set before its
        // ${PORT} check), its example's "unlisted-model" included.
        ErrorCase{"DefaultProxyNeedsPort",
                  "models:\n  qwen:\n    cmd: llama-server --port 9000\n",
                  "test.yaml:2:3: models.qwen.proxy: cmd does not use "
                  "${PORT}, so proxy must be set (the default, "
                  "http://localhost:${PORT}, needs it)"},
        ErrorCase{"ProxyNotAUrl",
                  "models:\n  a:\n    cmd: x\n    proxy: localhost:9000\n",
                  "test.yaml:4:12: models.a.proxy: must be an http:// or "
                  "https:// URL, not \"localhost:9000\""},
        ErrorCase{"ProxyHttpsWithoutHost",
                  "models:\n  a:\n    cmd: x\n    proxy: https://:8443\n",
                  "test.yaml:4:12: models.a.proxy: must be an http:// or "
                  "https:// URL, not \"https://:8443\""},
        ErrorCase{"ModelCaFileWithoutCertificate",
                  "models:\n  a:\n    cmd: x\n    proxy: https://gpu:8443\n"
                  "    tls: {caFile: /dev/null}\n",
                  "test.yaml:5:19: models.a.tls.caFile: /dev/null holds no PEM "
                  "certificate"},
        ErrorCase{
            "BadCheckEndpoint",
            "models:\n  a:\n    cmd: x ${PORT}\n    checkEndpoint: health\n",
            "test.yaml:4:20: models.a.checkEndpoint: must be a path "
            "starting with '/', or 'none', not \"health\""},
        ErrorCase{"NegativeUnloadTimeout",
                  "models:\n  a:\n    cmd: x ${PORT}\n    unloadTimeout: -1\n",
                  "test.yaml:4:20: models.a.unloadTimeout: must not be "
                  "negative"},
        ErrorCase{"NegativeUpstreamTimeout",
                  "models:\n  a:\n    cmd: x ${PORT}\n"
                  "    timeouts: {responseHeader: -2}\n",
                  "test.yaml:4:32: models.a.timeouts.responseHeader: must not "
                  "be negative (0 disables it)"},
        ErrorCase{"TimeoutsNotAMapping",
                  "models:\n  a:\n    cmd: x ${PORT}\n    timeouts: 5\n",
                  "test.yaml:4:15: models.a.timeouts: must be a mapping, not "
                  "a scalar"},
        ErrorCase{"NegativeTtl",
                  "models:\n  a:\n    cmd: x ${PORT}\n    ttl: -5\n",
                  "test.yaml:4:10: models.a.ttl: must be 0 (never unload), a "
                  "positive number of seconds, or -1 (use globalTTL)"},
        ErrorCase{"NegativeHealthCheckTimeout",
                  "healthCheckTimeout: -3\nmodels: {}\n",
                  "test.yaml:1:21: healthCheckTimeout: must be positive"},
        ErrorCase{"NegativeGlobalTtl", "globalTTL: -1\nmodels: {}\n",
                  "test.yaml:1:12: globalTTL: must not be negative (0: never)"},
        ErrorCase{"NegativeMaxQueueWait",
                  "models:\n  a:\n    cmd: x ${PORT}\n    maxQueueWait: -2\n",
                  "test.yaml:4:19: models.a.maxQueueWait: must not be "
                  "negative"},
        ErrorCase{
            "InvalidReadyPattern",
            "models:\n  a:\n    cmd: x ${PORT}\n    readyPattern: \"(\"\n",
            "test.yaml:4:19: models.a.readyPattern: invalid regular "
            "expression: missing ): ("},
        ErrorCase{"PidOutsideCmdStop",
                  "models:\n  a:\n    cmd: x ${PORT} --pidfile ${PID}\n",
                  "test.yaml:3:10: models.a.cmd: ${PID} is only available in "
                  "cmdStop and the sleep and wake commands"},
        ErrorCase{"GpuWithoutResources",
                  "models:\n  a:\n    cmd: x ${PORT} --device ${GPU}\n",
                  "test.yaml:3:10: models.a.cmd: ${GPU} is only available in "
                  "cmd and env of a model with `resources`"},
        ErrorCase{"GpuOutsideCmdAndEnv",
                  "models:\n  a:\n    cmd: x ${PORT}\n    resources: {}\n"
                  "    checkEndpoint: /health/${GPU}\n",
                  "test.yaml:5:20: models.a.checkEndpoint: ${GPU} is only "
                  "available in cmd and env of a model with `resources`"},
        ErrorCase{"EnvEntryWithoutEquals",
                  "models:\n  a:\n    cmd: x ${PORT}\n    env: "
                  "[CUDA_VISIBLE_DEVICES]\n",
                  "test.yaml:4:11: models.a.env[0]: must be KEY=value, not "
                  "\"CUDA_VISIBLE_DEVICES\""},
        ErrorCase{"ApiKeyWithSpace", "apiKeys: [\"a b\"]\nmodels: {}\n",
                  "test.yaml:1:11: apiKeys[0]: an API key must be non-empty, "
                  "without spaces"},
        ErrorCase{"StartPortRange", "startPort: 70000\nmodels: {}\n",
                  "test.yaml:1:12: startPort: must be between 1 and 65535"},
        ErrorCase{"ReservedModelId",
                  "models:\n  manager:\n    cmd: x ${PORT}\n",
                  "test.yaml:2:3: models.manager: the model id 'manager' is "
                  "reserved (it names the manager's own log)"},
        ErrorCase{"BadMergeKey",
                  "models:\n  a:\n    <<: 3\n    cmd: x ${PORT}\n",
                  "test.yaml:3:9: a merge key (<<) needs a mapping or a list "
                  "of mappings"},
        ErrorCase{"SetParamsByIdNameClashes",
                  "models:\n  a:\n    cmd: x ${PORT}\n"
                  "  b:\n    cmd: x ${PORT}\n    filters:\n"
                  "      setParamsByID: {a: {t: 1}}\n",
                  "test.yaml:7:23: models.b.filters.setParamsByID.a: alias "
                  "'a' is the id of model 'a'"},
        ErrorCase{"UnknownScheduler",
                  "models: {}\nrouting:\n  scheduler:\n    use: lifo\n",
                  "test.yaml:4:10: routing.scheduler.use: must be 'fifo', not "
                  "\"lifo\""}),
    [](const ::testing::TestParamInfo<ErrorCase>& info) {
      return info.param.name;
    });

TEST(LoaderErrorsTest, ReportsEveryErrorNotOnlyTheFirst) {
  std::vector<std::string> errors = Errors(
      "globalTTL: -1\n"
      "models:\n"
      "  a:\n"
      "    cmd: run ${nope}\n"
      "    proxy: http://h:1\n"
      "  b:\n"
      "    ttl: x\n");
  EXPECT_THAT(errors,
              ElementsAre(HasSubstr("test.yaml:1:12: globalTTL"),
                          HasSubstr("test.yaml:4:10: models.a.cmd: unknown "
                                    "macro"),
                          HasSubstr("test.yaml:6:3: models.b: missing "
                                    "required key 'cmd'")));
}

TEST(LoaderErrorsTest, StatusJoinsErrorsOnePerLine) {
  LoadResult r = LoadConfigText(
      "c.yaml", "globalTTL: -1\nstartPort: 0\nmodels: {}\n", TestEnv());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message(),
            "c.yaml:1:12: globalTTL: must not be negative (0: never)\n"
            "c.yaml:2:12: startPort: must be between 1 and 65535");
}

TEST(LoaderErrorsTest, UnreadableFileIsAnError) {
  LoadResult r = LoadConfigFile("/nonexistent/config.yaml", TestEnv());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.errors.at(0).ToString(),
            "/nonexistent/config.yaml: cannot read the file: No such file or "
            "directory");
}

TEST(LoaderErrorsTest, AliasBombIsRefusedNotExpanded) {
  std::string yaml = "a: &a [x, x, x, x, x, x, x, x, x, x]\n";
  for (char c = 'b'; c <= 'k'; ++c) {
    yaml += std::string(1, c) + ": &" + c + " [";
    for (int i = 0; i < 10; ++i) {
      yaml += std::string(i ? ", " : "") + "*" + static_cast<char>(c - 1);
    }
    yaml += "]\n";
  }
  std::vector<std::string> errors = Errors(yaml);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_THAT(errors[0], HasSubstr("nodes (aliases used too often)"));
}

TEST(LoaderErrorsTest, GarbageNeverCrashes) {
  const char* inputs[] = {
      "\x00\x01\x02",
      "{{{{",
      "models: !!binary xyz",
      "models:\n  a: &x\n    <<: *x\n",
      "[",
      "models:\n  ? [a]\n  : b\n",
      "models:\n  a:\n    cmd: \"\\",
      "%YAML 9.9\n---\n",
      "\t\tmodels:",
      "models:\n  a:\n    cmd: ${",
      "key: ${env.}\n",
  };
  for (const char* input : inputs) {
    LoadResult r = LoadConfigText("g.yaml", input, TestEnv());
    EXPECT_FALSE(r.ok() && r.config->models.size() > 0) << input;
  }
  std::string deep(100000, '[');
  EXPECT_FALSE(LoadConfigText("g.yaml", deep, TestEnv()).ok());
}

// llama-swap's example holds groups and a matrix under routing.router
// settings; the one `use` does not name is ignored, and said so.
TEST(LoaderWarningsTest, TheRouterSettingNotInUseIsIgnoredAndSaidSo) {
  LoadResult r = LoadConfigText(
      "w.yaml",
      "models:\n  a:\n    cmd: x ${PORT}\n"
      "routing:\n  router:\n    settings:\n      groups: {g: {members: [a]}}\n"
      "      matrix: {sets: {s: a}}\n",
      TestEnv());
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_EQ(r.warnings[0].ToString(),
            "w.yaml:8:15: routing.router.settings.matrix: ignored while "
            "routing.router.use is group (the default)");
  EXPECT_EQ(r.config->groups.size(), 1u);
}

// Verdicts llama-swap gives (it loads these): a preload of a name that is
// no model is dropped (said here); `${A:-x}` and `${a.b}` are no macro
// references, only text.
TEST(LoaderWarningsTest, WhatLlamaSwapLoadsLoadsHereToo) {
  LoadResult r =
      LoadConfigText("w.yaml",
                     "models:\n  a:\n    cmd: x ${PORT} --opt ${A:-x} ${a.b}\n"
                     "hooks:\n  on_startup:\n    preload: [a, zzz]\n",
                     TestEnv());
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_EQ(r.warnings[0].ToString(),
            "w.yaml:6:18: hooks.on_startup.preload[1]: 'zzz' is not a model "
            "or an alias; not preloaded");
  EXPECT_THAT(r.config->preload, ElementsAre("a"));
  EXPECT_THAT(r.config->models[0].argv,
              ElementsAre("x", "5800", "--opt", "${A:-x}", "${a.b}"));
}

TEST(LoaderWarningsTest, UnsupportedAndUnknownKeysWarnWithSuggestion) {
  LoadResult r =
      LoadConfigText("w.yaml",
                     "heathCheckTimeout: 30\n"
                     "store:\n  path: x\n  more: y\n"
                     "models:\n"
                     "  a:\n"
                     "    cmd: x ${PORT}\n"
                     "    capabilities: {}\n"
                     "    aliasses: [b]\n"
                     "    zzzzzzzzzz: 1\n"
                     "    filters:\n      setParamsByMatch: {}\n"
                     "    timeouts: {tlsHandshake: 10, keepalive: 0, "
                     "expectContinue: 1}\n",
                     TestEnv());
  ASSERT_TRUE(r.ok()) << r.status();
  std::vector<std::string> warnings;
  for (const Diagnostic& d : r.warnings) warnings.push_back(d.ToString());
  EXPECT_THAT(
      warnings,
      ElementsAre(
          "w.yaml:1:1: heathCheckTimeout: unknown key; ignored (did you mean "
          "'healthCheckTimeout'?)",
          "w.yaml:4:3: store.more: unknown key; ignored",
          "w.yaml:9:5: models.a.aliasses: unknown key; ignored (did you mean "
          "'aliases'?)",
          "w.yaml:10:5: models.a.zzzzzzzzzz: unknown key; ignored",
          "w.yaml:12:7: models.a.filters.setParamsByMatch: llama-swap setting "
          "not supported by modelplane yet; ignored"));
}

TEST(LoaderErrorsTest, MatrixRouterNeedsItsSettings) {
  LoadResult r = LoadConfigText("m.yaml",
                                "models:\n  a:\n    cmd: x ${PORT}\n"
                                "routing:\n  router:\n    use: matrix\n",
                                TestEnv());
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].ToString(),
            "m.yaml:6:10: routing.router.use: is matrix, but "
            "routing.router.settings.matrix is missing");
}

TEST(LoaderWarningsTest, UnknownSchedulerSettingsAreNamed) {
  LoadResult r = LoadConfigText("s.yaml",
                                "models: {}\n"
                                "routing:\n"
                                "  scheduler:\n"
                                "    use: fifo\n"
                                "    settings:\n"
                                "      fifo:\n"
                                "        priorty: {}\n",
                                TestEnv());
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_THAT(r.warnings[0].ToString(),
              HasSubstr("routing.scheduler.settings.fifo.priorty"));
  EXPECT_THAT(r.warnings[0].ToString(), HasSubstr("priority"));
}

}  // namespace
}  // namespace modelplane::config
