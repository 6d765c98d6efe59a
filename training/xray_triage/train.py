"""Training a triage model (paper 004, modules I and II) into one complete model folder.

``train_triage(config)`` loads labelled images (``data``: a folder with a labels CSV,
DICOM films weakly labelled by their headers, synthetic films, or real data with
synthetic films added), splits them 70/20/10 into training, validation and test (by
study, stratified by label) and trains both modules the paper's way (Section III.A–B):

* images 8-bit grey at ``size`` × ``size`` (224), scaled to [−1, 1];
* cross-entropy, Adam (lr 1e-3, betas (0.9, 0.999), weight decay 1e-5),
  ``ReduceLROnPlateau(mode="min", factor=0.1, patience=3)`` on the validation loss,
  10 epochs, the epoch with the lowest validation loss kept;
* module I on every image (X-ray against not), module II on the X-ray images only.

The two kept networks are written as one state dict with the card (thresholds from the
config) into ``out_dir/<version>`` (a staged folder renamed into place at the end), loaded
back as the pipeline loads it and evaluated on the test part (``evaluate``: accuracy,
per class and confusion matrices, ``confusion_matrix.png``), which becomes the card's
``metrics``.

Presets (``PRESETS``; times measured on this project's shared 2-core CPU, beside other
work): ``paper`` (DenseNet-121 at 224, batch 32: a GPU run on real data), ``cpu``
(DenseNet-121 at 96 on 1,050 synthetic films: its 50-minute budget on one thread),
``demo`` (the tiny DenseNet at 64 on 1,520 synthetic films, about 1–3 minutes) and
``smoke`` (the tiny DenseNet at 48 on 336 films: 7 s of training on idle cores, under a
minute on a busy machine). Threads are the caller's business (``torch.set_num_threads``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from pipelines.model_store import ModelCard, check_version, new_version, write_model_card
from pipelines.xray_triage.body_parts import NOT_XRAY
from pipelines.xray_triage.concepts import PIPELINE_NAME
from pipelines.xray_triage.model import architecture_json, load_model
from pipelines.xray_triage.network import ARCHITECTURES, MODULE_2_CLASSES, TriageNetworks
from pipelines.xray_triage.preprocess import InputSpec, from_8bit
from training.contract import Presets, Trainer
from training.runs import (
    check_loss_finite,
    int_seed,
    progress_bars,
    progress_callback,
    staged_folder,
    write_weights_and_card,
)
from training.xray_triage.data import (
    LABELS,
    SampleSet,
    TriageSample,
    confidence_filter,
    load_labelled_folder,
    load_weak_labels,
    split_samples,
    synthetic_samples,
)
from training.xray_triage.evaluate import TriageReport, evaluate_model, write_evaluation

logger = logging.getLogger(__name__)

Module = Literal["xray_or_not", "xray_type"]
MODULES: tuple[Module, ...] = ("xray_or_not", "xray_type")


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs; ``validate`` says what does not fit together.

    Data: ``data_dir`` with ``labels_csv`` (a labels CSV) or with ``weak_labels`` (each
    DICOM file's own Body Part Examined / Modality; ``filter_model`` drops images that
    model calls another label with at least ``filter_confidence``), and/or
    ``synthetic_per_label`` synthetic films of each of ``synthetic_labels`` (empty: all
    fifteen labels).
    """

    out_dir: Path = Path("var/models/xray_triage")
    data_dir: Path | None = None
    labels_csv: Path | None = None
    weak_labels: bool = False
    filter_model: Path | None = None
    filter_confidence: float = 0.9
    synthetic_per_label: int = 0
    synthetic_labels: tuple[str, ...] = ()
    #: Synthetic non-X-ray films (when ``not_xray`` is among the synthetic labels); None:
    #: as many as the synthetic X-rays, the paper's balance for module I.
    synthetic_not_xray: int | None = None
    #: Side in pixels the synthetic films are rendered at; None: 2 × size (at least 128).
    synthetic_image_size: int | None = None
    architecture: str = "densenet121"
    size: int = 224
    channels: int = 3
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-5
    plateau_patience: int = 3
    split: tuple[float, float, float] = (0.7, 0.2, 0.1)
    #: Module I's threshold on the mean P(X-ray), written on the card.
    xray_threshold: float = 0.5
    #: Module II's confidence for a header disagreement, written on the card.
    disagreement_threshold: float = 0.9
    #: Wall-clock budget (s) for the epochs of both modules; None: none.
    time_limit_s: float | None = None
    seed: int = 0
    version: str | None = None
    progress: bool = True

    @property
    def spec(self) -> InputSpec:
        return InputSpec(size=self.size, channels=self.channels)

    @property
    def rendering_size(self) -> int:
        return self.synthetic_image_size or max(128, 2 * self.size)

    def sources(self) -> list[str]:
        found = []
        if self.labels_csv is not None:
            found.append("labels")
        if self.weak_labels:
            found.append("weak")
        if self.synthetic_per_label > 0:
            found.append("synthetic")
        return found

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first setting that cannot work."""
        if self.labels_csv is not None and self.weak_labels:
            raise ValueError("give labels_csv or weak_labels, not both")
        if self.data_dir is not None and self.labels_csv is None and not self.weak_labels:
            raise ValueError("data_dir needs labels_csv or weak_labels (the labels' source)")
        if (self.labels_csv is not None or self.weak_labels) and self.data_dir is None:
            raise ValueError("labels_csv and weak_labels need data_dir (the images)")
        if self.data_dir is None and self.synthetic_per_label <= 0:
            raise ValueError(
                "give a data source: data_dir with labels_csv or weak_labels, and/or "
                "synthetic_per_label > 0"
            )
        if self.synthetic_per_label < 0:
            raise ValueError("synthetic_per_label must not be negative")
        if self.synthetic_not_xray is not None and self.synthetic_not_xray < 0:
            raise ValueError("synthetic_not_xray must not be negative")
        if self.filter_model is not None and self.data_dir is None:
            raise ValueError("filter_model filters data_dir's images: give data_dir")
        if not 0.0 < self.filter_confidence <= 1.0:
            raise ValueError("filter_confidence must be in (0, 1]")
        unknown = sorted(set(self.synthetic_labels) - set(LABELS))
        if unknown:
            raise ValueError(f"unknown synthetic labels {unknown} (known: {', '.join(LABELS)})")
        InputSpec(size=self.size, channels=self.channels)
        if self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"unknown architecture {self.architecture!r} (known: {', '.join(ARCHITECTURES)})"
            )
        if self.synthetic_image_size is not None and self.synthetic_image_size < self.size:
            raise ValueError("synthetic_image_size must be at least the input size")
        if self.epochs < 1 or self.batch_size < 2:
            raise ValueError("epochs must be at least 1 and batch_size at least 2")
        if not (self.lr > 0 and math.isfinite(self.lr)) or self.weight_decay < 0:
            raise ValueError("lr must be a positive number and weight_decay not negative")
        if self.plateau_patience < 0:
            raise ValueError("plateau_patience must not be negative")
        if len(self.split) != 3 or min(self.split) < 0 or abs(sum(self.split) - 1.0) > 1e-6:
            raise ValueError("split must be three non-negative fractions adding up to 1")
        if self.split[0] <= 0 or self.split[1] <= 0:
            raise ValueError("split must leave images to train on and to validate with")
        for name in ("xray_threshold", "disagreement_threshold"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1]")
        if self.time_limit_s is not None and not self.time_limit_s > 0:
            raise ValueError("time_limit_s must be a positive number of seconds")
        if self.version is not None:
            check_version(self.version)

    def summary(self) -> dict[str, Any]:
        return {
            key: str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v
            for key, v in asdict(self).items()
        }


def _real_data_replaces_synthetic(config: TrainConfig, overrides: Mapping[str, Any]) -> TrainConfig:
    """A preset's synthetic films give way to real data among the overrides (unless the
    overrides ask for synthetic films too)."""
    if overrides.get("data_dir") is not None and overrides.get("synthetic_per_label") is None:
        return replace(config, synthetic_per_label=0)
    return config


PRESETS: Presets[TrainConfig] = Presets(
    {
        # The paper's recipe: DenseNet-121 at 224, Adam 1e-3 / 1e-5, plateau 3, 10 epochs,
        # 70/20/10. A GPU run on real data (--data DIR --labels CSV or --weak-labels).
        "paper": TrainConfig(),
        # DenseNet-121 on synthetic films at 96 pixels, the paper's optimiser and schedule:
        # tens of minutes on 2 cores.
        "cpu": TrainConfig(
            architecture="densenet121",
            size=96,
            synthetic_per_label=50,
            synthetic_not_xray=350,
            synthetic_image_size=192,
            epochs=10,
            batch_size=32,
            time_limit_s=3000.0,
        ),
        # `dicom-node demo`: the tiny DenseNet on synthetic films, a couple of minutes.
        "demo": TrainConfig(
            architecture="densenet_tiny",
            size=64,
            synthetic_per_label=80,
            synthetic_not_xray=400,
            synthetic_image_size=128,
            epochs=10,
            batch_size=16,
            time_limit_s=180.0,
        ),
        # The CI smoke test: seconds (a fixed number of steps, no time limit, so that the
        # test's model is the same on a busy machine).
        "smoke": TrainConfig(
            architecture="densenet_tiny",
            size=48,
            synthetic_per_label=16,
            synthetic_not_xray=112,
            synthetic_image_size=96,
            epochs=8,
            batch_size=16,
        ),
    },
    adjust=_real_data_replaces_synthetic,
)


def preset(name: str, **overrides: Any) -> TrainConfig:
    return PRESETS.build(name, **overrides)


@dataclass(frozen=True)
class EpochStats:
    module: str
    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy_pct: float
    lr: float
    seconds: float


@dataclass(frozen=True)
class TrainedModel:
    """A finished model folder, its card, its evaluation and how it got there."""

    folder: Path
    card: ModelCard
    report: TriageReport
    history: list[EpochStats] = field(default_factory=list)


# -- data ----------------------------------------------------------------------------------


def load_samples(config: TrainConfig, seed: int, progress: Any) -> list[SampleSet]:
    """Every source of ``config``, loaded."""
    spec = config.spec
    sets: list[SampleSet] = []
    if config.data_dir is not None:
        check = None
        if config.filter_model is not None:
            check = confidence_filter(config.filter_model, config.filter_confidence)
        advance = progress_callback(progress, "loading images")
        if config.labels_csv is not None:
            sets.append(
                load_labelled_folder(
                    config.data_dir, config.labels_csv, size=spec.size, check=check, advance=advance
                )
            )
        else:
            sets.append(
                load_weak_labels(config.data_dir, size=spec.size, check=check, advance=advance)
            )
    if config.synthetic_per_label > 0:
        sets += synthetic_sets(config, seed, progress)
    return sets


def synthetic_sets(config: TrainConfig, seed: int, progress: Any) -> list[SampleSet]:
    """The synthetic films of ``config``: ``synthetic_per_label`` of each X-ray type
    asked for, and ``synthetic_not_xray`` non-X-rays (None: as many as the X-rays)."""
    labels = config.synthetic_labels or LABELS
    types = [label for label in labels if label != NOT_XRAY]
    sets = []
    if types:
        sets.append(
            synthetic_samples(
                seed,
                config.synthetic_per_label,
                size=config.size,
                image_size=config.rendering_size,
                labels=types,
                advance=progress_callback(progress, "rendering synthetic X-rays"),
            )
        )
    if NOT_XRAY in labels:
        count = config.synthetic_not_xray
        if count is None:
            count = config.synthetic_per_label * max(1, len(types))
        if count > 0:
            sets.append(
                synthetic_samples(
                    seed + 1,
                    count,
                    size=config.size,
                    image_size=config.rendering_size,
                    labels=[NOT_XRAY],
                    prefix="synthetic-not-xray",
                    advance=progress_callback(progress, "rendering synthetic non-X-rays"),
                )
            )
    return sets


def targets(samples: list[TriageSample], module: Module) -> torch.Tensor:
    """Class indices of ``samples`` for ``module`` (module I: 1 = X-ray)."""
    if module == "xray_or_not":
        return torch.tensor([int(s.is_xray) for s in samples], dtype=torch.long)
    return torch.tensor([MODULE_2_CLASSES.index(s.label) for s in samples], dtype=torch.long)


def _images(samples: list[TriageSample]) -> np.ndarray:
    return np.stack([s.image for s in samples])


@torch.inference_mode()
def _validation(
    network: torch.nn.Module, images: np.ndarray, labels: torch.Tensor, spec: InputSpec
) -> tuple[float, float]:
    """(mean cross-entropy, accuracy %) of ``network`` on ``images``."""
    network.eval()
    losses, right = 0.0, 0
    for start in range(0, len(images), 64):
        logits = network(from_8bit(images[start : start + 64], spec)).float()
        part = labels[start : start + 64]
        losses += float(F.cross_entropy(logits, part, reduction="sum"))
        right += int((logits.argmax(dim=1) == part).sum())
    return losses / max(1, len(images)), 100.0 * right / max(1, len(images))


def train_module(
    network: torch.nn.Module,
    module: Module,
    train: list[TriageSample],
    validation: list[TriageSample],
    config: TrainConfig,
    rng: np.random.Generator,
    progress: Any,
    budget_s: float | None,
) -> tuple[dict[str, torch.Tensor], list[EpochStats], bool]:
    """Train one module the paper's way; (best state, history, stopped by the budget)."""
    spec = config.spec
    train_images, val_images = _images(train), _images(validation)
    train_labels, val_labels = targets(train, module), targets(validation, module)
    optimizer = torch.optim.Adam(
        network.parameters(), lr=config.lr, betas=(0.9, 0.999), weight_decay=config.weight_decay
    )
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=0.1, patience=config.plateau_patience
    )
    steps = math.ceil(len(train) / config.batch_size)
    task = progress.add_task(module, total=config.epochs * steps, status="")
    history: list[EpochStats] = []
    best_loss, best_epoch = math.inf, 0
    best_state: dict[str, torch.Tensor] | None = None
    started = time.perf_counter()
    stopped = False
    for epoch in range(1, config.epochs + 1):
        epoch_started = time.perf_counter()
        network.train()
        order = rng.permutation(len(train))
        total, seen = 0.0, 0
        for start in range(0, len(order), config.batch_size):
            if budget_s is not None and time.perf_counter() - started > budget_s:
                stopped = True
                break
            chosen = order[start : start + config.batch_size]
            progress.advance(task)
            if len(chosen) < 2:  # batch norm needs two
                continue
            batch = from_8bit(train_images[chosen], spec)
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(network(batch), train_labels[torch.from_numpy(chosen)])
            value = float(loss.item())
            check_loss_finite(value, step=epoch, lr=optimizer.param_groups[0]["lr"], unit="epoch")
            loss.backward()
            optimizer.step()
            total += value * len(chosen)
            seen += len(chosen)
        if seen == 0:
            break
        val_loss, val_accuracy = _validation(network, val_images, val_labels, spec)
        history.append(
            EpochStats(
                module,
                epoch,
                total / seen,
                val_loss,
                val_accuracy,
                optimizer.param_groups[0]["lr"],
                time.perf_counter() - epoch_started,
            )
        )
        if val_loss < best_loss:
            best_loss, best_epoch = val_loss, epoch
            best_state = {k: v.detach().clone() for k, v in network.state_dict().items()}
        plateau.step(val_loss)
        progress.update(
            task,
            description=f"{module} epoch {epoch}/{config.epochs}",
            status=f"loss {total / seen:.3f} · val loss {val_loss:.3f} · val accuracy "
            f"{val_accuracy:.1f} % (best epoch {best_epoch})",
        )
        logger.info(
            "%s epoch %d: train loss %.4f, val loss %.4f, val accuracy %.1f %%",
            module,
            epoch,
            total / seen,
            val_loss,
            val_accuracy,
        )
        if stopped:
            break
    if best_state is None:
        raise ValueError(f"no epoch of {module} finished within the time limit: give more time")
    return best_state, history, stopped


