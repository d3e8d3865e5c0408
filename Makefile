SHELL := /bin/bash
# modelplane: `make demo`, `make run`, `make test`, `make bench`, `make deb`, `make fuzz` and `make fmt` (README.md). Every target installs what
# it needs first (tools/bootstrap.sh is quick when everything is present).
BAZEL ?= bazel
BUILD_DIR := .build
BEP := $(BUILD_DIR)/test_bep.json
TEST_LABELS := $(BUILD_DIR)/test_labels.txt
SUMMARY := $(BUILD_DIR)/test_summary.txt
BEP_SAN := $(BUILD_DIR)/test_bep_sanitize.json
SUMMARY_SAN := $(BUILD_DIR)/test_summary_sanitize.txt
SAN_DIR := $(abspath $(BUILD_DIR))/sanitizers
FORMAT_SOURCES = $(shell git ls-files '*.cc' '*.h' '*.proto' 2>/dev/null)

.PHONY: all bootstrap build demo run deb test test-asan bench fuzz fmt fmt-check

all: build

# Everything every target needs (`tools/bootstrap.sh all`); each target
# below installs only its own part.
bootstrap:
	@tools/bootstrap.sh all

build:
	@tools/bootstrap.sh build
	$(BAZEL) build //...

# The whole stack on fake models until Ctrl-C (tools/demo.sh); `make run
# CONFIG=path/to/config.yaml [LISTEN=HOST:PORT]` runs your own config with
# the one-process `modelplane` binary (tools/run.sh).
demo:
	@tools/bootstrap.sh demo
	@BAZEL=$(BAZEL) tools/demo.sh examples/demo.yaml

CONFIG ?=
LISTEN ?= 127.0.0.1:8080
run:
	@tools/bootstrap.sh demo
	@if [ -z "$(CONFIG)" ]; then echo "usage: make run CONFIG=path/to/config.yaml [LISTEN=HOST:PORT]" >&2; exit 2; fi
	@BAZEL=$(BAZEL) tools/run.sh "$(CONFIG)" "$(LISTEN)"

# The Debian package, built with -c opt (deploy/debian), into
# .build/modelplane_<version>_<arch>.deb, and lintian's verdict on it (an
# error or a warning fails the target).
deb:
	@tools/bootstrap.sh deb
	$(BAZEL) build -c opt //deploy/debian:modelplane_deb
	@mkdir -p $(BUILD_DIR)
	@deb=$(BUILD_DIR)/modelplane_$$(tr -d ' \n' <VERSION)_$$(dpkg --print-architecture).deb; \
	install -m 644 bazel-bin/deploy/debian/modelplane.deb $$deb && \
	lintian --fail-on error,warning $$deb 2>/dev/null && echo "deb: $$deb (lintian: no error, no warning)"

# Runs every test, then counts test cases (not targets) from this run's XML
# reports. The last line is `N passed, N failed`; .ci/run repeats it last.
test:
	@tools/bootstrap.sh test
	@mkdir -p $(BUILD_DIR)
	@rm -f $(BEP) $(SUMMARY)
	@fmt=pass; $(MAKE) --no-print-directory fmt-check || fmt=fail; \
	$(BAZEL) query 'tests(//...)' 2>/dev/null >$(TEST_LABELS); \
	$(BAZEL) test //... --keep_going --build_event_json_file=$(BEP); rc=$$?; \
	/usr/bin/python3 tools/test_summary.py $(BEP) --all-tests $(TEST_LABELS) \
	  --extra clang-format=$$fmt | tee $(SUMMARY); \
	sum=$${PIPESTATUS[0]}; [ $$rc -eq 0 ] && [ $$sum -eq 0 ]

# The whole suite again, built with ASan and UBSan (.bazelrc's `sanitize`,
# an output tree of its own). Every process the tests start reports into
# $(SAN_DIR) (not into pipes a test may not read): a report there fails the
# run, and is printed. The last line is `N passed, N failed`.
test-asan:
	@tools/bootstrap.sh test
	@mkdir -p $(BUILD_DIR)
	@rm -rf $(BEP_SAN) $(SUMMARY_SAN) $(SAN_DIR) && mkdir -p $(SAN_DIR)
	@$(BAZEL) query 'tests(//...)' 2>/dev/null >$(TEST_LABELS); \
	$(BAZEL) test --config=sanitize //... --keep_going \
	  --build_event_json_file=$(BEP_SAN) \
	  --test_env=ASAN_OPTIONS=log_path=$(SAN_DIR)/asan \
	  --test_env=UBSAN_OPTIONS=print_stacktrace=1:log_path=$(SAN_DIR)/ubsan; \
	rc=$$?; san=pass; \
	if [ -n "$$(ls -A $(SAN_DIR))" ]; then \
	  san=fail; for f in $(SAN_DIR)/*; do echo "== $$f"; head -c 8000 $$f; done; \
	fi; \
	/usr/bin/python3 tools/test_summary.py $(BEP_SAN) --all-tests $(TEST_LABELS) \
	  --extra sanitizer-reports=$$san | tee $(SUMMARY_SAN); \
	sum=$${PIPESTATUS[0]}; [ $$rc -eq 0 ] && [ $$sum -eq 0 ]

# Coverage-guided fuzzing of the proxy's parsers with clang's libFuzzer
# (tools/fuzz.sh; FUZZ_SECONDS, default 60).
fuzz:
	@tools/bootstrap.sh fuzz
	tools/fuzz.sh

# Benchmarks, each against its peer in the same run (tools/bench/).
bench:
	@tools/bootstrap.sh bench
	$(BAZEL) run -c opt //tools/bench/readiness
	$(BAZEL) run -c opt //tools/bench/control_plane
	$(BAZEL) run -c opt //tools/bench/proxy:codec
	$(BAZEL) run -c opt //tools/bench/proxy
	$(BAZEL) run -c opt //tools/bench/proxy:body
	$(BAZEL) run -c opt //tools/bench/cluster
	$(BAZEL) run -c opt //tools/bench/activity
	$(BAZEL) run -c opt //tools/bench/tls
	$(BAZEL) run -c opt //tools/bench/gpu
	$(BAZEL) run -c opt //tools/bench/gpu:sleep

fmt:
	@tools/bootstrap.sh test
	clang-format -i --style=file $(FORMAT_SOURCES)

fmt-check:
	@out=$$(clang-format --dry-run --style=file $(FORMAT_SOURCES) 2>&1); \
	if [ -n "$$out" ]; then echo "$$out" | head -40; \
	  echo "clang-format: run 'make fmt'"; exit 1; fi
