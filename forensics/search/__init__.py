"""Dense search: ``embed`` (models + the DuckDB embedding cache), ``minibert`` (the packaged
MiniLM in plain torch), ``index`` (FAISS indexes per dataset and field: build, update, open,
search, status, verify), ``manifest`` (what an index was built from, its files and their
crash-safe write), ``ann`` (FAISS index construction, tuning, thread control).

Import the submodules (``from forensics.search import embed, index``); torch and faiss load
only when a function needs them.
"""
