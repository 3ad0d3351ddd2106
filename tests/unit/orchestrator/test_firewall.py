"""The host rules as text: what a replica may reach, in the order the rules are matched."""

from __future__ import annotations

import pytest

from orchestrator.firewall import BLOCKED_V4, EgressPolicy, IptablesFirewall, rules_v4, rules_v6


@pytest.mark.parametrize(
    ("egress", "last"), [(EgressPolicy.ALLOW, "-j RETURN"), (EgressPolicy.DENY, "-j DROP")]
)
def test_forwarded_traffic_of_replicas(egress: EgressPolicy, last: str) -> None:
    rules = rules_v4("ab12", egress)
    forward = rules.chains["SM-ab12-FWD"]
    assert forward[:3] == [
        "-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",  # replies to what the host opened
        "-m physdev --physdev-is-bridged -j RETURN",  # pods of one application's bridge
        "-o smb+ -j DROP",  # routed to another application's bridge
    ]
    assert forward[3:-1] == [f"-d {net} -j DROP" for net in BLOCKED_V4]
    assert forward[-1] == last
    assert {
        "169.254.0.0/16",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "127.0.0.0/8",
    } <= set(BLOCKED_V4)
    assert rules.hooks == [
        ("INPUT", "-i smb+ -j SM-ab12-IN"),
        ("DOCKER-USER", "-i smb+ -j SM-ab12-FWD"),
    ]


def test_nothing_of_the_host_answers_a_replica_but_replies() -> None:
    assert rules_v4("ab12", EgressPolicy.ALLOW).chains["SM-ab12-IN"] == [
        "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        "-j DROP",
    ]
    v6 = rules_v6("ab12")
    assert v6.chains == {"SM-ab12-IN6": ["-j DROP"]}
    assert v6.hooks == [("INPUT", "-i smb+ -j SM-ab12-IN6"), ("FORWARD", "-i smb+ -j SM-ab12-IN6")]


@pytest.mark.parametrize("tag", ["", "a-b", "x" * 13, "ab 12"])
def test_a_tag_is_a_short_word(tag: str) -> None:
    with pytest.raises(ValueError, match="is not a chain tag"):
        IptablesFirewall(tag)
