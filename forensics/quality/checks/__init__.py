"""Shipped checks. Importing this package registers them (``check.<name>``)."""

from forensics.quality.checks.duplicates import DuplicatesCheck
from forensics.quality.checks.hygiene import HygieneCheck
from forensics.quality.checks.mistranslation import MistranslationCheck

__all__ = ["MistranslationCheck", "DuplicatesCheck", "HygieneCheck"]
