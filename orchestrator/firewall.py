"""The host rules that keep replicas in their sandboxes, in chains the node owns.

Docker keeps the containers of one bridge network from those of another, and nothing else: a
container reaches every address of the host through its gateway (those packets pass the host's
INPUT chain, which Docker leaves alone), and anything its host can route to, cloud metadata and
the operator's private networks included. So every workload bridge (`smb+`) gets two chains:

- `SM-<tag>-IN`, hooked first in INPUT: replies to connections the host opened pass (the ingress
  proxy and probes dial replicas); everything a replica sends to the host itself is dropped.
- `SM-<tag>-FWD`, hooked first in DOCKER-USER (where Docker lets users filter forwarded
  traffic): replies pass; traffic bridged within one bridge (one application's pods on this
  node) goes on to Docker's rules; traffic routed to another workload bridge, to loopback,
  link-local (169.254.0.0/16, metadata), private, shared and multicast ranges is dropped; the
  rest of the world is reached unless the egress policy is `deny`.

IPv6 is not configured on workload networks; every IPv6 packet from a workload bridge is dropped
all the same, in INPUT and FORWARD. Rules are asserted idempotently (compared, and rewritten in
one `iptables-restore` when they differ), again at every resync, and removed on `remove`."""

from __future__ import annotations

import enum
import logging
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import trio

from orchestrator.addresses import NOT_FOR_REPLICAS_V4
from orchestrator.errors import EngineFailure
from orchestrator.labels import BRIDGE_PREFIX

log = logging.getLogger("statemesh.firewall")

WORKLOADS = f"{BRIDGE_PREFIX}+"
"""Every workload bridge, as an iptables interface pattern."""

BLOCKED_V4 = tuple(str(net) for net in NOT_FOR_REPLICAS_V4)
"""Where a replica's traffic never goes: this host's loopback, link-local (cloud metadata at
169.254.169.254), the private and shared ranges of the operator's own networks (RFC 1918,
RFC 6598), benchmarking, multicast and reserved ranges, as `orchestrator.addresses` classifies
them."""


class EgressPolicy(enum.Enum):
    """Whether replicas may open connections to the outside world (`--workload-egress`)."""

    ALLOW = "allow"
    DENY = "deny"


class FirewallFailure(EngineFailure):
    """The host rules cannot be put in place: no replica may run until they are."""

    reason = "SandboxUnavailable"


class HostFirewall(Protocol):
    """The host side of every replica's sandbox."""

    async def apply(self) -> None:
        """Asserts the rules, which cover every workload bridge (`smb+`); `FirewallFailure` if
        they cannot be. Idempotent."""
        ...

    async def remove(self) -> None:
        """Removes this node's rules and chains. Idempotent."""
        ...


@dataclass(frozen=True, slots=True)
class Ruleset:
    """The whole content of this node's chains, for one address family."""

    chains: dict[str, list[str]] = field(hash=False)
    """Chain name -> its rules, in `iptables -S` form without `-A <chain>`."""
    hooks: list[tuple[str, str]] = field(hash=False)
    """(built-in or Docker chain, the rule that jumps to ours), each inserted first."""


def rules_v4(tag: str, egress: EgressPolicy) -> Ruleset:
    """The IPv4 rules of one node, the same for every workload bridge. Pure, so that they are
    tested as text."""
    inbound, forward = f"SM-{tag}-IN", f"SM-{tag}-FWD"
    established = "-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN"
    fwd = [established]
    # Bridged, not routed: between pods of one bridge, left to Docker's rules. Matched by the
    # packet, not by bridge names, so several nodes on one host do not cut each other's.
    fwd.append("-m physdev --physdev-is-bridged -j RETURN")
    fwd.append(f"-o {WORKLOADS} -j DROP")
    fwd += [f"-d {net} -j DROP" for net in BLOCKED_V4]
    fwd.append("-j DROP" if egress is EgressPolicy.DENY else "-j RETURN")
    return Ruleset(
        chains={
            inbound: ["-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT", "-j DROP"],
            forward: fwd,
        },
        hooks=[
            ("INPUT", f"-i {WORKLOADS} -j {inbound}"),
            ("DOCKER-USER", f"-i {WORKLOADS} -j {forward}"),
        ],
    )


