"""``dicom-node demo``: the whole node on one machine, with synthetic studies of each pipeline.

Each pipeline's part of the demo is an entry (``training.demo_entry.DemoEntry``, found
through ``dicom_node.trainers``: ``training/<pipeline>/demo.py``); this package is the
generic rest, one loop over the entries (``run``):

1. each entry writes its synthetic studies with what is true of them — hand films at
   known angles (``hand_orientation``), a chest–abdomen–pelvis CT phantom whose zones are
   known (``ct_body_part``; ``--ct-slices 0``: none);
2. a pipeline with no active model gets the model shipped with dicom-node
   (``pipelines/shipped``), imported and activated; with ``--train`` (or where none is
   shipped) its entry trains a small one instead — an orientation model on synthetic
   films, a body part regressor (AlexNet variant) on synthetic CT phantoms; a few minutes
   each on two CPU cores; the papers' networks stay the defaults for real use;
3. starts a local Orthanc as the PACS when ``/usr/sbin/Orthanc`` is installed
   (``orthanc``), otherwise a second receiving SCP standing in for it, and the node itself
   (receiver, scheduler, one worker process) with one route per entry: its modalities →
   its pipeline → that PACS (DX/CR → ``hand_orientation``, CT → ``ct_body_part``);
4. sends the studies (from Orthanc with its REST ``/modalities/{id}/store``, or with the
   node's own C-STORE SCU), waits for the results to be delivered back (``results``);
5. each entry prints its table (``report``): study, predicted angle, true angle, error,
   and where the SC / SR / GSPS went; the CT's zones found beside the phantom's true ones,
   r, the anomaly flags, the score range and where the SR and SC went (the SC's score plot
   also as ``ct_body_part_plot.png`` in the work folder); and adds its keys to
   ``demo-report.json``.

Everything lives under one work folder (``var/demo`` by default) with its own config,
database and model store, so the demo never touches a real installation.

The modules: ``run`` (``run_demo``, ``DemoOptions``, the settings), ``entries`` (finding
the entries, and the node's view of their contract), ``orthanc`` (the Orthanc process
manager, the tests' too), ``results`` (waiting for the results log) and ``report``.
Nothing is imported here, so that building the command line stays quick.
"""
