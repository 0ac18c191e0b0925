"""The configuration's schema: every key's type, range and choices, checked before a run builds
anything."""
