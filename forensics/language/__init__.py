"""Everything the project knows about languages: codes and names, detection, what a prompt
asks for, the language a reply should be in, and the languages a reply is in.

Submodules: ``names`` (codes, CLDR names, the mention matcher), ``requests`` (requests and
translation requests read from a prompt), ``reading`` (the request reader's knobs and result),
``expected`` (``expected_language``), ``segments`` (``reply_languages``), ``detect``
(fastText lid.176 / lingua behind one batch API).
"""
