"""Pydantic models shared by every package: record formats, findings, configs and the audit report."""
