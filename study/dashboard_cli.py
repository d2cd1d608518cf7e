"""``spectune dashboard`` (optuna-dashboard on the study storage) and ``spectune report``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from spectune.storage.factory import load_study, open_existing_study, open_storage
from spectune.storage.urls import parse_storage_url
from spectune.study import settings
from spectune.study.service_cli import _add_storage_arguments, resolve_target, storage_options
from spectune.study.typed import ConfigError

EVALUATORS = ("ped-anova", "fanova")


def add_dashboard_parsers(commands: argparse._SubParsersAction) -> None:
    dashboard = commands.add_parser(
        "dashboard",
        help="serve optuna-dashboard on the study storage (localhost unless told otherwise)",
        description="Check that the storage is initialised and was written by this Optuna "
        "version, then serve optuna-dashboard on it. The figures of `spectune report` appear "
        "on each study's page.",
    )
    dashboard.add_argument(
        "--study-name", help="check this study exists (its journal is the default storage)"
    )
    dashboard.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    dashboard.add_argument("--port", type=int, default=8080, help="port (8080)")
    _add_storage_arguments(dashboard)
    dashboard.set_defaults(handler=run_dashboard)

    report = commands.add_parser(
        "report",
        help="write a study's figures (HTML + PNG), tables and index.html; show them in the "
        "dashboard",
        description="Importance of every sampled parameter for the objective and for the "
        "training time per epoch, optimization history, learning curves, parallel coordinates, "
        "the best trial's DAMPS spectrum, and for an ablation study the ablation table and "
        "chart. PNG export uses Chromium (kaleido).",
    )
    report.add_argument("--study-name", required=True)
    report.add_argument("--out", type=Path, help="report folder (default runs/reports/<study>)")
    report.add_argument(
        "--evaluator",
        choices=EVALUATORS,
        default="ped-anova",
        help="importance evaluator (ped-anova, Optuna 5's default; or fanova)",
    )
    report.add_argument(
        "--min-trials",
        type=int,
        default=10,
        help="trials needed before importance is ranked (10)",
    )
    report.add_argument("--no-png", action="store_true", help="HTML figures and tables only")
    report.add_argument(
        "--no-publish", action="store_true", help="do not store the figures in the study"
    )
    _add_storage_arguments(report)
    report.set_defaults(handler=run_report)


def run_dashboard(args: argparse.Namespace) -> int:
    from spectune.dashboards.server import LOOPBACK, check_port, serve, version_warnings

    if not 1 <= args.port <= 65535:
        raise ConfigError(f"--port must be in 1..65535, got {args.port}")
    raw = settings.storage_url(args.storage)
    if raw is None and args.study_name is None:
        raise ConfigError("give --storage (or $SPECTUNE_STORAGE) or --study-name")
    target = parse_storage_url(raw) if raw is not None else resolve_target(None, args.study_name)
    options = storage_options(args)
    if args.study_name is not None:
        storage = open_existing_study(target, options, args.study_name)
    else:
        storage = open_storage(target, options)
    try:
        check_port(args.host, args.port)
    except OSError as error:
        raise _listen_error(args, error) from error
    for warning in version_warnings(storage):
        print(f"spectune dashboard: warning: {warning}", file=sys.stderr)
    if args.host not in LOOPBACK:
        print(
            f"spectune dashboard: warning: listening on {args.host}: optuna-dashboard has no "
            "login, anyone who reaches this port can read the studies and edit notes",
            file=sys.stderr,
        )
    import optuna_dashboard  # after the checks: it takes seconds to import

    shown = f"[{args.host}]" if ":" in args.host else args.host  # an IPv6 address
    url = f"http://{shown}:{args.port}/dashboard/"
    print(
        f"optuna-dashboard {optuna_dashboard.__version__} on {target.masked}: open {url} "
        "(Ctrl-C stops it)",
        flush=True,
    )
    try:
        serve(storage, args.host, args.port)
    except OSError as error:  # taken since check_port
        raise _listen_error(args, error) from error
    return 0


def _listen_error(args: argparse.Namespace, error: OSError) -> ConfigError:
    return ConfigError(
        f"cannot listen on {args.host}:{args.port} ({error.strerror or error}); pass another "
        "--port, or a --host of this machine"
    )


def run_report(args: argparse.Namespace) -> int:
    import optuna

    from spectune.dashboards.publish import publish
    from spectune.dashboards.report import build_report, write_report
    from spectune.dashboards.trials import trial_table

    if args.min_trials < 2:
        raise ConfigError(f"--min-trials must be >= 2, got {args.min_trials}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    target = resolve_target(args.storage, args.study_name)
    study = load_study(
        open_existing_study(target, storage_options(args), args.study_name), args.study_name
    )
    out = args.out or Path("runs") / "reports" / args.study_name
    report = build_report(trial_table(study), args.evaluator, args.min_trials)
    written = write_report(report, out, png=not args.no_png)
    print(f"wrote {len(written)} files to {out}: open {out / 'index.html'}")
    for warning in report.warnings:
        print(f"spectune report: warning: {warning}", file=sys.stderr)
    if not args.no_publish:
        ids = publish(study, report, str(out.resolve()))
        print(
            f"published {len(ids)} figures ({', '.join(ids)}) and the summary note to study "
            f"{args.study_name}; see them with `spectune dashboard --storage ...`"
        )
    return 0
