"""Key Object Selection documents: one per key object selection of a result.

A Key Object Selection Document (PS3.3 A.35.4, TID 2010) lists the source images a reader
should look at first, in the order given, so that a viewer can jump to them. It goes into
the source study, in its own series (Modality KO), and holds:

* the document title, a code of CID 7010 ("Of Interest", say) with its standard meaning;
  rejection notes and manifests are refused (``codes.key_object_title``);
* the node as device observer (TID 1002/1004), as in the SR;
* the selection's description as the Key Object Description (TEXT, 113012);
* one IMAGE item per selected instance (COMPOSITE for a source without pixels);
* the Current Requested Procedure Evidence Sequence: the study, with one item per source
  series that has a selected instance, listing those instances.

Patient and study attributes are copied from the sources after the document is built, as
for the other outputs (``sources.blank_copy``).
"""

from __future__ import annotations

import highdicom as hd
from pydicom.dataset import Dataset

from dicom_node.output import codes
from dicom_node.output.base import EncodedOutput, Run
from dicom_node.output.sources import EncodeError, blank_copy
from pipelines.contract import KeyObjectSelection


def key_object_selection(run: Run, index: int, selection: KeyObjectSelection) -> EncodedOutput:
    """The Key Object Selection Document of ``selection`` (number ``index`` of the result).

    Raises ``EncodeError`` when the selection names an instance that is not among the
    sources, or its title is not one the node writes.
    """
    what = f"key object selection {index + 1}"
    selected: list[Dataset] = []
    for uid in selection.sop_instance_uids:
        source = run.source_for(uid, None, what)
        assert source is not None  # a UID was given
        selected.append(source)
    try:
        title = codes.key_object_title(selection.title)
    except ValueError as exc:
        raise EncodeError(f"{what}: {exc}") from None
    texts: list[str] = [
        selection.description,
        title.meaning,
        run.device.ae_title,
        run.device.manufacturer,
    ]
    kwargs = run.common_kwargs("key images", texts)
    content = hd.ko.KeyObjectSelection(
        document_title=codes.coded(title),
        referenced_objects=selected,
        observer_device_context=run.device_observer(),
        description=selection.description,
    )
    series_uid = run.series_uid("kos")
    sop_uid = run.instance_uid("kos", index)
    reference = selected[0]
    kos = hd.ko.KeyObjectSelectionDocument(
        evidence=[blank_copy(reference), *selected[1:]],
        content=content,
        series_instance_uid=series_uid,
        series_number=run.series_number(series_uid),
        sop_instance_uid=sop_uid,
        instance_number=index + 1,
        manufacturer=run.device.manufacturer,
        **kwargs,
    )
    run.finish(kos, reference, texts)
    return EncodedOutput(
        "kos", kos, str(kos.SOPClassUID), sop_uid, series_uid, selection.description
    )


__all__ = ["key_object_selection"]
