"""Jobs: the queue and what runs it.

``queue`` (atomic claims, leases, retries with backoff), ``worker`` (claims a job, runs its
pipeline, hands the result to ``dicom_node.output`` and records it in one transaction),
``model_registry`` (model versions in the database, the active one per pipeline) and
``results_log`` (the queries behind ``dicom-node studies / jobs / results``).
"""
