"""``ct_body_part``: Unsupervised Body part Regression of CT slices (paper 003, Yan et al.).

A CNN — VGG16 conv1–conv5 with their pools (ImageNet init), conv6 (512 1×1 filters) +
ReLU, global average pooling and fc — gives each axial slice one score, trained without
labels so that scores rise from head to feet and evenly with distance (L_order + L_dist,
``training.ct_body_part``). The paper's AlexNet variant is the lighter option.

On a series (single-frame files, multi-frame Enhanced CT images, or both) the pipeline
orders the slices by geometry (superior → inferior), scores them in batches, splits
chest / abdomen / pelvis with two thresholds calibrated on two labelled volumes, reports
each zone's extent and the series' coverage, and runs the paper's anomaly checks:
r(slice index, score) < 0.99 and a scan direction that is not monotonic.

Modules: ``volume`` (geometry and HU), ``preprocess`` (window, resize, VGG means),
``network`` (the architectures), ``vgg16_init`` (the ImageNet VGG16 weights, converted
once), ``model`` (a model folder loaded), ``zones`` (calibration, extents, anomalies),
``plot`` (the score plot), ``pipeline`` (the node's entry point).
"""

from pipelines.ct_body_part.pipeline import CtBodyPart

__all__ = ["CtBodyPart"]
