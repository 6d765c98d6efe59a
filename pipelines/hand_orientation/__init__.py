"""``hand_orientation``: orientation regression in hand radiographs (paper 000, Baltruschat et al.).

A ResNet (ResNet-50 by default, as in the paper; VGG16 from ImageNet weights as the
option for a few films) regresses the Cartesian embedding
(cos θ, sin θ) of the film's orientation θ; the film is then turned to the preferred
orientation α by Eq. 1 and sent back as a Secondary Capture (and, for right-angle turns, a
Grayscale Softcopy Presentation State that leaves the original pixels untouched).

Angle convention, used by the pipeline, its training and the synthetic films: θ is the
counter-clockwise angle, as the film is displayed, from the image's +x axis (pointing
right) to the hand's main axis (from the wrist to the tip of the middle finger), in
[0°, 360°). An upright hand, fingers at the top, has θ = 90°, the default α.

Modules: ``preprocess`` (Section 3.1 as MONAI transforms), ``network`` (the MONAI ResNets,
the VGG16, and the torchvision weight mapping), ``angles`` (Eq. 2 and atan2), ``correct`` (Eq. 1),
``model`` (a model folder loaded), ``pipeline`` (the node's entry point).
"""

from pipelines.hand_orientation.pipeline import HandOrientation

__all__ = ["HandOrientation"]
