"""Real `statemesh` node processes on loopback ports: the tests' names for `testkit.nodes`, which
the benchmarks share."""

from testkit.nodes import ROOT as ROOT
from testkit.nodes import STARTED as STARTED
from testkit.nodes import STATEMESH as STATEMESH
from testkit.nodes import NodeProcess as NodeProcess
from testkit.nodes import RpcFailure as RpcFailure
from testkit.nodes import cli as cli
from testkit.nodes import cli_json as cli_json
from testkit.nodes import free_port as free_port
from testkit.nodes import grant as grant
from testkit.nodes import http as http
from testkit.nodes import ingress_page as ingress_page
