"""``mura_abnormality``: normal or abnormal upper-extremity study (paper 001, Ghalyan et al.,
on MURA; Grad-CAM from paper 004, Urinbayev et al., module IV).

Every CR/DX view of an elbow, finger, forearm, hand, humerus, shoulder or wrist study is
resized to 224 × 224 and scaled to [−1, 1] (the paper's preprocessing); a MONAI DenseNet-169
(DenseNet-121 as the option) with the paper's head (linear layers with batch norm, ReLU and
dropout 0.2, He-initialised) gives each view the probability that it is abnormal. The
study's probability is the mean over its views (MURA's rule); the study is abnormal when
it reaches the threshold the training chose on validation studies (kept on the model
card). Results: a coded finding (abnormal / normal) with the study's probability, each
view's probability referencing its image, a Grad-CAM heat map over each abnormal view (the
most probable view of a normal study) as an RGB Secondary Capture with its legend and "not
for diagnosis" burned in, and a Key Object Selection of the views behind an abnormal verdict.

Modules: ``regions`` (MURA's seven regions, from the header; their SNOMED codes),
``concepts`` (name and codes), ``preprocess`` (the paper's input), ``network`` (DenseNet +
head), ``heatmap`` (MONAI's Grad-CAM and the overlay picture), ``model`` (a model folder
loaded; torch or ONNX Runtime), ``pipeline`` (the node's entry point). The package and the
pipeline class import no torch: the model does, when it loads.
"""

from pipelines.mura_abnormality.pipeline import MuraAbnormality

__all__ = ["MuraAbnormality"]