def rules_v6(tag: str) -> Ruleset:
    """IPv6: workload networks have none, so nothing from a workload bridge is let through."""
    chain = f"SM-{tag}-IN6"
    return Ruleset(
        chains={chain: ["-j DROP"]},
        hooks=[("INPUT", f"-i {WORKLOADS} -j {chain}"), ("FORWARD", f"-i {WORKLOADS} -j {chain}")],
    )


class IptablesFirewall:
    """`HostFirewall` with iptables and ip6tables. Needs root and an engine with iptables on
    (its DOCKER-USER chain); `FirewallFailure` otherwise."""

    def __init__(
        self,
        tag: str,
        egress: EgressPolicy = EgressPolicy.ALLOW,
        *,
        iptables: str = "iptables",
        ip6tables: str = "ip6tables",
    ) -> None:
        if not tag.isalnum() or len(tag) > 12:
            raise ValueError(f"{tag!r} is not a chain tag (letters and digits, at most 12)")
        self.tag = tag
        self.egress = egress
        self._v4 = iptables
        self._v6 = ip6tables
        self._lock = trio.Lock()
        self.applied = 0
        """How many times rules had to be written (not only checked)."""

    async def apply(self) -> None:
        async with self._lock:
            await trio.to_thread.run_sync(self._apply)

    async def remove(self) -> None:
        async with self._lock:
            await trio.to_thread.run_sync(self._remove)

    def _rulesets(self) -> list[tuple[str, Ruleset]]:
        return [(self._v4, rules_v4(self.tag, self.egress)), (self._v6, rules_v6(self.tag))]

    def _apply(self) -> None:
        for tool, ruleset in self._rulesets():
            if shutil.which(tool) is None:
                raise FirewallFailure(f"{tool} is not installed: replicas cannot be isolated")
            self._assert(tool, ruleset)

    def _assert(self, tool: str, ruleset: Ruleset) -> None:
        stale = [name for name, rules in ruleset.chains.items() if _listed(tool, name) != rules]
        if stale:
            # Declaring a chain in a restore file empties it; the rest of the table is kept.
            lines = ["*filter", *(f":{name} - [0:0]" for name in stale)]
            lines += [f"-A {name} {rule}" for name in stale for rule in ruleset.chains[name]]
            lines.append("COMMIT")
            _run([f"{tool}-restore", "--noflush", "-w"], "\n".join(lines) + "\n")
            self.applied += 1
        for parent, hook in ruleset.hooks:
            if _run_ok([tool, "-w", "-C", parent, *hook.split()]):
                continue
            if not _run_ok([tool, "-w", "-n", "-L", parent]):
                raise FirewallFailure(
                    f"{tool}: no {parent} chain: the container engine must run with iptables on, "
                    "or replicas cannot be isolated"
                )
            _run([tool, "-w", "-I", parent, "1", *hook.split()])

    def _remove(self) -> None:
        for tool, ruleset in self._rulesets():
            if shutil.which(tool) is None:
                continue
            for parent, hook in ruleset.hooks:
                while _run_ok([tool, "-w", "-D", parent, *hook.split()]):
                    pass
            for name in ruleset.chains:
                _run_ok([tool, "-w", "-F", name])
                _run_ok([tool, "-w", "-X", name])


def _listed(tool: str, chain: str) -> list[str] | None:
    """A chain's rules as `iptables -S` prints them, without `-A <chain>`; None if absent."""
    result = subprocess.run(
        [tool, "-w", "-S", chain], capture_output=True, text=True, check=False, timeout=30
    )
    if result.returncode != 0:
        return None
    prefix = f"-A {chain} "
    return [line[len(prefix) :] for line in result.stdout.splitlines() if line.startswith(prefix)]


def _run(command: Sequence[str], stdin: str | None = None) -> None:
    try:
        result = subprocess.run(
            command, input=stdin, capture_output=True, text=True, check=False, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise FirewallFailure(f"{command[0]}: {e}") from e
    if result.returncode != 0:
        raise FirewallFailure(f"{' '.join(command[:3])}: {result.stderr.strip()[:300]}")


def _run_ok(command: Sequence[str]) -> bool:
    try:
        return subprocess.run(command, capture_output=True, check=False, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
