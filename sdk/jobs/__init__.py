"""Training jobs: declared (``spec``), planned and checked without AWS (``request``, ``api``, ``plan``), launched
and followed (``job``: ``launch_job``, the ``Job``/``LocalJob`` handles), run here (``local``), resumed, read back
(``progress``, ``plot``, ``mlflow``) and fetched (``fetch``, ``unpack``). The public names are re-exported by
:mod:`sdk`; this package's ``__init__`` imports nothing, so any module here can be imported alone.
"""
