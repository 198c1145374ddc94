"""The training report kept in the training record: loss curve, timings and hyperparameters."""

from __future__ import annotations

from likeness.v1 import trainer_pb2
from trainer.lora_training import TrainResult
from trainer.presets import TrainConfig


def build_report(
    config: TrainConfig,
    result: TrainResult,
    *,
    resolution: int,
    photo_count: int,
    seconds: float,
    prepare_seconds: float,
    checkpoint_seconds: float,
) -> trainer_pb2.TrainingReport:
    """`seconds`: this attempt's wall time plus the training time of earlier attempts it resumed."""
    report = trainer_pb2.TrainingReport(
        losses=result.losses,
        seconds=seconds,
        rank=result.metadata.rank,
        alpha=result.metadata.alpha,
        learning_rate=config.learning_rate,
        resolution=resolution,
        photo_count=photo_count,
    )
    _set_known(
        report,
        steps=result.steps_done,
        batch_size=config.batch_size,
        seed=config.seed,
        base_family=config.base_family,
        resumed_from_step=result.resumed_from,
        prepare_seconds=prepare_seconds,
        train_seconds=result.train_seconds_total,
        checkpoint_seconds=checkpoint_seconds,
        checkpoints=result.checkpoints,
    )
    return report


def _set_known(report: trainer_pb2.TrainingReport, **fields: float | int | str) -> None:
    # Fields proposed for TrainingReport (proto/likeness/v1/trainer.proto, numbers 8-16); filled in as soon
    # as the regenerated stubs have them, skipped until then.
    known = report.DESCRIPTOR.fields_by_name
    for name, value in fields.items():
        if name in known:
            setattr(report, name, value)
