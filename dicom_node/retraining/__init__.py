"""Retraining beside the flow: a pipeline's model retrained from the site's own studies.

A run, in the order ``runner.Retrainer.run`` takes it:

* ``runs``        — its row in ``retraining_runs`` (one running run per pipeline; a run
  whose process died is set ``failed``);
* ``selection``   — the studies: from the node's index (``archive``), or pulled from the
  PACS first (``pacs``), limited to what the pipeline's routes take and the filters;
* ``workspace``   — the run's folder: the files linked into a training part and a held-out
  part that no run ever trains on (or the site's pinned evaluation folder);
* ``process``     — training and evaluation each in a low-priority child process
  (``low_priority`` sets its niceness and ties it to its parent; ``evaluation`` is the
  child that scores model folders through the trainer's ``Retraining``);
* ``gate``        — candidate against active model on the same held-out set: promote,
  pass (``auto_activate`` off) or reject, with the reason;
* ``schedule``    — the ``[[retraining]]`` entries' cron triggers in ``serve``.

The trainers are reached only through ``dicom_node.trainers`` (by import string).
"""
