"""Training from a site's archive: datasets, losses, loops, evaluation, model registry.

Imports ``pipelines``, never ``dicom_node``. Filled in by the pipeline issues.
"""
