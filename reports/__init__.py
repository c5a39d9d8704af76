"""Views of an `AuditReport`: terminal, JSON, Markdown and self-contained HTML. They compute no findings."""
