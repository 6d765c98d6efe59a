"""The HTTP side (off by default, ``[http]``): health checks, Prometheus metrics and
read-only results pages, all from the results log and the receiver's own counters.

``server``: uvicorn in a thread of ``serve``, started and stopped with the Node;
``app``: the Starlette application (routes, error pages); ``auth``: who may read and who
may retry; ``health``: ``/healthz`` and ``/readyz``; ``metrics``:
``/metrics``; ``pages`` and ``page_queries``: the results pages; ``thumbnails`` and
``sr_text``: SC images as PNG and SR content as text. Only the wiring (flow, cli) imports
this package.
"""