def _check_classes(train: list[TriageSample], validation: list[TriageSample]) -> None:
    xray = sum(s.is_xray for s in train)
    if xray == 0 or xray == len(train):
        raise ValueError(
            "module I needs X-rays and non-X-rays to train on; the training part has "
            f"{xray} X-rays of {len(train)} images (add --synthetic N --synthetic-labels not_xray)"
        )
    types = {s.label for s in train if s.is_xray}
    if len(types) < 2:
        raise ValueError(f"module II needs at least two X-ray types; training has {sorted(types)}")
    if not validation:
        raise ValueError("no image left for validation: give more images")


# -- training ------------------------------------------------------------------------------


def train_triage(config: TrainConfig) -> TrainedModel:
    """Train both modules, keep each one's best epoch, write and evaluate the folder."""
    config.validate()
    version = config.version or new_version()
    out_dir = Path(config.out_dir)
    if (out_dir / version).exists():
        raise FileExistsError(
            f"model folder {out_dir / version} already exists; choose another version"
        )
    seeds = np.random.SeedSequence(config.seed).spawn(3)  # data, split, training
    started = time.perf_counter()
    with progress_bars(config.progress) as progress:
        sets = load_samples(config, int_seed(seeds[0]), progress)
        samples = [s for loaded in sets for s in loaded.samples]
        data_seconds = time.perf_counter() - started
        train, validation, test = split_samples(samples, config.split, int_seed(seeds[1]))
        _check_classes(train, validation)
        evaluated_on = f"test split ({config.split[2]:.0%} of the images)"
        if not test:
            test, evaluated_on = validation, "validation split (no test images left)"
        torch.manual_seed(int_seed(seeds[2]))
        rng = np.random.default_rng(seeds[2])
        networks = TriageNetworks(config.architecture, channels=config.channels)
        budget = None if config.time_limit_s is None else config.time_limit_s / 2
        train_started = time.perf_counter()
        history: list[EpochStats] = []
        stopped: dict[str, bool] = {}
        state: dict[str, torch.Tensor] = {}
        for module in MODULES:
            chosen_train = train if module == "xray_or_not" else [s for s in train if s.is_xray]
            chosen_val = (
                validation if module == "xray_or_not" else [s for s in validation if s.is_xray]
            )
            best, module_history, stopped[module] = train_module(
                networks.get_submodule(module),
                module,
                chosen_train,
                chosen_val or chosen_train,
                config,
                rng,
                progress,
                budget,
            )
            history += module_history
            state.update({f"{module}.{key}": value for key, value in best.items()})
        train_seconds = time.perf_counter() - train_started
    best_epochs = {
        module: min((h for h in history if h.module == module), key=lambda h: h.val_loss).epoch
        for module in MODULES
    }
    summary = {
        "sources": [loaded.report() for loaded in sets],
        "train_images": len(train),
        "validation_images": len(validation),
        "test_images": len(test),
        "train_by_label": {lab: sum(s.label == lab for s in train) for lab in LABELS},
        "split": list(config.split),
        "evaluated_on": evaluated_on,
        "seed": config.seed,
        "epochs": config.epochs,
        "epochs_run": {m: sum(h.module == m for h in history) for m in MODULES},
        "best_epoch": best_epochs,
        "stopped_by_time_limit": stopped,
        "optimizer": f"Adam(lr={config.lr:g}, betas=(0.9, 0.999), weight_decay={config.weight_decay:g})",
        "schedule": f"ReduceLROnPlateau(mode='min', factor=0.1, patience={config.plateau_patience}) on validation loss",
        "loss": "cross-entropy",
        "batch_size": config.batch_size,
        "init": "random (MONAI's DenseNet initialisation)",
        "data_seconds": round(data_seconds, 1),
        "train_seconds": round(train_seconds, 1),
        "torch_threads": torch.get_num_threads(),
    }
    calibration = {
        "xray_threshold": config.xray_threshold,
        "disagreement_threshold": config.disagreement_threshold,
        "chosen_by": "training config (pipeline_options may override either)",
    }
    return _write_model_folder(
        out_dir, version, config, state, summary, calibration, test, evaluated_on, history
    )


