"""The network side the stages share: the SCU (``scu``: C-ECHO, C-STORE of files),
network helpers (``netutil``) and the pynetdicom internals the node patches, checked
before use (``pynetdicom_hooks``)."""
