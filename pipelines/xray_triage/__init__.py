"""``xray_triage``: is this image an X-ray, and of which body part? (paper 004, Urinbayev
et al., "End-to-End Deep Diagnosis of X-ray Images", modules I and II).

The paper's framework first asks whether a submitted image is a radiograph at all
(module I, "X-ray or not": radiographs against ImageNet photos, 98.7 % on its test set),
then which of fourteen types of radiograph it is (module II: ankle, spine, chest, elbow,
finger, foot, forearm, hand, hip, humerus, knee, shoulder, dental, wrist; 97.6 %), and
only then runs the abnormality network for that type. Both modules are ChexNet's
DenseNet-121 with the classifier replaced (here MONAI's ``DenseNet121`` with 2 and 14
outputs), fed images "converted to 8-bit grayscale and resized to 224×224", trained with
cross-entropy and Adam (lr 1e-3, betas 0.9/0.999, weight decay 1e-5), ReduceLROnPlateau
and a 70/20/10 split for 10 epochs. In the node the same two questions route what the
headers cannot: a CR/DX/SC series without a usable Body Part Examined is classified here
and routed by the predicted type, "not an X-ray" is routed to nothing, and a header that
names another body part than the one the image shows (with a type probability at or
above the card's ``disagreement_threshold``) is reported as a disagreement. Per series,
each image's probabilities are averaged (module I, then module II when it is an X-ray).

Modules: ``body_parts`` (the types, their header values, the summary keys; no torch),
``concepts`` (name and codes), ``preprocess`` (any image to the paper's input),
``network`` (the two DenseNets), ``model`` (a model folder loaded), ``pipeline`` (the
node's entry point). The package and the pipeline class import no torch.
"""

from pipelines.xray_triage.pipeline import XrayTriage

__all__ = ["XrayTriage"]
