"""Helpers that open report pages in a real headless Chromium (Debian's `chromium`) for the browser tests."""
