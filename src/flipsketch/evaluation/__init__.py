"""Offline evaluation: metrics on the ink (``metrics``), best-of-K ranking (``ranking``), the
paper's CLIP scores (``clip_scores``), seeded evaluation runs (``runs``), what they read
(``inputs``: prompt files, folders of drawings) and the tables they write (``tables``)."""
