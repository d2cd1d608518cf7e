"""``spectune export`` (best configs as YAML) and ``spectune ablate`` (plan an ablation study)."""

from __future__ import annotations

import argparse
from pathlib import Path

from optuna.trial import TrialState

from spectune.storage import attrs
from spectune.storage.factory import load_study, open_existing_study, open_storage, study_lock
from spectune.study.service_cli import (
    _add_storage_arguments,
    _quiet_optuna,
    resolve_target,
    storage_options,
)
from spectune.study.spec import (
    LivenessSpec,
    PrunerSpec,
    SamplerSpec,
    StudySpec,
    create_study,
    current_versions,
    load_spec,
)
from spectune.study.typed import ConfigError


def add_results_parsers(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser(
        "export",
        help="write the best trial's config as YAML (`spectune train --config` re-runs it)",
        description="Choose COMPLETE trials by their validation value (never by test metrics) "
        "and write each one's full config with a `selection` block.",
    )
    export.add_argument("--study-name", required=True)
    export.add_argument("--top", type=int, default=1, help="also write the 2nd..K-th best")
    export.add_argument("--out", type=Path, default=Path("best.yaml"), help="default best.yaml")
    _add_storage_arguments(export)
    export.set_defaults(handler=run_export)

    ablate = commands.add_parser(
        "ablate",
        help="plan an ablation study: the best config of a search under each variant x seeds",
        description="Create study NAME whose trials are the best config of --from under each "
        "variant (full, no_apc, no_avrf, no_imcf, vanilla_mgcn, linear_control, "
        "shuffled_spectrum, apc_sign_corrected, avrf_gain_sigmoid, imcf_averaged, "
        "input_backbone) and each seed, enqueued once here; run it with "
        "`spectune worker --study-name NAME`.",
    )
    ablate.add_argument("--study-name", required=True, help="the ablation study to create")
    ablate.add_argument("--from", dest="source", required=True, help="the search study")
    ablate.add_argument("--seeds", type=int, default=5)
    ablate.add_argument("--variants", help="comma-separated subset (full is always included)")
    ablate.add_argument("--from-storage", help="storage of --from when it differs from --storage")
    _add_storage_arguments(ablate)
    ablate.set_defaults(handler=run_ablate)


def run_export(args: argparse.Namespace) -> int:
    from spectune.study.export import export_document, export_paths, ranked_trials, write_yaml

    if args.top < 1:
        raise ConfigError(f"--top must be >= 1, got {args.top}")
    target = resolve_target(args.storage, args.study_name)
    study = load_study(
        open_existing_study(target, storage_options(args), args.study_name), args.study_name
    )
    spec = load_spec(study)
    metric = spec.metric if spec else "value"
    ranked = ranked_trials(study)
    if not ranked:
        failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
        reasons = {t.user_attrs.get(attrs.FAIL_REASON, "?") for t in failed}
        why = f"; {len(failed)} FAIL, e.g. {sorted(reasons)[0]}" if failed else ""
        raise ConfigError(
            f"study {args.study_name} has no COMPLETE trial yet{why}; nothing to export"
        )
    if len(ranked) < args.top:
        print(f"only {len(ranked)} COMPLETE trial(s): writing {len(ranked)} of --top {args.top}")
    documents = [
        export_document(study, trial, rank, metric)
        for rank, trial in enumerate(ranked[: args.top], 1)
    ]
    paths = export_paths(args.out, len(documents))
    for path, document in zip(paths, documents):
        write_yaml(path, document)
    for path, trial in zip(paths, ranked):
        test = trial.user_attrs.get(attrs.TEST_METRICS, {}).get(metric)
        shown = f", test {metric} {test:.4f} (reported only)" if test is not None else ""
        print(f"trial {trial.number}: valid {metric} {trial.value:.4f}{shown} -> {path}")
    data_root = f" --data-root {spec.data_root}" if spec and spec.data_root else ""
    # bit-exact on the CPU with the trial's thread count (OMP_NUM_THREADS) and torch version
    print(f"re-run with: spectune train --config {paths[0]}{data_root}")
    return 0


def run_ablate(args: argparse.Namespace) -> int:
    from spectune.study.ablation import plan_ablation
    from spectune.study.config import build_config
    from spectune.study.export import ranked_trials

    _quiet_optuna()
    options = storage_options(args)
    source_target = resolve_target(args.from_storage or args.storage, args.source)
    source = load_study(open_existing_study(source_target, options, args.source), args.source)
    ranked = ranked_trials(source)
    if not ranked or attrs.CONFIG not in ranked[0].user_attrs:
        raise ConfigError(f"study {args.source} has no COMPLETE MGCN trial to ablate")
    best = build_config(ranked[0].user_attrs[attrs.CONFIG])
    variants = [v.strip() for v in args.variants.split(",")] if args.variants else None
    try:
        plan = plan_ablation(best, args.seeds, variants)
    except ValueError as error:
        raise ConfigError(str(error)) from error
    source_spec = load_spec(source)
    spec = StudySpec(
        study_name=args.study_name,
        objective="ablation",
        dataset=best.dataset or (source_spec.dataset if source_spec else ""),
        n_trials=len(plan.cells()),
        epochs=best.train.epochs,
        metric=best.train.valid_metric,
        sampler=SamplerSpec(name="random"),
        pruner=PrunerSpec(name="none"),
        liveness=LivenessSpec(
            options.heartbeat_interval, options.heartbeat_grace, options.max_retry
        ),
        data_root=source_spec.data_root if source_spec else None,
        versions=current_versions(),
        ablation=plan.to_dict(),
    )
    target = resolve_target(args.storage, args.study_name)
    storage = open_storage(target, options, create=True)
    if not create_study(storage, spec):
        print(
            f"ablation study {args.study_name} exists in {target.masked} with the same plan; "
            "nothing enqueued"
        )
        return 0
    study = load_study(storage, args.study_name)
    # enqueued once, here, under the study lock: workers never enqueue (Optuna #2925)
    lock = study_lock(
        storage, target, args.study_name, storage.get_study_id_from_name(args.study_name)
    )
    try:
        with lock:
            for variant, seed in plan.cells():
                study.enqueue_trial({"variant": variant, "seed": seed})
    finally:
        lock.close()
    print(
        f"created ablation study {args.study_name} in {target.masked}: best trial "
        f"{ranked[0].number} of {args.source} (valid {spec.metric} {ranked[0].value:.4f}) under "
        f"{len(plan.variants)} variants x {len(plan.seeds)} seeds = {spec.n_trials} trials; run "
        f"`spectune worker --study-name {args.study_name}`"
    )
    return 0
