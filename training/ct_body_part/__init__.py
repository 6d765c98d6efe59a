"""Training the ``ct_body_part`` network without labels (paper 003, Yan et al.).

* ``losses`` — L_order (Eq. 1), L_dist (Eq. 2) and their sum (Eq. 3);
* ``sampler`` — g volumes × m equidistant slices per iteration;
* ``data`` — unlabelled CT series from a folder (or the node's archive), or synthetic
  phantoms, through the pipeline's own preprocessing;
* ``calibration`` — the calibration file (zone ranges in two labelled volumes) and the
  threshold fit;
* ``evaluate`` — Spearman ρ, three-zone accuracy (paper: 95.99 %), anomaly flags, and
  the accuracy for every pair of labelled volumes as the calibration;
* ``train`` — ``TrainConfig``, ``PRESETS`` (paper, paper-cpu, cpu, demo, smoke),
  ``train_ubr``;
* ``calibration_pairs`` — ``python -m training.ct_body_part.calibration_pairs MODEL``:
  the calibration-pair study on synthetic phantoms, as a table and JSON.

Imports ``pipelines``, never ``dicom_node``.
"""
