"""Output: a pipeline's result as DICOM objects, and their delivery to the PACS.

``encode`` turns a result into objects built by ``sr`` (TID 1500 Comprehensive SR), ``sc``
(Secondary Capture), ``gsps`` (Grayscale Softcopy Presentation State) and ``kos`` (Key
Object Selection Document) on what they share (``base``) and the sources' headers
(``sources``); ``uids`` derives their UIDs, ``codes`` holds every coded concept,
``deliver`` sends them with retries and a dead-letter state.
"""
