"""Training the ``mura_abnormality`` network (paper 001, Ghalyan et al., on MURA).

* ``data`` — labelled views from MURA's own folder layout and CSVs, from DICOM studies
  with a labels CSV, or from synthetic studies (``training.synthetic.msk_films``);
* ``train`` — ``TrainConfig``, ``PRESETS`` (paper, cpu, demo, smoke), ``train_mura``:
  MURA's class-weighted cross-entropy, Adam, the best epoch on validation, the threshold
  chosen on validation studies;
* ``evaluate`` — accuracy, F1, Cohen's kappa, AUROC and sensitivity per region and
  overall, the ROC plot, and the Grad-CAM lesion check on synthetic studies;
* ``cli`` — ``dicom-node train mura_abnormality``.

Imports ``pipelines``, never ``dicom_node``.
"""
