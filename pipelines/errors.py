"""Errors a pipeline raises that are final for the job: retrying would change nothing.

The node fails the job at once with the message, which must tell a person what to do.
Any other exception is treated as transient and retried with backoff.
"""

from __future__ import annotations


class PipelineInputError(ValueError):
    """The series cannot be processed by this pipeline (wrong kind of image, undecodable)."""


class ModelMissing(LookupError):
    """The pipeline needs a trained model and has none (or its files are broken).

    The message tells the user how to train or import one.
    """
