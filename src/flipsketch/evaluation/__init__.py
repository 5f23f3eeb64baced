"""Offline evaluation: metrics on the ink (``metrics``), seeded evaluation runs (``runs``), what
they read (``inputs``: prompt files, folders of drawings) and the tables they write
(``tables``)."""
