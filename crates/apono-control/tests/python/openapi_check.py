"""Checks the control plane's hand-written OpenAPI document with vendor tools.

Usage: openapi_check.py BASE_URL   (the API's token in the APONO_TOKEN environment variable)

1. openapi-spec-validator: the document at BASE_URL/api/v1/openapi.json is valid OpenAPI 3.1.
2. schemathesis: every operation, called with generated valid and invalid input, answers no 5xx,
   and its status code, content type and body conform to the document.

Prints one JSON object on stdout, {"spec": {...}, "schemathesis": {...}, "ok": bool}, and exits
with 0 only when both tools found nothing. The token never appears on a command line (the
schemathesis configuration reads it from the environment).
"""

import json
import re
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import xml.etree.ElementTree as ET

# Deterministic and bounded: derandomized generation (schemathesis then uses no seed and no
# example database), few examples per operation, no shrinking, one worker. No --max-time: with
# it, fuzzing repeats until the budget is spent; the run is bounded by MAX_EXAMPLES instead and
# killed after TIMEOUT seconds.
MAX_EXAMPLES = 25
TIMEOUT = 120
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
    ]
)
PHASES = "examples,coverage,fuzzing"


def check_spec(document):
    from openapi_spec_validator import OpenAPIV31SpecValidator

    # Every error, not only the first; as OpenAPI 3.1 whatever the document claims to be.
    errors = [
        f"{'/'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"[:500]
        for error in OpenAPIV31SpecValidator(document).iter_errors()
    ]
    return {"valid": not errors, "openapi": document.get("openapi"), "errors": errors}


def run_schemathesis(base_url, workdir):
    config = os.path.join(workdir, "schemathesis.toml")
    with open(config, "w", encoding="utf-8") as f:
        f.write('[headers]\nAuthorization = "Bearer ${APONO_TOKEN}"\n')
    junit = os.path.join(workdir, "junit.xml")
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        config,
        "run",
        f"{base_url}/api/v1/openapi.json",
        "--url",
        base_url,
        "--checks",
        CHECKS,
        "--phases",
        PHASES,
        "--max-examples",
        str(MAX_EXAMPLES),
        "--generation-deterministic",
        "--no-shrink",
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--no-color",
        "--report",
        "junit",
        "--report-junit-path",
        junit,
    ]
    started = time.monotonic()
    # In the temporary directory, where schemathesis leaves its .schemathesis cache.
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=TIMEOUT, cwd=workdir
    )
    elapsed = round(time.monotonic() - started, 1)
    failures = []
    operations = 0
    if os.path.exists(junit):
        for case in ET.parse(junit).getroot().iter("testcase"):
            operations += 1
            for kind in ("failure", "error"):
                for finding in case.findall(kind):
                    text = (finding.get("message") or "") + "\n" + (finding.text or "")
                    failures.append(
                        {"operation": case.get("name"), "kind": kind, "detail": text.strip()[:4000]}
                    )
    generated = re.search(r"(\d+) generated", done.stdout)
    return {
        "exit_code": done.returncode,
        "test_cases": int(generated.group(1)) if generated else None,
        "seconds": elapsed,
        "operations": operations,
        "failures": failures,
        "settings": {
            "deterministic": True,
            "max_examples": MAX_EXAMPLES,
            "workers": 1,
            "phases": PHASES,
            "checks": CHECKS,
        },
        # The end of the CLI's own report, for people reading a failed test.
        "output_tail": done.stdout[-6000:] + done.stderr[-2000:],
    }


def main():
    base_url = sys.argv[1].rstrip("/")
    with urllib.request.urlopen(f"{base_url}/api/v1/openapi.json", timeout=10) as response:
        document = json.load(response)
    spec = check_spec(document)
    with tempfile.TemporaryDirectory() as workdir:
        fuzz = run_schemathesis(base_url, workdir)
    ok = (
        spec["valid"]
        and fuzz["exit_code"] == 0
        and fuzz["operations"] > 0
        and not fuzz["failures"]
    )
    json.dump({"spec": spec, "schemathesis": fuzz, "ok": ok}, sys.stdout)
    sys.stdout.write("\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
