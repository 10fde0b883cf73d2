"""Everything the project knows about languages: codes and names, detection, and what a prompt
asks for (``requested_language``, translation requests).

Submodules: ``detect`` (fastText lid.176 / lingua behind one batch API), ``requests``
(language mentions, the requested reply language, translation requests).
"""
