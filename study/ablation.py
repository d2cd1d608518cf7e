"""Ablation studies: the best config of a search under each named variant, times seeds.

``spectune ablate`` plans the study once: it stores the base config and the variants in the
study, and enqueues every (variant, seed) pair as a trial whose params are just ``variant`` and
``seed``. Workers never enqueue; they run these trials with the objective below, which rebuilds
each trial's config from the stored plan (so a re-queued trial rebuilds the same config).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna

from spectune.study import settings
from spectune.study.config import RunConfig, build_config
from spectune.study.objective import DataCache, run_trial
from spectune.study.spec import StudySpec

if TYPE_CHECKING:
    from spectune.study.worker import Progress

# The reference row of the ablation table.
FULL = "full"

# The full model: the best config's tuned knobs (band, calibration weights, backbone) with DAMPS
# on, every component on and the public code's behaviour for each quirk.
FULL_DAMPS: dict[str, Any] = {
    "use_damps": True,
    "control": "none",
    "apc": True,
    "avrf": True,
    "imcf": True,
    "input_source": "own",
    "apc_sign": "official",
    "avrf_gain": "raw",
    "imcf_mode": "official",
    "shuffle_spectrum": False,
}

# Each variant's change to the full model: one component off, a control, or one quirk of the
# public code replaced by its corrected form.
VARIANTS: dict[str, dict[str, Any]] = {
    FULL: {},
    "no_apc": {"apc": False},
    "no_avrf": {"avrf": False},
    "no_imcf": {"imcf": False},
    "vanilla_mgcn": {"use_damps": False},
    "linear_control": {"use_damps": False, "control": "linear"},
    "shuffled_spectrum": {"shuffle_spectrum": True},
    "apc_sign_corrected": {"apc_sign": "corrected"},
    "avrf_gain_sigmoid": {"avrf_gain": "sigmoid"},
    "imcf_averaged": {"imcf_mode": "averaged"},
    "input_backbone": {"input_source": "backbone"},
}


@dataclass(frozen=True)
class AblationPlan:
    base: dict[str, Any]  # the best config, as RunConfig.to_dict()
    variants: dict[str, dict[str, Any]]
    seeds: tuple[int, ...]

    def config(self, variant: str, seed: int) -> RunConfig:
        if variant not in self.variants:
            raise KeyError(
                f"unknown ablation variant {variant!r}; planned: {', '.join(self.variants)}"
            )
        overrides = {**FULL_DAMPS, **self.variants[variant], "seed": seed}
        return build_config(self.base, overrides)

    def cells(self) -> list[tuple[str, int]]:
        return [(variant, seed) for variant in self.variants for seed in self.seeds]

    def to_dict(self) -> dict[str, Any]:
        return {"base": self.base, "variants": self.variants, "seeds": list(self.seeds)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AblationPlan:
        return cls(dict(data["base"]), dict(data["variants"]), tuple(data["seeds"]))


def plan_ablation(best: RunConfig, n_seeds: int, variants: list[str] | None = None) -> AblationPlan:
    """Every variant of ``best`` (or the named ones) with seeds best.seed, best.seed + 1, ..."""
    if n_seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {n_seeds}")
    names = variants or list(VARIANTS)
    unknown = [name for name in names if name not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant {unknown[0]!r}; known: {', '.join(VARIANTS)}")
    if FULL not in names:
        names = [FULL, *names]  # the reference every difference is taken against
    plan = AblationPlan(
        best.to_dict(),
        {name: VARIANTS[name] for name in names},
        tuple(best.train.seed + i for i in range(n_seeds)),
    )
    for variant, seed in plan.cells():
        plan.config(variant, seed)  # every cell must be a valid config before anything is stored
    return plan


def make_objective(
    spec: StudySpec, device: str, progress: Progress
) -> Callable[[optuna.Trial], float]:
    """Runs the enqueued (variant, seed) cells of an ablation study."""
    if spec.ablation is None:
        raise ValueError(f"study {spec.study_name} has no ablation plan")
    plan = AblationPlan.from_dict(spec.ablation)
    data = DataCache(settings.data_root(spec.data_root), settings.cache_dir(None))

    def objective(trial: optuna.Trial) -> float:
        variant = str(trial.suggest_categorical("variant", list(plan.variants)))
        seed = int(trial.suggest_categorical("seed", list(plan.seeds)))
        return run_trial(trial, plan.config(variant, seed), data, spec, device, progress)

    return objective
