"""Runs a unittest module and writes a JUnit XML report where Bazel asks.

Bazel sets XML_OUTPUT_FILE for every test; when a test writes that file, its
cases are what `make test` counts (tools/test_summary.py). Without it, Bazel
writes one case per target. Call `junit.main()` from a test module instead of
`unittest.main()`.
"""

import os
import sys
import time
import unittest
import xml.etree.ElementTree as ET


class _Result(unittest.TextTestResult):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.cases = []  # (test, outcome, detail, seconds)
        self._started = 0.0

    def startTest(self, test):
        self._started = time.monotonic()
        super().startTest(test)

    def _record(self, test, outcome, detail=""):
        self.cases.append((test, outcome, detail, time.monotonic() - self._started))

    def addSuccess(self, test):
        super().addSuccess(test)
        self._record(test, "pass")

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._record(test, "failure", self._exc_info_to_string(err, test))

    def addError(self, test, err):
        super().addError(test, err)
        self._record(test, "error", self._exc_info_to_string(err, test))

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._record(test, "skipped", reason)

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self._record(test, "pass")

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._record(test, "failure", "unexpected success")


def _write_xml(path, result):
    suites = ET.Element("testsuites")
    suite = ET.SubElement(suites, "testsuite", name=os.path.basename(sys.argv[0]),
                          tests=str(len(result.cases)))
    for test, outcome, detail, seconds in result.cases:
        cls = type(test).__name__
        name = getattr(test, "_testMethodName", str(test))
        case = ET.SubElement(suite, "testcase", classname=cls, name=name,
                             time="%.3f" % seconds)
        if outcome in ("failure", "error"):
            ET.SubElement(case, outcome, message=detail.splitlines()[-1] if detail else "").text = detail
        elif outcome == "skipped":
            ET.SubElement(case, "skipped", message=detail)
    ET.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)


def main(module="__main__"):
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[module])
    filter_ = os.environ.get("TESTBRIDGE_TEST_ONLY")  # bazel test --test_filter
    if filter_:
        suite = unittest.TestSuite(
            t for t in _flatten(suite) if filter_ in t.id())
    runner = unittest.TextTestRunner(resultclass=_Result, verbosity=2,
                                     stream=sys.stderr)
    result = runner.run(suite)
    path = os.environ.get("XML_OUTPUT_FILE")
    if path:
        _write_xml(path, result)
    sys.exit(0 if result.wasSuccessful() and result.testsRun > 0 else 1)


def _flatten(suite):
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            yield from _flatten(t)
        else:
            yield t
