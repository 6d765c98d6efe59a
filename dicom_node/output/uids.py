"""Deterministic UIDs for the objects the node sends back to the PACS.

Every UID of an output is derived from what the output *is* — its source (the source
series, or the study of a study-scoped result), the pipeline, the model version, the kind
of output and its position — under the site's UID root. A rerun of the same model on the
same source therefore yields the same UIDs (the PACS sees the same objects again, not
duplicates), and a new model version yields new ones.

Two kinds of root are supported:

* ``"2.25"`` (or ``"2.25."``): the UID is ``2.25.<integer>`` where the integer is a
  name-based (SHA-1, version 5) UUID of the inputs, as ISO/IEC 9834-8 and PS3.5 B.2
  describe; no registered root is needed.
* an organisation root such as ``"1.2.826.0.1.3680043.10.1234"``: the UID is the root,
  a dot and the decimal digits of the SHA-512 of the inputs, cut to 64 characters
  (``pydicom.uid.generate_uid`` with ``entropy_srcs``). The root may be at most 44
  characters long so that at least 19 digits (about 64 bits) remain.
"""

from __future__ import annotations

import json
import uuid

from pydicom.uid import generate_uid

from dicom_node.uids import check_uid_root

UUID_ROOT = "2.25"
# Changing this string changes every derived UID: only with a reason and a note.
_SCHEME = "dicom-node/output-uid/1"
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:dicom-node:output-uid")


def derive_uid(uid_root: str, *parts: str) -> str:
    """A UID under ``uid_root`` that depends only on ``parts`` (in order)."""
    root = check_uid_root(uid_root)
    # JSON keeps the parts apart: ("ab", "c") and ("a", "bc") give different UIDs.
    name = json.dumps([_SCHEME, *parts], ensure_ascii=True, separators=(",", ":"))
    if root == UUID_ROOT:
        return f"{UUID_ROOT}.{uuid.uuid5(_NAMESPACE, name).int}"
    return str(generate_uid(prefix=f"{root}.", entropy_srcs=[name]))


def output_series_uid(
    uid_root: str, source_series_uid: str, pipeline: str, model_version: str, kind: str
) -> str:
    """SeriesInstanceUID of the ``kind`` ("sr", "sc", "gsps", "kos") output series of a run.

    ``source_series_uid`` is the run's source key: the source series UID(s), or
    ``"study:<Study Instance UID>"`` for a study-scoped result."""
    return derive_uid(uid_root, "series", source_series_uid, pipeline, model_version, kind)


def output_instance_uid(
    uid_root: str,
    source_series_uid: str,
    pipeline: str,
    model_version: str,
    kind: str,
    index: int = 0,
) -> str:
    """SOPInstanceUID of output number ``index`` of ``kind`` of a pipeline run."""
    return derive_uid(
        uid_root, "instance", source_series_uid, pipeline, model_version, kind, str(index)
    )
