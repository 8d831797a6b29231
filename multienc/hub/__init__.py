"""Getting files from the network: :mod:`~multienc.hub.http` (downloads with progress, atomic
writes, clear errors) and :mod:`~multienc.hub.client` (a model's files from a local folder, the
HuggingFace cache or the hub, in the cache layout ``huggingface_hub`` shares).

Uses :mod:`multienc.formats` (the weight file names); nothing above it.
"""
from multienc.hub.client import (SENTENCEPIECE_FILES, TOKENIZER_FILES, EntryNotFoundError, GatedRepoError, HubError, NotCachedError,
                                 RepositoryNotFoundError, RevisionNotFoundError, get_token, hub_cache_dir, is_offline,
                                 repo_folder, resolve_model_files, resolve_tokenizer_files)

__all__ = ["HubError", "RepositoryNotFoundError", "GatedRepoError", "RevisionNotFoundError", "EntryNotFoundError",
           "NotCachedError", "SENTENCEPIECE_FILES", "TOKENIZER_FILES", "hub_cache_dir", "get_token", "is_offline", "repo_folder",
           "resolve_model_files", "resolve_tokenizer_files"]
