"""Ingest: what arrives from the PACS, up to the jobs it makes.

``receive`` (the C-STORE / C-ECHO SCP: spool, store durably, index, answer), ``index``
(study / series / instance rows), ``index_writer`` (the one thread that commits the
receiver's rows, many associations' rows per commit), ``stable`` (a quiet study becomes
stable; its series are routed and queued as jobs) and ``route`` (the configured rules
that match headers to pipelines). The durable store itself (``dicom_node.store``) is at
the base: every stage writes through it.
"""
