"""The composition root: the ``yima`` command and the WSGI entry points."""
