"""The ``spectune`` command line."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from spectune.dashboards.errors import ReportError
from spectune.datasets.errors import DataError
from spectune.storage.errors import StorageError
from spectune.study import settings
from spectune.study.dashboard_cli import add_dashboard_parsers
from spectune.study.data_cli import add_data_parsers
from spectune.study.results_cli import add_results_parsers
from spectune.study.service_cli import add_service_parsers
from spectune.study.typed import ConfigError

log = logging.getLogger("spectune")

# Errors a user can fix: printed as one line, exit code 2, no traceback.
USER_ERRORS: tuple[type[Exception], ...] = (
    ConfigError,
    DataError,
    FileNotFoundError,
    ReportError,
    StorageError,
)


def write_json(path: Path, content: dict[str, Any]) -> None:
    """Write atomically so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w", encoding="utf-8") as stream:
        json.dump(content, stream, indent=2)
        stream.write("\n")
    os.replace(temporary, path)


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-root", help="folder holding <dataset>/ (default $SPECTUNE_DATA_ROOT or ./data)"
    )
    parser.add_argument(
        "--cache-dir", help="graph cache (default $SPECTUNE_CACHE_DIR or ./runs/cache)"
    )
    parser.add_argument(
        "-g", "--gpu", type=int, default=None, help="GPU id; -1 = CPU (default: GPU 0 if present)"
    )


def add_train_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "train",
        help="train one model (the seed's `python main.py -m MGCN -d baby -g 0`)",
        description="Train MGCN (+ DAMPS unless --no-damps) once; early stopping on validation.",
    )
    parser.add_argument("-m", "--model", default="MGCN", help="model name (MGCN)")
    parser.add_argument(
        "-d", "--dataset", help="dataset name: a folder <data-root>/<name>/ holding <name>.inter"
    )
    parser.add_argument(
        "--config",
        type=Path,
        help="YAML config (sections model, damps, train); `spectune export` writes one",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one setting, e.g. --set band_high=0.5 --set train.epochs=20",
    )
    parser.add_argument(
        "--no-damps", action="store_true", help="vanilla MGCN (model.use_damps=false)"
    )
    parser.add_argument(
        "--out", type=Path, help="result JSON (default runs/train/<dataset>-<time>/result.json)"
    )
    parser.add_argument(
        "--checkpoint", type=Path, help="checkpoint path (default: model.pt beside --out)"
    )
    add_data_arguments(parser)
    parser.set_defaults(handler=run_train)


def run_train(args: argparse.Namespace) -> int:
    from spectune.study.checkpoint import save_checkpoint
    from spectune.study.config import build_config, load_config_file, parse_overrides
    from spectune.study.devices import select_device
    from spectune.study.run import prepare, train

    if args.model != "MGCN":
        raise ConfigError(f"-m {args.model}: spectune trains MGCN (with or without DAMPS)")
    base = load_config_file(args.config) if args.config else {}
    overrides = parse_overrides(args.overrides)
    if args.dataset:
        overrides["dataset"] = args.dataset
    if args.no_damps:
        overrides["model.use_damps"] = False
    config = build_config(base, overrides)
    device = select_device(args.gpu)
    out = (
        args.out
        or Path("runs/train") / f"{config.dataset}-{time.strftime('%Y%m%d-%H%M%S')}" / "result.json"
    )
    checkpoint = args.checkpoint or out.with_name("model.pt")

    data = prepare(config, settings.data_root(args.data_root), settings.cache_dir(args.cache_dir))
    variant = "MGCN+DAMPS" if config.model.use_damps else "MGCN"
    log.info(
        "training %s on %s (%d users, %d items) on %s",
        variant,
        data.dataset.name,
        data.dataset.n_users,
        data.dataset.n_items,
        device,
    )
    result, model = train(config, data, device, progress=sys.stderr.isatty())
    save_checkpoint(checkpoint, model, result)
    content = result.to_dict() | {"checkpoint": str(checkpoint), "setup_seconds": data.seconds}
    write_json(out, content)

    metric = config.train.valid_metric
    print(
        f"{variant} on {data.dataset.name}: best epoch {result.best_epoch} of {result.epochs_run} "
        f"(stopped by {result.stopped_by}), {result.seconds_per_epoch:.2f} s/epoch"
    )
    for split, metrics in (("valid", result.valid), ("test", result.test)):
        shown = "  ".join(f"{k} {metrics[k]:.4f}" for k in metrics if k.endswith(("@10", "@20")))
        print(f"  {split:5s} {shown}")
    print(f"selected by valid {metric}; result {out}; checkpoint {checkpoint}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spectune", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    commands = parser.add_subparsers(dest="command", required=True)
    add_train_parser(commands)
    add_service_parsers(commands)
    add_results_parsers(commands)
    add_dashboard_parsers(commands)
    add_data_parsers(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    # PNG export drives a browser through kaleido, which logs every tab at INFO.
    for chatty in ("kaleido", "choreographer"):
        logging.getLogger(chatty).setLevel(max(level, logging.WARNING))
    try:
        return int(args.handler(args))
    except USER_ERRORS as error:
        print(f"spectune {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
