"""The dispatch pipeline's checks: small functions that raise a typed denial, run in order."""
