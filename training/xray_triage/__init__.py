"""Training ``xray_triage``: modules I ("X-ray or not") and II (X-ray type) of paper 004
(Urinbayev et al., Section III.A–B).

Both modules are DenseNet-121s trained the paper's way: images converted to 8-bit grey and
resized to 224 × 224, a 70/20/10 split into training, validation and test, cross-entropy,
Adam (lr 1e-3, betas (0.9, 0.999), weight decay 1e-5), ``ReduceLROnPlateau(mode="min",
factor=0.1, patience=3)`` on the validation loss, 10 epochs, the best validation epoch
kept. Module I learns X-rays against everything else; module II learns the fourteen types
from the X-rays only. Data (``data``): a folder of images with a labels CSV, DICOM films
weakly labelled by their own Body Part Examined (optionally filtered by the active
model's confidence), and synthetic films (``training.synthetic.xray_types``) for CI and
the demo. ``evaluate`` writes each module's accuracy, per-class accuracy and confusion
matrix (a PNG) beside the model.
"""
