"""A real `statemesh node --dev` process: transfers through the CLI, queries, subscriptions,
bad input over RPC, and a `kill -9` in the middle of a stream of transactions."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import httpx
import pytest
import rlp
import trio
import trio_websocket

from chain.blocks import Call, SignedTransaction
from chain.db import Database
from chain.genesis import build_genesis
from chain.importer import BlockImporter
from chain.keys import Keypair, dev_keypair, sign_transaction
from chain.primitives import Hash32
from chain.runtime.executive import Runtime
from chain.state import TrieState
from chain.store import ChainStore
from chain.trie import BLANK_ROOT
from node.chain_spec import development_spec
from testkit.progress import STALL_SECONDS
from tests.factories import remark_call, transfer_call
from tests.integration.harness import NodeProcess, RpcFailure, cli, cli_json

pytestmark = pytest.mark.integration

BOB = dev_keypair("bob")
PASSWORD_ENV = {"STATEMESH_PASSWORD": "correct horse battery"}


def genesis_hash(node: NodeProcess) -> Hash32:
    return Hash32(bytes.fromhex(node.call("chain_getBlockHash", 0)[2:]))


def signed(
    node: NodeProcess, keypair: Keypair, call: Call, nonce: int, genesis: Hash32 | None = None
) -> str:
    tx = sign_transaction(
        keypair, genesis_hash=genesis or genesis_hash(node), nonce=nonce, call=call
    )
    return "0x" + rlp.encode(tx).hex()


def test_transfer_through_the_cli_is_finalized(dev_node: NodeProcess, tmp_path: Path) -> None:
    keystore = str(tmp_path / "keystore")
    generated = cli_json(
        "key", "generate", "--name", "carol", "--keystore", keystore, env=PASSWORD_ENV
    )
    address = generated["address"]
    result = cli(
        "tx",
        "transfer",
        "--from",
        "dev-alice",
        "--to",
        address,
        "--amount",
        "10000000",
        "--rpc",
        dev_node.url,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert "ready" in result.stdout and "finalized" in result.stdout
    assert "result: success" in result.stdout
    account = cli_json("query", "account", address, "--rpc", dev_node.url)
    assert account["free"] == "10000000" and account["nonce"] == 0
    # The new key signs too, with its password, and pays its fee.
    back = cli(
        "tx",
        "transfer",
        "--from",
        "carol",
        "--keystore",
        keystore,
        "--to",
        dev_keypair("alice").address,
        "--amount",
        "1000000",
        "--rpc",
        dev_node.url,
        env=PASSWORD_ENV,
    )
    assert back.returncode == 0, back.stderr + back.stdout
    account = cli_json("query", "account", address, "--rpc", dev_node.url)
    assert account["nonce"] == 1 and int(account["free"]) < 9_000_000
    block = cli_json("query", "block", "--finalized", "--rpc", dev_node.url)
    # A block is authored every second: the finalized head may have moved on since the query,
    # but the block the query showed is final and canonical at its height.
    number = int(block["header"]["number"], 16)
    assert number <= dev_node.finalized_number()
    assert block["header"]["hash"] == dev_node.call("chain_getBlockHash", number)
    receipt = dev_node.call("chain_getExtrinsic", dev_node.call("chain_getFinalizedHead"))
    assert receipt is None  # a block hash is not an extrinsic hash


def test_cli_reports_errors_clearly(dev_node: NodeProcess, tmp_path: Path) -> None:
    poor = cli(
        "tx",
        "transfer",
        "--from",
        "dev-charlie",
        "--to",
        BOB.address,
        "--amount",
        str(10**30),
        "--rpc",
        dev_node.url,
    )
    assert poor.returncode == 1
    assert poor.stderr.startswith(
        "error: cannot afford the call: balances.InsufficientBalance: transfer of"
    )
    bad_address = cli("query", "account", "5notanaddress", "--rpc", dev_node.url)
    assert bad_address.returncode == 1 and "invalid param 'address'" in bad_address.stderr
    unreachable = cli("query", "account", BOB.address, "--rpc", "http://127.0.0.1:9")
    assert unreachable.returncode == 3 and "cannot reach the node" in unreachable.stderr


def test_invalid_genesis_file_is_refused(tmp_path: Path) -> None:
    spec = development_spec().to_json()
    spec["consensus"]["slotDurationMs"] = 1
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(spec))
    result = cli("node", "--chain", str(path), "--base-path", str(tmp_path / "n"))
    assert result.returncode == 1
    assert "consensus.slotDurationMs must be between 100 and 600000" in result.stderr
    assert not (tmp_path / "n").exists()


def raw(node: NodeProcess, body: bytes | str) -> httpx.Response:
    return httpx.post(
        node.url, content=body, headers={"Content-Type": "application/json"}, timeout=30
    )


def test_bad_rpc_input_changes_nothing(dev_node: NodeProcess) -> None:
    genesis_hash(dev_node)
    before = dev_node.call("system_account", BOB.address)
    assert raw(dev_node, b"{not json").json()["error"]["code"] == -32700
    assert raw(dev_node, b'{"jsonrpc":"2.0","id":1,"method":"nope"}').json()["error"] == {
        "code": -32601,
        "message": "method not found: nope",
    }
    wrong = raw(dev_node, b'{"jsonrpc":"2.0","id":1,"method":"chain_getBlockHash","params":[true]}')
    assert wrong.json()["error"]["code"] == -32602
    oversize = raw(
        dev_node,
        b'{"jsonrpc":"2.0","id":1,"method":"system_name","params":["'
        + b"x" * (16 * 1024 * 1024)
        + b'"]}',
    )
    assert oversize.status_code == 413

    def refused(extrinsic: str) -> RpcFailure:
        with pytest.raises(RpcFailure) as info:
            dev_node.call("author_submitExtrinsic", extrinsic)
        return info.value

    assert refused("0xc3010203").message.startswith("malformed: not a signed transaction")
    good = rlp.decode(
        bytes.fromhex(signed(dev_node, BOB, remark_call(b"x"), 0)[2:]), sedes=SignedTransaction
    )
    forged = "0x" + rlp.encode(good.copy(signature=bytes(64))).hex()
    assert (
        refused(forged).message
        == "bad signature: the signature does not match the sender and payload"
    )
    other_genesis = signed(dev_node, BOB, remark_call(b"x"), 0, genesis=Hash32(b"\x01" * 32))
    assert refused(other_genesis).message.startswith(
        "wrong genesis hash: signed for genesis 0x0101"
    )
    assert refused(signed(dev_node, BOB, remark_call(b"x"), 500)).message.startswith(
        "future nonce: nonce 500 is 500 ahead"
    )
    too_much = signed(dev_node, BOB, transfer_call(dev_keypair("eve").public, 10**25), 0)
    failure = refused(too_much)
    assert failure.code == 1010
    assert failure.message.startswith("cannot afford the call: balances.InsufficientBalance")
    assert refused(too_much).code == 1012  # now temporarily banned
    # A future transaction waits in the pool: submitting it again is "already imported".
    second = signed(dev_node, BOB, remark_call(b"second"), 1)
    dev_node.call("author_submitExtrinsic", second)
    assert refused(second).code == 1013
    assert second in dev_node.call("author_pendingExtrinsics")
    # Its predecessor arrives; both are included; the same nonce again is stale.
    dev_node.call("author_submitExtrinsic", signed(dev_node, BOB, remark_call(b"first"), 0))
    dev_node.wait_for(
        lambda: dev_node.call("system_account", BOB.address)["nonce"] == 2, what="inclusion"
    )
    assert refused(signed(dev_node, BOB, remark_call(b"again"), 0)).message.startswith(
        "stale nonce"
    )
    after = dev_node.call("system_account", BOB.address)
    assert after["nonce"] == before["nonce"] + 2
    assert dev_node.call("system_health")["isSyncing"] is False


def test_websocket_watch_and_heads(dev_node: NodeProcess) -> None:
    extrinsic = signed(dev_node, BOB, transfer_call(dev_keypair("dave").public, 5_000_000), 0)
    ws_url = dev_node.url.replace("http", "ws")

    async def scenario() -> tuple[list[object], list[dict[str, object]]]:
        async with trio_websocket.open_websocket_url(ws_url) as ws:
            await ws.send_message(
                json.dumps(
                    {"jsonrpc": "2.0", "id": 1, "method": "chain_subscribeNewHeads", "params": []}
                )
            )
            heads_id = json.loads(await ws.get_message())["result"]
            # Substrate's order: the current best header comes at once, before anything else.
            first = json.loads(await ws.get_message())
            assert first["method"] == "chain_newHead"
            assert first["params"]["subscription"] == heads_id
            await ws.send_message(
                json.dumps(
                    {
                        "jsonrpc": "2.0",
                        "id": 2,
                        "method": "author_submitAndWatchExtrinsic",
                        "params": [extrinsic],
                    }
                )
            )
            statuses: list[object] = []
            heads: list[dict[str, object]] = []
            # A block may be authored, and its head notified, before the answer arrives.
            while "id" not in (answer := json.loads(await ws.get_message())):
                heads.append(answer["params"]["result"])
            watch_id = answer["result"]
            # Bounded by a stall of the chain, not by a guess of how fast a loaded machine is.
            with trio.fail_after(STALL_SECONDS):
                while not statuses or not (
                    isinstance(statuses[-1], dict) and "finalized" in statuses[-1]
                ):
                    message = json.loads(await ws.get_message())
                    params = message["params"]
                    if params["subscription"] == watch_id:
                        statuses.append(params["result"])
                    elif params["subscription"] == heads_id:
                        heads.append(params["result"])
            return statuses, heads

    statuses, heads = trio.run(scenario)
    assert statuses[0] == "ready"
    assert list(statuses[1]) == ["inBlock"] and list(statuses[2]) == ["finalized"]  # type: ignore[arg-type]
    assert statuses[1]["inBlock"] == statuses[2]["finalized"]  # type: ignore[index]
    assert heads, "no new head arrived while the transaction was included"


def test_kill9_during_transactions_and_resume(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path / "node").start()
    genesis = genesis_hash(node)
    senders = [dev_keypair(n) for n in ("bob", "charlie", "dave", "eve")]
    stop = threading.Event()
    submitted = [0]

    def stream() -> None:
        nonce = 0
        with httpx.Client(timeout=5) as client:
            while not stop.is_set() and nonce < 400:
                batch = [
                    {
                        "jsonrpc": "2.0",
                        "id": i,
                        "method": "author_submitExtrinsic",
                        "params": [
                            signed(
                                node,
                                s,
                                transfer_call(dev_keypair("ferdie").public, 1_000_000),
                                nonce,
                                genesis,
                            )
                        ],
                    }
                    for i, s in enumerate(senders)
                ]
                try:
                    client.post(node.url, json=batch)
                except httpx.HTTPError:
                    return
                submitted[0] += len(batch)
                nonce += 1

    worker = threading.Thread(target=stream)
    worker.start()
    node.wait_for(
        lambda: node.best_number() >= 3 and submitted[0] > 40, what="blocks with transactions"
    )
    node.kill9()
    stop.set()
    worker.join()
    node.start()
    resumed_from = node.best_number()
    node.wait_for(lambda: node.best_number() >= resumed_from + 2, what="authoring after restart")
    node.stop()

    # Replay every block of the restarted node's database into a fresh one: each block must
    # import with the same state root, and the head's state root must match.
    spec = development_spec()
    source = Database(node.base_path / "chains" / spec.id / "db")
    source_store = ChainStore(source)
    replay_db = Database(tmp_path / "replay")
    replay = ChainStore(replay_db)
    replay.initialize(build_genesis(spec, TrieState(replay_db.trie_nodes, BLANK_ROOT)))
    importer = BlockImporter(replay, Runtime(spec.runtime, replay.genesis_hash))  # type: ignore[arg-type]
    head = source_store.best_header
    included = 0
    for number in range(1, head.number + 1):
        block = source_store.block(source_store.canonical_hash(number))  # type: ignore[arg-type]
        assert block is not None
        included += len(block.extrinsics)
        importer.import_block(block, finalize=True)
    assert replay.best_header.state_root == head.state_root
    assert replay.best_hash == source_store.best_hash
    assert included > 0
    source.close()
    replay_db.close()


def test_a_busy_ingress_or_dns_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()
        udp.bind(("127.0.0.1", 0))
        base = ["node", "--dev", "--no-presence", "--port", "0", "--rpc-port", "0"]
        base += ["--prometheus-port", "0"]
        busy_http = cli(*base, "--ingress-port", str(tcp.getsockname()[1]), "--dns-port", "0")
        assert busy_http.returncode == 1
        assert "cannot serve the ingress proxy on 127.0.0.1:" in busy_http.stderr
        assert "Traceback" not in busy_http.stderr
        busy_dns = cli(*base, "--ingress-port", "0", "--dns-port", str(udp.getsockname()[1]))
        assert busy_dns.returncode == 1 and "cannot serve DNS on udp" in busy_dns.stderr
    bad = cli("node", "--dev", "--node-ip", "0.0.0.0")
    assert bad.returncode == 2 and "--node-ip: 0.0.0.0 cannot be dialled" in bad.stderr
