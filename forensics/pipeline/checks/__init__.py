"""Shipped checks. Importing this package registers them (``check.<name>``)."""

from .duplicates import DuplicatesCheck
from .hygiene import HygieneCheck
from .mistranslation import MistranslationCheck

__all__ = ["MistranslationCheck", "DuplicatesCheck", "HygieneCheck"]