def _write_model_folder(
    out_dir: Path,
    version: str,
    config: TrainConfig,
    state: dict[str, torch.Tensor],
    summary: dict[str, Any],
    calibration: dict[str, Any],
    test: list[TriageSample],
    evaluated_on: str,
    history: list[EpochStats],
) -> TrainedModel:
    with staged_folder(out_dir, version) as staging:
        card = write_weights_and_card(
            staging,
            pipeline=PIPELINE_NAME,
            version=version,
            architecture=config.architecture,
            input_spec=config.spec.to_json(),
            state=state,
            training_data=summary,
        )
        card = replace(
            card, architecture=architecture_json(config.architecture), calibration=calibration
        )
        write_model_card(staging, card)
        model = load_model(staging)  # as the pipeline loads it
        started = time.perf_counter()
        report = evaluate_model(model, test)
        metrics: dict[str, Any] = {
            **report.metrics(),
            "evaluated_on": evaluated_on,
            "evaluation_seconds": round(time.perf_counter() - started, 1),
        }
        write_evaluation(
            report,
            staging,
            title=f"{PIPELINE_NAME} {version} ({config.architecture} at {config.size}, "
            f"{'+'.join(config.sources())}): {evaluated_on}",
            extra={"history": [asdict(h) for h in history], "config": config.summary()},
        )
        card = replace(card, metrics=metrics)
        write_model_card(staging, card)
    folder = out_dir / version
    logger.info(
        "model %s written to %s: module I %.1f %%, module II %.1f %%",
        version,
        folder,
        report.module_1.accuracy_pct,
        report.module_2.accuracy_pct,
    )
    return TrainedModel(folder=folder, card=card, report=report, history=history)


#: This trainer as the node and the demo see it (``training.contract``).
TRAINER: Trainer[TrainConfig] = Trainer(
    pipeline=PIPELINE_NAME, config_type=TrainConfig, presets=PRESETS, train=train_triage
)
