"""dicom-node: a DICOM node that runs AI pipelines beside a PACS."""

__version__ = "0.1.0"
