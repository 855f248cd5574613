"""``swirl-client``: Swirl from the command line.

    swirl-client sample -n 1000 --seed 7 --sampler ddim --steps 10 -o points.npy
    swirl-client sample -n 500 --seed 1 --stream -o points.csv      (a progress bar on stderr)
    swirl-client forward -t 25 -n 1000 -o - --format json
    swirl-client models
    swirl-client health

The server is --url, else SWIRL_URL, else http://127.0.0.1:8000. ``-o`` picks the format by its
extension (.npy, .csv, .json), ``-`` writes to stdout (CSV unless --format says otherwise).
Exit codes: 0 done, 2 bad input (the server refused a parameter, or a bad option), 3 the server
is unavailable (no connection, not ready, overloaded or rate limited after the retries, timed out),
1 anything else.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from swirl_client.client import Client
from swirl_client.errors import InvalidInput, SwirlError, Timeout, Unavailable
from swirl_client.protocol import DEFAULT_URL, URL_ENV, Frame

OK, FAILED, BAD_INPUT, UNAVAILABLE = 0, 1, 2, 3
FORMATS = ("npy", "csv", "json")
SAMPLERS = ("ddpm", "ddim", "dpmpp2m", "student")


class BadOutput(ValueError):
    """An output path or format this command cannot write."""


# -- output -------------------------------------------------------------------------------


def output_format(path: str, fmt: str | None) -> str:
    """The format to write ``path`` in: --format, else the extension; ``-`` defaults to CSV."""
    if fmt is not None:
        return fmt
    if path == "-":
        return "csv"
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise BadOutput(f"-o {path}: unknown extension; use .npy, .csv or .json (or --format)")
    return suffix


def encode(points: np.ndarray, fmt: str, metadata: dict[str, Any]) -> bytes:
    """(n, 2) float32 points as .npy bytes, CSV (x,y; 9 significant digits: float32 exactly) or JSON (with the metadata)."""
    if fmt == "npy":
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(points, dtype="<f4"), allow_pickle=False)
        return buffer.getvalue()
    if fmt == "csv":
        text = io.StringIO()
        np.savetxt(text, points, fmt="%.9g", delimiter=",", header="x,y", comments="")
        return text.getvalue().encode()
    return (json.dumps({**metadata, "points": points.tolist()}) + "\n").encode()


def write(path: str, data: bytes) -> None:
    if path == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        Path(path).write_bytes(data)


class Progress:
    """A one-line progress bar on stderr for a streamed chain: frames run from t = T down to 0."""

    def __init__(self, stream: IO[str], width: int = 30) -> None:
        self.stream = stream
        self.width = width
        self.first_t: int | None = None

    def update(self, frame: Frame) -> None:
        if self.first_t is None:
            self.first_t = frame.t
        done = 1.0 - frame.t / self.first_t if self.first_t else 1.0
        filled = round(done * self.width)
        self.stream.write(f"\rsampling [{'#' * filled}{'.' * (self.width - filled)}] {done:4.0%}  t={frame.t:<5d} frame {frame.index + 1}")
        self.stream.flush()

    def close(self) -> None:
        if self.first_t is not None:
            self.stream.write("\n")
            self.stream.flush()


# -- commands -----------------------------------------------------------------------------


def _sample(client: Client, args: argparse.Namespace) -> int:
    fmt = output_format(args.output, args.format)
    options = {"seed": args.seed, "sampler": args.sampler, "steps": args.steps, "eta": args.eta, "model": args.model, "space": args.space}
    if args.stream:
        stream = client.stream(args.n, every=args.every, **options)
        progress = Progress(sys.stderr) if not args.quiet else None
        last: Frame | None = None
        try:
            for last in stream:
                if progress is not None:
                    progress.update(last)
        finally:
            if progress is not None:
                progress.close()
        if last is None or stream.summary is None:
            raise SwirlError("the stream ended without its last frame")
        points, metadata = last.points, {k: v for k, v in stream.summary.items() if k not in ("trajectory_t", "server_timing")}
    else:
        sample = client.sample(args.n, **options)
        points = sample.points
        metadata = {
            "n": len(points),
            "seed": sample.seed,
            "sampler": sample.sampler,
            "steps": sample.steps,
            "eta": sample.eta,
            "space": sample.space,
            "model": sample.model,
            "model_name": sample.model_name,
        }
    write(args.output, encode(points, fmt, metadata))
    if args.output != "-" and not args.quiet:
        print(
            f"{len(points)} points (seed {metadata['seed']}, {metadata['sampler']}, {metadata['steps']} steps, "
            f"model {metadata['model_name']} {str(metadata['model'])[:12]}) → {args.output}",
            file=sys.stderr,
        )
    return OK


def _forward(client: Client, args: argparse.Namespace) -> int:
    fmt = output_format(args.output, args.format)
    answer = client.forward(args.t, args.n, seed=args.seed, model=args.model, space=args.space)
    metadata = {"t": answer.t, "n": len(answer.points), "seed": answer.seed, "alpha_bar": answer.alpha_bar, "space": answer.space, "model": answer.model}
    write(args.output, encode(answer.points, fmt, metadata))
    if args.output != "-" and not args.quiet:
        print(f"{len(answer.points)} points of q(x_{answer.t} | x_0) (seed {answer.seed}, ᾱ_t = {answer.alpha_bar:.4g}) → {args.output}", file=sys.stderr)
    return OK


def _models(client: Client, args: argparse.Namespace) -> int:
    print(json.dumps(client.models(), indent=2))
    return OK


def _health(client: Client, args: argparse.Namespace) -> int:
    print(json.dumps(client.ready()))
    return OK


# -- the parser ---------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="swirl-client", description="Swirl from the command line: sample points, noise the roll, list models, check health.")
    root.add_argument("--url", default=None, help=f"the server (default: ${URL_ENV}, else {DEFAULT_URL})")
    root.add_argument("--timeout", type=float, default=60.0, help="seconds per request (default 60)")
    root.add_argument("--retries", type=int, default=3, help="more tries after a 503 or 429, each after the server's Retry-After (0: off; default 3)")
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def outputs(command: argparse.ArgumentParser) -> None:
        command.add_argument("-o", "--output", default="-", help="file to write: .npy, .csv or .json by extension; - for stdout (default)")
        command.add_argument("--format", choices=FORMATS, default=None, help="the output format, whatever the extension (default for -: csv)")
        command.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary on stderr")
        command.add_argument("--model", default=None, help="the model's name (default: the server's default model)")
        command.add_argument("--space", choices=("model", "data"), default=None, help="model (normalised, the default) or data coordinates")
        command.add_argument("--seed", type=int, default=None, help="random seed (default: the server picks one and reports it)")

    sample = commands.add_parser("sample", help="generate points with the reverse chain")
    sample.add_argument("-n", type=int, default=1000, help="number of points (default 1000)")
    sample.add_argument("--sampler", choices=SAMPLERS, default=None, help="default ddpm")
    sample.add_argument("--steps", type=int, default=None, help="network evaluations (default: T)")
    sample.add_argument("--eta", type=float, default=None, help="DDIM's η (0 deterministic … 1)")
    sample.add_argument("--stream", action="store_true", help="stream the chain (/sample/stream) with a progress bar on stderr; writes x_0")
    sample.add_argument("--every", type=int, default=None, help="with --stream: a frame every k steps (default 1)")
    outputs(sample)
    sample.set_defaults(run=_sample)

    forward = commands.add_parser("forward", help="noise a fresh swiss roll to step t: q(x_t | x_0)")
    forward.add_argument("-t", type=int, required=True, help="the diffusion step (0: clean data)")
    forward.add_argument("-n", type=int, default=1000, help="number of points (default 1000)")
    outputs(forward)
    forward.set_defaults(run=_forward)

    commands.add_parser("models", help="list the models the server serves (JSON)").set_defaults(run=_models)
    commands.add_parser("health", help="is the server ready? (JSON; exit 0 ready, 3 not)").set_defaults(run=_health)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        with Client(args.url, timeout=args.timeout, retries=args.retries) as client:
            code: int = args.run(client, args)
            return code
    except (InvalidInput, BadOutput) as exc:
        print(f"swirl-client: {exc}", file=sys.stderr)
        return BAD_INPUT
    except (Unavailable, Timeout) as exc:
        print(f"swirl-client: {exc}", file=sys.stderr)
        return UNAVAILABLE
    except SwirlError as exc:
        print(f"swirl-client: {exc}", file=sys.stderr)
        return FAILED


if __name__ == "__main__":
    sys.exit(main())
