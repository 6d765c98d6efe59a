"""Train a bone-age model (paper 002, model 2) and write its model folder.

The paper trained model 2 with Adam for 50 epochs on 500 × 500 crops, the ImageNet VGG16
base frozen (about 0.5 M trainable parameters, the head's), augmenting by rotations up
to 5°, horizontal flips, height and width shifts of 0.15, shear 0.01 and zoom 0.25
(Keras ``ImageDataGenerator`` settings: the shear is an angle in degrees, the zoom is
drawn per axis in [0.75, 1.25]); it names no loss, only the metric, MAE in months, which
is the loss here (L1 on the age scaled by the labels' standard deviation). The network
sees the "unknown" sex value on ``sex_dropout`` of the training films, so a film without
a usable PatientSex has a trained path. The epoch with the lowest validation MAE is kept;
the held-out test split gives the card's figures (MAE overall and by sex) and the plot.

Presets: ``paper`` (VGG16 at 500, ImageNet init, frozen base: a GPU run on RSNA data),
``cpu`` (the CPU variant, ``vgg_small`` at 192 from random weights on synthetic hands,
tens of minutes on 2 cores), ``demo`` (a couple of minutes) and ``smoke`` (seconds).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from pipelines.bone_age.model import PIPELINE_NAME, load_model
from pipelines.bone_age.network import (
    ARCHITECTURES,
    BACKBONES,
    SEX_UNKNOWN,
    SEX_VALUES,
    BoneAgeNetwork,
    build_network,
    load_imagenet_features,
)
from pipelines.bone_age.preprocess import InputSpec, network_input
from pipelines.model_store import check_version, new_version, write_model_card
from training.bone_age.data import (
    Prepared,
    Sample,
    load_labelled,
    load_rsna,
    prepare,
    synthetic_samples,
)
from training.bone_age.evaluate import (
    PLOT_FILE,
    BoneAgeReport,
    evaluate_predictions,
    write_evaluation,
    write_plot,
)
from training.contract import Presets, Trainer
from training.runs import (
    check_loss_finite,
    progress_bars,
    progress_callback,
    staged_folder,
    write_weights_and_card,
)

logger = logging.getLogger(__name__)

Source = Literal["synthetic", "folder", "rsna"]
BackboneInit = Literal["imagenet", "random"]


@dataclass(frozen=True)
class TrainConfig:
    out_dir: Path = Path("var/models/bone_age")
    seed: int = 0
    version: str | None = None
    architecture: str = "vgg16"
    input_size: int = 500
    backbone_init: BackboneInit = "imagenet"
    init_weights: Path | None = None  # the converted ImageNet VGG16 file (vgg16-init)
    freeze_backbone: bool = True
    source: Source = "synthetic"
    data_dir: Path | None = None
    labels_csv: Path | None = None
    max_films: int | None = None
    synthetic_films: int = 2000
    synthetic_size: int = 256
    epochs: int = 50
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.0
    sex_dropout: float = 0.1
    augment: bool = True
    rotation_deg: float = 5.0
    shift: float = 0.15
    shear_deg: float = 0.01
    zoom: float = 0.25
    horizontal_flip: bool = True
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    time_limit_s: float | None = None
    device: str = "auto"  # "auto": CUDA when torch has it, else the CPU; or "cpu", "cuda"
    progress: bool = True

    def validate(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {', '.join(ARCHITECTURES)}")
        if self.input_size < BACKBONES[self.architecture].stride * 2:
            raise ValueError(
                f"input_size {self.input_size} is too small for {self.architecture} "
                f"(at least {BACKBONES[self.architecture].stride * 2})"
            )
        InputSpec(self.input_size)
        if self.backbone_init not in ("imagenet", "random"):
            raise ValueError("backbone_init must be 'imagenet' or 'random'")
        if self.backbone_init == "imagenet":
            if self.architecture != "vgg16":
                raise ValueError("backbone_init 'imagenet' is VGG16's; use random for others")
            if self.init_weights is None:
                raise ValueError(
                    "init_weights: the ImageNet init needs the converted VGG16 weights "
                    "(`dicom-node models vgg16-init`, then --imagenet-init), or use "
                    "backbone_init 'random'"
                )
        if self.freeze_backbone and self.backbone_init == "random":
            raise ValueError("freeze_backbone: a frozen random base learns nothing")
        if self.source not in ("synthetic", "folder", "rsna"):
            raise ValueError("source must be synthetic, folder or rsna")
        if self.source in ("folder", "rsna") and self.data_dir is None:
            raise ValueError(f"data_dir: a {self.source} source needs a folder")
        if self.source == "folder" and self.labels_csv is None:
            raise ValueError("labels_csv: a folder source needs a labels CSV")
        if self.source == "synthetic" and self.synthetic_films < 20:
            raise ValueError("synthetic_films must be at least 20")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be at least 1")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError("lr must be a positive number")
        if not 0.0 <= self.sex_dropout < 1.0:
            raise ValueError("sex_dropout must be in [0, 1)")
        if not (0 < self.val_fraction < 0.5 and 0 < self.test_fraction < 0.5):
            raise ValueError("val_fraction and test_fraction must be in (0, 0.5)")
        if self.val_fraction + self.test_fraction >= 0.8:
            raise ValueError("val_fraction + test_fraction leaves too little to train on")
        if not (0 <= self.rotation_deg <= 45 and 0 <= self.shift < 0.5 and 0 <= self.zoom < 1):
            raise ValueError("augmentation: rotation_deg 0..45, shift 0..0.5, zoom 0..1")
        if self.time_limit_s is not None and self.time_limit_s <= 0:
            raise ValueError("time_limit_s must be positive")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError("device must be auto, cpu or cuda")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("device: cuda was asked for, but torch has no CUDA device")
        if self.version is not None:
            check_version(self.version)

    def torch_device(self) -> torch.device:
        cuda = self.device == "cuda" or (self.device == "auto" and torch.cuda.is_available())
        return torch.device("cuda" if cuda else "cpu")

    @property
    def spec(self) -> InputSpec:
        return InputSpec(self.input_size)

    def summary(self) -> dict[str, Any]:
        return {
            key: (str(value) if isinstance(value, Path) else value)
            for key, value in asdict(self).items()
            if key not in ("progress", "out_dir", "device")
        }


def _adjust(base: TrainConfig, given: Mapping[str, Any]) -> TrainConfig:
    """Real data named on top of a synthetic preset trains on it."""
    if base.source == "synthetic" and "source" not in given and given.get("data_dir") is not None:
        return replace(base, source="folder" if given.get("labels_csv") else "rsna")
    return base


PRESETS: Presets[TrainConfig] = Presets(
    {
        "paper": TrainConfig(source="rsna"),
        "cpu": TrainConfig(
            architecture="vgg_small",
            input_size=192,
            backbone_init="random",
            freeze_backbone=False,
            synthetic_films=1500,
            epochs=30,
            batch_size=32,
        ),
        "demo": TrainConfig(
            architecture="vgg_small",
            input_size=128,
            backbone_init="random",
            freeze_backbone=False,
            synthetic_films=320,
            synthetic_size=192,
            epochs=10,
            batch_size=32,
        ),
        "smoke": TrainConfig(
            architecture="vgg_tiny",
            input_size=128,
            backbone_init="random",
            freeze_backbone=False,
            synthetic_films=280,
            synthetic_size=192,
            epochs=14,
            batch_size=16,
            lr=2e-3,
            progress=False,
        ),
    },
    adjust=_adjust,
)


@dataclass(frozen=True)
class TrainedModel:
    folder: Path
    card: Any
    report: BoneAgeReport
    history: list[dict[str, float]]


def augment(images: torch.Tensor, config: TrainConfig, generator: torch.Generator) -> torch.Tensor:
    """A random affine per image of (N, 1, S, S): rotation, shear, zoom, shift, flip."""
    n = images.shape[0]

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=generator)

    angle = torch.deg2rad(uniform(-config.rotation_deg, config.rotation_deg))
    shear = torch.deg2rad(uniform(-config.shear_deg, config.shear_deg))
    zx = uniform(1 - config.zoom, 1 + config.zoom)
    zy = uniform(1 - config.zoom, 1 + config.zoom)
    tx = uniform(-config.shift, config.shift) * 2.0  # grid coordinates span 2
    ty = uniform(-config.shift, config.shift) * 2.0
    flip = torch.where(
        torch.rand(n, generator=generator) < (0.5 if config.horizontal_flip else 0.0), -1.0, 1.0
    )
    cos, sin = torch.cos(angle), torch.sin(angle)
    # output → input coordinates: rotation · shear · zoom, then the flip of x
    a = torch.stack(
        [
            torch.stack([cos * zx * flip, (-sin + cos * torch.tan(shear)) * zy, tx], dim=1),
            torch.stack([sin * zx * flip, (cos + sin * torch.tan(shear)) * zy, ty], dim=1),
        ],
        dim=1,
    )
    grid = F.affine_grid(a.to(images.device), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def load_samples(config: TrainConfig) -> list[Sample]:
    if config.source == "synthetic":
        return synthetic_samples(config.seed, config.synthetic_films, size=config.synthetic_size)
    assert config.data_dir is not None
    if config.source == "rsna":
        return load_rsna(config.data_dir, config.labels_csv, limit=config.max_films)
    assert config.labels_csv is not None
    return load_labelled(config.data_dir, config.labels_csv, limit=config.max_films)


def split(count: int, config: TrainConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = np.random.default_rng(config.seed).permutation(count)
    test = max(1, round(count * config.test_fraction))
    val = max(1, round(count * config.val_fraction))
    if count - test - val < 2:
        raise ValueError(f"{count} films are too few to split into train, validation and test")
    return order[test + val :], order[test : test + val], order[:test]


def predict(
    network: BoneAgeNetwork,
    data: Prepared,
    *,
    sexes: np.ndarray | None = None,
    batch_size: int = 64,
) -> np.ndarray:
    network.eval()
    device = next(network.parameters()).device
    out: list[np.ndarray] = []
    chosen = data.sexes if sexes is None else sexes
    with torch.inference_mode():
        for start in range(0, len(data), batch_size):
            batch = network_input(data.images[start : start + batch_size]).to(device)
            sex = torch.as_tensor(chosen[start : start + batch_size], dtype=torch.long)
            out.append(network(batch, sex.to(device)).float().cpu().numpy())
    return np.concatenate(out)


def recalibrate_batch_norm(
    network: BoneAgeNetwork, data: Prepared, *, films: int = 128, batch_size: int = 64
) -> None:
    """Batch statistics over ``films`` training films (not augmented) as the running
    statistics ("precise BN"): the running averages of a network whose weights moved fast
    are stale, and the validation figures jump from epoch to epoch without this."""
    norms = [m for m in network.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches below
    network.train()
    with torch.no_grad():
        for start in range(0, min(films, len(data)), batch_size):
            stop = min(start + batch_size, films, len(data))
            if stop - start < 2:
                break
            device = next(network.parameters()).device
            batch = network_input(data.images[start:stop]).to(device)
            sexes = torch.as_tensor(data.sexes[start:stop], dtype=torch.long).to(device)
            network(batch, sexes)
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    network.eval()


def train_bone_age(config: TrainConfig) -> TrainedModel:
    config.validate()
    version = config.version or new_version()
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    rng = np.random.default_rng(config.seed + 1)
    started = time.perf_counter()
    with progress_bars(config.progress) as progress:
        samples = load_samples(config)
        data = prepare(samples, config.spec, progress_callback(progress, "preparing films"))
        del samples
        data_seconds = time.perf_counter() - started
        train_idx, val_idx, test_idx = split(len(data), config)
        train, val, test = data.subset(train_idx), data.subset(val_idx), data.subset(test_idx)
        mean, std = float(train.ages.mean()), float(max(train.ages.std(), 1.0))
        network = build_network(config.architecture, age_mean=mean, age_std=std)
        init_source: dict[str, Any] | None = None
        if config.backbone_init == "imagenet":
            assert config.init_weights is not None
            init_source = load_imagenet_features(network, config.init_weights)
        if config.freeze_backbone:
            network.features.requires_grad_(False)
        device = config.torch_device()
        network.to(device)
        parameters = [p for p in network.parameters() if p.requires_grad]
        optimiser = torch.optim.Adam(parameters, lr=config.lr, weight_decay=config.weight_decay)
        steps = math.ceil(len(train) / config.batch_size)
        task = progress.add_task("training", total=config.epochs * steps, status="")
        best_mae, best_state, best_epoch = math.inf, None, 0
        history: list[dict[str, float]] = []
        train_started = time.perf_counter()
        step = 0
        for epoch in range(1, config.epochs + 1):
            network.train()
            if config.freeze_backbone:
                network.features.eval()
            order = rng.permutation(len(train))
            losses: list[float] = []
            for start in range(0, len(order), config.batch_size):
                pick = order[start : start + config.batch_size]
                if len(pick) < 2:
                    continue  # batch normalisation needs two films
                images = torch.from_numpy(train.images[pick]).float()[:, None].to(device)
                if config.augment:
                    images = augment(images, config, generator)
                batch = network_input(images[:, 0])  # on the device of ``images``
                sexes = torch.from_numpy(train.sexes[pick]).clone()
                hide = torch.rand(len(pick), generator=generator) < config.sex_dropout
                sexes[hide] = SEX_UNKNOWN
                ages = torch.from_numpy(train.ages[pick]).to(device)
                loss = ((network(batch, sexes.to(device)) - ages).abs() / std).mean()
                step += 1
                check_loss_finite(float(loss.detach()), step=step, lr=config.lr)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                losses.append(float(loss.detach()) * std)
                progress.advance(task)
            if not config.freeze_backbone:
                recalibrate_batch_norm(network, train)
            val_mae = float(np.abs(predict(network, val) - val.ages).mean())
            history.append(
                {
                    "epoch": epoch,
                    "train_mae_months": float(np.mean(losses or [math.nan])),
                    "val_mae_months": val_mae,
                }
            )
            progress.update(task, status=f"epoch {epoch}: val MAE {val_mae:.1f} mo")
            if val_mae < best_mae:
                best_mae, best_epoch = val_mae, epoch
                best_state = {k: v.detach().cpu().clone() for k, v in network.state_dict().items()}
            if (
                config.time_limit_s is not None
                and time.perf_counter() - started > config.time_limit_s
            ):
                logger.info("bone_age training stopped by its time limit after epoch %d", epoch)
                break
        train_seconds = time.perf_counter() - train_started
    assert best_state is not None
    summary = {
        "source": config.source,
        "data_dir": str(config.data_dir) if config.data_dir else None,
        "films": len(data),
        "train_films": len(train),
        "val_films": len(val),
        "test_films": len(test),
        "label_mean_months": round(mean, 2),
        "label_sd_months": round(float(data.ages.std()), 2),
        "epochs_run": len(history),
        "best_epoch": best_epoch,
        "best_val_mae_months": round(best_mae, 3),
        "backbone_init": config.backbone_init,
        "imagenet_init": init_source.get("source") if init_source else None,
        "loss": "MAE (L1) on the age scaled by the training labels' SD",
        "optimiser": f"Adam lr {config.lr:g}",
        "config": config.summary(),
        "data_seconds": round(data_seconds, 1),
        "train_seconds": round(train_seconds, 1),
        "torch_threads": torch.get_num_threads(),
    }
    return _write_model_folder(config, version, best_state, summary, test, history)


def architecture_card(config: TrainConfig, network: BoneAgeNetwork | None = None) -> dict[str, Any]:
    backbone = BACKBONES[config.architecture]
    variant = "paper (model 2)" if config.architecture == "vgg16" else backbone.description
    return {
        "name": config.architecture,
        "variant": variant,
        "backbone": backbone.description,
        "backbone_init": config.backbone_init,
        "backbone_frozen": config.freeze_backbone,
        "head": "attention map (1x1 convs averaged over channels, sigmoid) x features, "
        "GAP / mean attention, + sex one-hot, fc",
        "attention_channels": [64, 16, 8],
        "hidden": 512,
        "dropout": 0.25,
        "sex_input": list(SEX_VALUES),
        "sex_dropout": config.sex_dropout,
        "output": "bone age in months",
    }


def _write_model_folder(
    config: TrainConfig,
    version: str,
    state: dict[str, torch.Tensor],
    summary: dict[str, Any],
    test: Prepared,
    history: list[dict[str, float]],
) -> TrainedModel:
    out_dir = Path(config.out_dir)
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
        card = replace(card, architecture=architecture_card(config))
        write_model_card(staging, card)
        model = load_model(staging)  # as the pipeline loads it
        predicted = predict(model.network, test)
        report = evaluate_predictions(predicted, test.ages, test.sexes)
        unknown = predict(model.network, test, sexes=np.full(len(test), SEX_UNKNOWN))
        unknown_mae = float(np.abs(unknown - test.ages).mean())
        title = (
            f"{PIPELINE_NAME} {version} ({config.architecture} at {config.input_size}, "
            f"{config.source}): MAE {report.mae_months:.1f} mo on {report.films} films"
        )
        write_plot(staging, predicted, test.ages, test.sexes, title)
        metrics: dict[str, Any] = {
            **report.metrics(),
            "mae_sex_unknown_months": round(unknown_mae, 3),
            "evaluated_on": f"{len(test)} held-out {config.source} films",
            "plot": PLOT_FILE,
        }
        write_evaluation(
            staging,
            report,
            {"history": history, "config": config.summary(), "mae_sex_unknown_months": unknown_mae},
        )
        card = replace(card, metrics=metrics)
        write_model_card(staging, card)
    folder = out_dir / version
    logger.info(
        "bone_age model %s written to %s: MAE %.1f months", version, folder, report.mae_months
    )
    return TrainedModel(folder=folder, card=card, report=report, history=history)


#: This trainer as the node and the demo see it (``training.contract``).
TRAINER: Trainer[TrainConfig] = Trainer(
    pipeline=PIPELINE_NAME, config_type=TrainConfig, presets=PRESETS, train=train_bone_age
)


def preset(name: str, **overrides: Any) -> TrainConfig:
    return PRESETS.build(name, **overrides)
