"""The bone_age trainer (paper 002, Castillo et al., sections III and V): model 2 — a VGG16
base with an attention-map head and the patient's sex — regressing bone age in months
with Adam, MAE as the loss and the paper's augmentation, from a folder and labels CSV, the
RSNA bone-age layout, or synthetic paediatric hands; the card carries the MAE overall and
by sex and a predicted-against-true plot (``train``, ``data``, ``evaluate``, ``cli``)."""
