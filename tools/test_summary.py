#!/usr/bin/python3
"""Counts test cases from one `bazel test` run and prints `N passed, N failed`.

Reads the Build Event Protocol JSON file of the run (so stale test.xml files
from earlier runs are never counted), then each test target's test.xml:
gtest and the Python runner write one <testcase> per case. A target that
failed without a failing case in its XML (crash, timeout, build failure)
counts as one failed case, and so does a test target that never ran.

Usage: test_summary.py BEP_JSON [--all-tests LABELS_FILE] [--extra NAME=pass|fail]...
"""

import argparse
import json
import sys
import urllib.parse
import xml.etree.ElementTree as ET


def count_xml(path):
    """Returns (passed, failed, skipped, failed_names) for one test.xml."""
    passed = failed = skipped = 0
    names = []
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    for case in root.iter("testcase"):
        tags = {child.tag for child in case}
        if "failure" in tags or "error" in tags:
            failed += 1
            names.append("%s.%s" % (case.get("classname", ""), case.get("name", "")))
        elif ("skipped" in tags or case.get("status") == "notrun"
              or case.get("result") == "skipped"):
            skipped += 1
        else:
            passed += 1
    return passed, failed, skipped, names


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("bep")
    parser.add_argument("--all-tests")
    parser.add_argument("--extra", action="append", default=[])
    args = parser.parse_args()

    results = {}  # label -> (status, xml path)
    try:
        with open(args.bep) as f:
            for line in f:
                event = json.loads(line)
                tr = event.get("id", {}).get("testResult")
                if not tr:
                    continue
                body = event.get("testResult", {})
                xml = None
                for out in body.get("testActionOutput", []):
                    if out.get("name") == "test.xml":
                        xml = urllib.parse.urlparse(out["uri"]).path
                results.setdefault(tr["label"], []).append((body.get("status"), xml))
    except OSError:
        pass

    passed = failed = skipped = 0
    failures = []
    for label, runs in sorted(results.items()):
        for status, xml in runs:
            counts = count_xml(xml) if xml else None
            p, f, s, names = counts if counts else (0, 0, 0, [])
            if status != "PASSED" and f == 0:
                f = 1
                names = ["(%s)" % status]
            passed, failed, skipped = passed + p, failed + f, skipped + s
            failures += ["%s %s" % (label, n) for n in names]

    if args.all_tests:
        with open(args.all_tests) as f:
            for label in f.read().split():
                if label not in results:
                    failed += 1
                    failures.append("%s (did not run: build failed)" % label)

    for extra in args.extra:
        name, _, verdict = extra.partition("=")
        if verdict == "pass":
            passed += 1
        else:
            failed += 1
            failures.append(name)

    for f in failures:
        print("FAILED: %s" % f)
    line = "%d passed, %d failed" % (passed, failed)
    if skipped:
        line += ", %d skipped" % skipped
    print(line)
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
