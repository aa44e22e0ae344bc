"""The scanners platform teams run on deployment files, run here with their verdict as the test's:
checkov on the Kubernetes manifests, docker-compose.yml and the Dockerfile, and hadolint on the
Dockerfile. Each finding left on purpose is skipped in .checkov.yaml or .hadolint.yaml with its reason."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
# checkov's pins clash with the test tools' (requirements-scanners.txt); `make scanners` installs it here.
CHECKOV = ROOT / ".venv-scanners" / "bin" / "checkov"
HADOLINT = Path(sys.executable).with_name("hadolint")


def run_checkov(*targets):
    assert CHECKOV.exists(), "checkov is not installed: run `make scanners` (`make test` does)"
    # No network here: no update check, no download of guidelines or of the platform's check mapping.
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CKV_SKIP_PACKAGE_UPDATE_CHECK": "TRUE"}
    result = subprocess.run([str(CHECKOV), "--config-file", ".checkov.yaml", "--output", "json", *targets],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.stdout.strip(), f"checkov printed nothing:\n{result.stderr[-3000:]}"
    reports = json.loads(result.stdout)
    return reports if isinstance(reports, list) else [reports]


def findings(reports):
    return [f"{report['check_type']}: {check['check_id']} {check['check_name']} ({check['resource']}, "
            f"{check['file_path']}:{check['file_line_range']})"
            for report in reports for check in report.get("results", {}).get("failed_checks", [])]


@pytest.mark.parametrize("targets, frameworks", [
    (["--directory", "deploy/k8s"], {"kubernetes", "kustomize"}),
    (["--file", "Dockerfile", "--file", "deploy/nginx/Dockerfile", "--file", "docker-compose.yml"], {"dockerfile"}),
])
def test_checkov_finds_nothing(targets, frameworks):
    reports = run_checkov(*targets)
    scanned = {report["check_type"] for report in reports if report.get("summary", {}).get("passed")}
    # Without kubectl or kustomize on the PATH checkov skips the rendered manifests; the raw ones it scans anyway.
    assert frameworks - {"kustomize"} <= scanned, f"checkov scanned only {scanned}"
    assert findings(reports) == []


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "deploy/nginx/Dockerfile"])
def test_hadolint_finds_nothing_in_the_dockerfiles(dockerfile):
    result = subprocess.run([str(HADOLINT), "--config", ".hadolint.yaml", "--format", "json", dockerfile],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert json.loads(result.stdout or "[]") == [], result.stdout
    assert result.returncode == 0, result.stderr


def skips_with_reasons(path, key):
    """{check id: the comment line just above it} for each entry of the skip list."""
    lines = (ROOT / path).read_text().splitlines()
    skipped = yaml.safe_load((ROOT / path).read_text()).get(key, [])
    reasons = {}
    for check in skipped:
        index = next(i for i, line in enumerate(lines) if re.fullmatch(rf"\s*-\s*{re.escape(check)}\s*", line))
        above = lines[index - 1].strip()
        reasons[check] = above.removeprefix("#").strip() if above.startswith("#") else ""
    return reasons


@pytest.mark.parametrize("path, key", [(".checkov.yaml", "skip-check"), (".hadolint.yaml", "ignored")])
def test_every_skipped_check_says_why_in_the_line_above(path, key):
    for check, reason in skips_with_reasons(path, key).items():
        assert reason.startswith(check), f"{path}: {check} has no reason on the line above it"
        assert len(reason) > len(check) + 20, f"{path}: {check}'s reason says too little"
