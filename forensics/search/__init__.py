"""Dense search: ``embed`` (models + the DuckDB embedding cache), ``minibert`` (the packaged
MiniLM in plain torch), ``index`` (FAISS indexes per dataset and field, with manifests).

Import the submodules (``from forensics.search import embed, index``); torch and faiss load
only when a function needs them.
"""
