"""`statemesh vdf calibrate`: this machine's proof-of-time speed, and the iteration count that
makes a Time Tower proof take a given time here."""

from __future__ import annotations

import argparse
import json

from node.errors import UsageError
from vdf.calibrate import Calibration, calibrate
from vdf.proof import VdfParams, VdfParamsError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    vdf = subparsers.add_parser(
        "vdf",
        help="proof of time (VDF) tools",
        description="Tools for the VDF proofs of a node's Time Tower.",
    )
    commands = vdf.add_subparsers(dest="vdf_command", required=True, metavar="SUBCOMMAND")
    calibrate_parser = commands.add_parser(
        "calibrate",
        help="measure this machine's VDF iterations per second",
        description="Prove a few short VDFs on one core, print the iterations per second, and "
        "the iteration count that takes --seconds here.",
    )
    calibrate_parser.add_argument(
        "--seconds",
        type=_positive_float,
        default=60.0,
        metavar="T",
        help="size a proof that takes T seconds on this machine (default 60)",
    )
    calibrate_parser.add_argument(
        "--measure-seconds",
        type=_positive_float,
        default=3.0,
        metavar="S",
        help="time to spend measuring (default 3)",
    )
    calibrate_parser.add_argument(
        "--discriminant-bits",
        type=int,
        default=VdfParams().discriminant_bits,
        metavar="BITS",
        help="class group size (default 1024, the chain's)",
    )
    calibrate_parser.add_argument("--json", action="store_true", help="print one JSON value")
    calibrate_parser.set_defaults(handler=calibrate_command)


def calibrate_command(args: argparse.Namespace) -> int:
    try:
        params = VdfParams(args.discriminant_bits)
    except VdfParamsError as exc:
        raise UsageError(str(exc)) from None
    result = calibrate(params, budget_seconds=args.measure_seconds)
    iterations = result.iterations_for(args.seconds)
    if args.json:
        print(json.dumps(_to_json(result, args.seconds, iterations), indent=2))
    else:
        print(
            f"{result.iterations_per_second:,} iterations/s "
            f"({result.discriminant_bits}-bit discriminant, median of {len(result.samples)})"
        )
        print(f"{iterations:,} iterations take about {args.seconds:g} s on this machine")
    return 0


def _to_json(result: Calibration, seconds: float, iterations: int) -> dict[str, object]:
    return {
        "discriminantBits": result.discriminant_bits,
        "iterationsPerSecond": result.iterations_per_second,
        "targetSeconds": seconds,
        "iterations": iterations,
        "samples": [
            {"iterations": sample.iterations, "seconds": round(sample.seconds, 6)}
            for sample in result.samples
        ],
    }


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number of seconds")
    return value
