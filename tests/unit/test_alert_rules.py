"""The alert rules shipped in `monitoring/`: valid for Prometheus (`promtool check rules`), and
firing exactly where their unit tests say (`promtool test rules`), with a rule weakened on
purpose to show that those tests catch it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

MONITORING = Path(__file__).resolve().parents[2] / "monitoring"
RULES = MONITORING / "alerts.yml"
RULES_TEST = MONITORING / "alerts_test.yml"
ALERTS = {
    "FinalityStalled",
    "TowerNotGrowing",
    "NodeDemoted",
    "ReplicaCrashLooping",
    "IngressErrorRatio",
    "DiskPressure",
}


def promtool(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is not installed (Debian's prometheus package; scripts/setup.sh)")
    return subprocess.run(
        [found, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_the_rules_are_valid_and_name_every_alert() -> None:
    checked = promtool("check", "rules", RULES, cwd=MONITORING)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in checked.stdout
    text = RULES.read_text()
    assert {line.split(":", 1)[1].strip() for line in text.splitlines()
            if line.strip().startswith("- alert:")} == ALERTS  # fmt: skip
    tested = RULES_TEST.read_text()
    for alert in ALERTS:
        assert f"alertname: {alert}" in tested, f"{alert} has no unit test"


def test_the_rules_fire_where_their_tests_say() -> None:
    tested = promtool("test", "rules", RULES_TEST, cwd=MONITORING)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


@pytest.mark.parametrize(
    ("rule", "weakened"),
    [
        ("> 0.05", "> 0.5"),  # IngressErrorRatio would miss web's 17% of failures
        ("increase(statemesh_replica_restarts_total[15m]) > 3",
         "increase(statemesh_replica_restarts_total[15m]) > 0"),  # would page for n2
        ("statemesh_disk_pressure == 1\n        for: 2m", "statemesh_disk_pressure == 1\n"
         "        for: 0m"),  # would fire on a flapping disk
    ],
)  # fmt: skip
def test_a_weakened_rule_fails_its_tests(tmp_path: Path, rule: str, weakened: str) -> None:
    text = RULES.read_text()
    assert text.count(rule) == 1
    (tmp_path / RULES.name).write_text(text.replace(rule, weakened))
    shutil.copy(RULES_TEST, tmp_path / RULES_TEST.name)
    tested = promtool("test", "rules", RULES_TEST.name, cwd=tmp_path)
    assert tested.returncode != 0
    assert "FAILED" in tested.stdout + tested.stderr
