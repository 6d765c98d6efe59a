"""``bone_age``: bone age in months from a paediatric hand film (paper 002).

Castillo, Tong, Zhao and Zhu, "RSNA Bone-age Detection using Transfer Learning and
Attention Mapping" (RSNA 2017 bone-age data, 12,611 films): the hand is cut out of the
film by a Sobel gradient and a watershed, the largest connected component being the hand
(which leaves out the "L"/"R" marker and labels); the crop, resized to 500 × 500, goes
through an ImageNet VGG16 convolutional base whose feature maps are averaged into an
attention map, multiplied back onto the features and globally average-pooled; with the
patient's sex, dense layers regress the bone age in months (model 2: MAE 9.82 months
for boys and 10.75 for girls on its validation split, trained with Adam for 50 epochs,
augmented by rotations up to 5°, horizontal flips, shifts of 0.15, shear 0.01 and zoom
0.25).

In the node the pipeline runs after ``hand_orientation`` on the same series
(``runs_after``) and reads the film that pipeline turned upright; it reports the bone
age, the chronological age from PatientBirthDate and StudyDate and their difference
(months, UCUM ``mo``), which film it read and which sex input it used, and sends the
attention map over the hand as a Secondary Capture (``preprocess``, ``network``,
``model``, ``pipeline``).
"""

from pipelines.bone_age.pipeline import BoneAge

__all__ = ["BoneAge"]
